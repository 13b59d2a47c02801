#include "lib/worker/receiver_set.h"

#include <algorithm>
#include <functional>

#include "lib/common/logging.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/worker_client.h"
#include "lib/source/generator_source.h"
#include "lib/source/kafka_source.h"
#include "lib/source/partition_reader.h"
#include "lib/source/source_connector.h"
#include "spdlog/spdlog.h"

namespace sluice::worker {
namespace {

constexpr int kMaxReportBlocks = 512;

proto::BlockInfo InfoOf(const HeldBlock& b, const std::string& holder) {
  proto::BlockInfo info;
  proto::PartitionRange* r = info.mutable_range();
  r->set_source(b.lineage.source);
  r->set_partition(b.lineage.partition);
  r->set_start_offset(b.lineage.start_offset);
  r->set_end_offset(b.lineage.end_offset);
  info.set_records(b.records);
  info.set_bytes(static_cast<int64_t>(b.bytes));
  info.add_holders(holder);
  return info;
}

}  // namespace

ReceiverSet::ReceiverSet(ReceiverSetOptions options, BlockStore* store, rpc::ChannelCache* channels, Clock* clock)
    : options_(std::move(options)), store_(store), channels_(channels), clock_(clock) {}

ReceiverSet::~ReceiverSet() { Stop(); }

void ReceiverSet::Start() { reporter_ = std::thread([this] { ReporterLoop(); }); }

void ReceiverSet::Stop() {
  std::lock_guard<std::mutex> assign(assign_mu_);
  std::map<Key, std::shared_ptr<Running>> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    running.swap(running_);
  }
  cv_.notify_all();
  for (auto& [key, r] : running) {
    if (r->receiver) r->receiver->Stop();
  }
  if (reporter_.joinable()) reporter_.join();
}

void ReceiverSet::OnLeader(int64_t epoch, const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  if (epoch < leader_epoch_ || address.empty()) return;
  if (epoch > leader_epoch_ || address != leader_address_) {
    leader_epoch_ = epoch;
    leader_address_ = address;
    cv_.notify_all();
  }
}

proto::ReceiverState ReceiverSet::StateOf(const Key& key, const Running& r) {
  proto::ReceiverState s;
  s.set_source(key.first);
  s.set_partition(key.second);
  if (!r.receiver) {
    s.set_next_offset(r.assignment.start_offset());
    s.set_stopped(true);
    s.set_error_code(static_cast<int>(r.failed.code()));
    s.set_error(std::string(r.failed.message()));
    return s;
  }
  ReceiverStats st = r.receiver->Stats();
  s.set_next_offset(st.next_offset);
  s.set_paused(st.paused);
  s.set_pauses(st.pauses);
  s.set_blocks(st.blocks);
  s.set_records(st.records);
  s.set_dead_letters(st.dead_letters);
  s.set_last_dead_letter(st.last_dead_letter);
  s.set_stopped(st.stopped);
  s.set_error_code(static_cast<int>(st.error.code()));
  s.set_error(std::string(st.error.message()));
  s.set_rate_limit_per_s(st.rate_limit_per_s);
  return s;
}

std::vector<proto::ReceiverState> ReceiverSet::States() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<proto::ReceiverState> out;
  for (const auto& [key, r] : running_) out.push_back(StateOf(key, *r));
  return out;
}

std::vector<ReceiverSet::Snapshot> ReceiverSet::Snapshots() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Snapshot> out;
  for (const auto& [key, r] : running_) {
    Snapshot s{.source = key.first, .partition = key.second, .generation = r->generation};
    if (r->receiver) {
      s.stats = r->receiver->Stats();
    } else {
      s.stats.next_offset = r->assignment.start_offset();
      s.stats.stopped = true;
    }
    out.push_back(std::move(s));
  }
  return out;
}

int64_t ReceiverSet::registered_epoch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return registered_epoch_;
}

int64_t ReceiverSet::unreported() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

namespace {

// The assignment's rate limit, never above the source's own ceiling (a
// leader may leave the limit out: then the ceiling alone).
int64_t RateLimitOf(const proto::ReceiverAssignment& a) {
  const int64_t ceiling = a.spec().max_rate_per_partition();
  if (a.rate_limit_per_s() <= 0) return ceiling;
  return ceiling > 0 ? std::min(ceiling, a.rate_limit_per_s()) : a.rate_limit_per_s();
}

}  // namespace

Result<std::unique_ptr<ReceiverSet::Running>> ReceiverSet::Create(const proto::ReceiverAssignment& a) {
  const proto::SourceSpec& spec = a.spec();
  const int32_t p = a.partition();
  auto r = std::make_unique<Running>();
  r->assignment = a;
  ASSIGN_OR_RETURN(r->connector, source::SourceConnector::Create(spec, clock_));
  ASSIGN_OR_RETURN(source::OpenedReader opened, r->connector->OpenReader(p, a.start_offset()));
  std::unique_ptr<source::PartitionReader> reader = std::move(opened.reader);
  const int64_t start = opened.offset;
  r->assignment.set_start_offset(start);
  {
    std::lock_guard<std::mutex> lock(mu_);
    r->generation = next_generation_++;
  }
  const Key key{spec.name(), p};
  const uint64_t generation = r->generation;
  std::atomic<bool>* refused = &r->refused;
  r->receiver = std::make_unique<Receiver>(
      ReceiverOptions{.source = spec.name(),
                      .partition = p,
                      .start_offset = start,
                      .block_interval = options_.block_interval,
                      .max_block_records = spec.replication() >= 2
                                               ? std::min(options_.max_block_records, kDurableMaxBlockRecords)
                                               : options_.max_block_records,
                      .rate_limit_per_s = RateLimitOf(a),
                      .max_block_offsets = a.max_block_offsets(),
                      .durable = spec.replication() >= 2},
      std::move(reader), store_,
      [this, key, generation, refused](const HeldBlock& b) { return Report(key, generation, refused, b); },
      clock_);
  return r;
}

Result<proto::AssignReceiversResponse> ReceiverSet::Assign(const proto::AssignReceiversRequest& request) {
  std::lock_guard<std::mutex> assign(assign_mu_);
  {
    // The fence passed this call before it queued here: a newer leader may
    // have been heard meanwhile.
    std::lock_guard<std::mutex> lock(mu_);
    if (request.epoch() < leader_epoch_) {
      return absl::FailedPreconditionError(
          fmt::format("epoch {} is older than the leader's {}", request.epoch(), leader_epoch_));
    }
  }
  OnLeader(request.epoch(), request.leader_address());
  std::map<Key, const proto::ReceiverAssignment*> desired;
  for (const proto::ReceiverAssignment& a : request.receivers()) desired[{a.spec().name(), a.partition()}] = &a;

  // Receivers to stop: not wanted any more, refused by the leader, stopped on
  // an error that a restart may cure, or reading under an older spec.
  std::vector<std::pair<Key, std::shared_ptr<Running>>> stop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    replica_targets_.assign(request.replica_targets().begin(), request.replica_targets().end());
    for (const auto& [key, r] : running_) {
      auto d = desired.find(key);
      bool restart = d == desired.end() || r->refused.load() ||
                     d->second->spec().SerializeAsString() != r->assignment.spec().SerializeAsString();
      if (!restart) {
        // A permanent error is cured only by the leader moving the
        // partition on (a loss recorded, sluicectl source reset).
        proto::ReceiverState s = StateOf(key, *r);
        restart = s.stopped() && (!source::IsPermanentReadError(static_cast<absl::StatusCode>(s.error_code())) ||
                                  d->second->start_offset() > s.next_offset());
      }
      if (restart) {
        stop.emplace_back(key, r);
      } else if (r->receiver) {
        r->receiver->SetLimits(RateLimitOf(*d->second), d->second->max_block_offsets());
        r->assignment.set_rate_limit_per_s(d->second->rate_limit_per_s());
        r->assignment.set_max_block_offsets(d->second->max_block_offsets());
      }
    }
  }
  for (auto& [key, r] : stop) {
    if (r->receiver) r->receiver->Stop();
  }
  if (!stop.empty()) {
    // Their last blocks reach the leader before it hands the partitions on.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(3), [&] {
      if (stopping_) return true;
      for (const auto& [key, r] : stop) {
        auto it = unreported_.find(key);
        if (it != unreported_.end() && it->second > 0) return false;
      }
      return true;
    });
    for (const auto& [key, r] : stop) {
      spdlog::info("receiver {}[{}] stopped", key.first, key.second);
      running_.erase(key);
    }
  }
  for (const auto& [key, a] : desired) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || running_.contains(key)) continue;
    }
    Result<std::unique_ptr<Running>> made = Create(*a);
    std::shared_ptr<Running> r;
    if (made.ok()) {
      r = std::move(*made);
      spdlog::info("receiver {}[{}] starts at offset {}", key.first, key.second, r->assignment.start_offset());
      r->receiver->Start();
    } else {
      spdlog::error("receiver {}[{}] cannot start: {}", key.first, key.second, made.status().ToString());
      r = std::make_shared<Running>();
      r->assignment = *a;
      r->failed = made.status();
    }
    std::lock_guard<std::mutex> lock(mu_);
    running_[key] = std::move(r);
  }
  proto::AssignReceiversResponse response;
  response.set_worker_id(options_.self.id());
  for (proto::ReceiverState& s : States()) *response.add_receivers() = std::move(s);
  return response;
}

Status ReceiverSet::Report(const Key& key, uint64_t generation, std::atomic<bool>* refused, const HeldBlock& b) {
  if (refused->load()) return absl::FailedPreconditionError("the leader refused an earlier block of this receiver");
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = unreported_.find(key);
    if (it != unreported_.end() && it->second >= options_.max_unreported_blocks) {
      return absl::UnavailableError("too many blocks not yet acknowledged by the leader");
    }
  }
  proto::BlockInfo info = InfoOf(b, options_.self.id());
  if (b.durable) {
    ASSIGN_OR_RETURN(std::string replica, Replicate(b));
    info.add_holders(replica);
  }
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back({std::move(info), generation});
  ++unreported_[key];
  cv_.notify_all();
  return absl::OkStatus();
}

Result<std::string> ReceiverSet::Replicate(const HeldBlock& b) {
  std::vector<proto::MemberInfo> targets;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const proto::MemberInfo& m : replica_targets_) {
      if (m.id() != options_.self.id()) targets.push_back(m);
    }
  }
  if (targets.empty()) return absl::UnavailableError("no other live worker to hold a replica");
  // Spread partitions over the targets; try them all in turn.
  const size_t first = std::hash<std::string>()(b.lineage.source) + b.lineage.partition;
  ASSIGN_OR_RETURN(format::Block block, store_->Get({b.lineage.source, b.lineage.partition, b.lineage.start_offset}));
  const proto::BlockInfo info = InfoOf(b, options_.self.id());
  Status last;
  for (size_t i = 0; i < targets.size(); ++i) {
    const proto::MemberInfo& t = targets[(first + i) % targets.size()];
    last = rpc::WorkerClient(*channels_, t.rpc_address())
               .ReplicateBlock([&](const rpc::ChunkWriter<proto::BlockChunk>& write) {
                 WriteBlockChunks(info, block.data(), write);
                 return absl::OkStatus();
               })
               .status();
    if (last.ok()) return t.id();
    SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn, "replicating block {}[{}] {}..{} to worker {}: {}",
                     b.lineage.source, b.lineage.partition, b.lineage.start_offset, b.lineage.end_offset, t.id(),
                     last.ToString());
  }
  return absl::UnavailableError(fmt::format("no worker took a replica: {}", std::string(last.message())));
}

Status ReceiverSet::Register(int64_t epoch, const std::string& address) {
  proto::RegisterWorkerRequest request;
  request.set_epoch(epoch);
  *request.mutable_worker() = options_.self;
  request.set_slots(options_.self.slots());
  for (const HeldBlock& h : store_->Holdings()) *request.add_holdings() = InfoOf(h, options_.self.id());
  for (proto::ReceiverState& s : States()) *request.add_receivers() = std::move(s);
  ASSIGN_OR_RETURN(proto::RegisterWorkerResponse response,
                   rpc::DriverClient(*channels_, address).RegisterWorker(request));
  for (const proto::BlockRef& d : response.drop()) {
    SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn,
                     "the leader does not know block {}[{}] at {}: dropped", d.source(), d.partition(),
                     d.start_offset());
    store_->Drop({d.source(), d.partition(), d.start_offset()});
  }
  spdlog::info("registered with the leader at {} (epoch {}): {} blocks held, {} receivers", address, epoch,
               request.holdings_size(), request.receivers_size());
  return absl::OkStatus();
}

void ReceiverSet::ReporterLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(200), [&] {
      return stopping_ || (leader_epoch_ > 0 && (registered_epoch_ != leader_epoch_ || !queue_.empty()));
    });
    if (stopping_) break;
    if (beat_ != nullptr) {
      lock.unlock();
      beat_->Beat();
      lock.lock();
      if (stopping_) break;
    }
    const int64_t epoch = leader_epoch_;
    const std::string address = leader_address_;
    if (epoch == 0) continue;
    if (registered_epoch_ != epoch) {
      lock.unlock();
      Status st = Register(epoch, address);
      lock.lock();
      if (st.ok()) {
        registered_epoch_ = epoch;
      } else {
        spdlog::debug("registering with the leader at {}: {}", address, st.ToString());
        cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
      }
      continue;
    }
    if (queue_.empty()) continue;
    proto::ReportBlocksRequest request;
    request.set_epoch(epoch);
    request.set_worker_id(options_.self.id());
    const size_t n = std::min<size_t>(queue_.size(), kMaxReportBlocks);
    for (size_t i = 0; i < n; ++i) *request.add_blocks() = queue_[i].info;
    lock.unlock();
    proto::ReportBlocksResponse response;
    Status st = rpc::MoveInto(rpc::DriverClient(*channels_, address).ReportBlocks(request), &response);
    lock.lock();
    if (!st.ok()) {
      if (absl::IsAborted(st)) registered_epoch_ = 0;  // the leader wants a registration first
      spdlog::debug("reporting {} blocks to {}: {}", n, address, st.ToString());
      cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_; });
      continue;
    }
    // Only this thread pops, so the front n are the ones just sent.
    std::vector<BlockKey> refused_blocks;
    for (size_t i = 0; i < n; ++i) {
      Pending& p = queue_.front();
      const Key key{p.info.range().source(), p.info.range().partition()};
      if (i < static_cast<size_t>(response.verdicts_size()) &&
          response.verdicts(i) == proto::BLOCK_VERDICT_REJECTED) {
        SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn, "leader refused block {}[{}] {}..{}: {}",
                         key.first, key.second, p.info.range().start_offset(), p.info.range().end_offset(),
                         response.reasons(i));
        refused_blocks.push_back({key.first, key.second, p.info.range().start_offset()});
        auto r = running_.find(key);
        if (r != running_.end() && r->second->generation == p.generation) r->second->refused = true;
      }
      if (--unreported_[key] == 0) unreported_.erase(key);
      queue_.pop_front();
    }
    cv_.notify_all();
    lock.unlock();
    for (const BlockKey& k : refused_blocks) store_->Drop(k);
    lock.lock();
  }
}

}  // namespace sluice::worker
