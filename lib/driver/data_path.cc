#include "lib/driver/data_path.h"

#include <algorithm>

#include "lib/driver/assignment.h"
#include "lib/driver/leadership.h"
#include "lib/driver/rate_control.h"
#include "lib/driver/worker_proxy.h"
#include "lib/source/partition_reader.h"
#include "lib/driver/driver_log.h"
#include "lib/source/source_connector.h"
#include "lib/common/logging.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {
namespace {

// Assignment rounds at the start of a term that wait for every live worker
// to register (about three heartbeat intervals).
constexpr int kGraceRounds = 6;

bool SameRange(const proto::PartitionRange& a, const proto::PartitionRange& b) {
  return a.start_offset() == b.start_offset() && a.end_offset() == b.end_offset();
}

void AddHolders(std::vector<std::string>* holders, const proto::BlockInfo& from) {
  for (const std::string& h : from.holders()) {
    if (std::find(holders->begin(), holders->end(), h) == holders->end()) holders->push_back(h);
  }
}

// The accepted block of `ps` with exactly the range `r`, or null.
const proto::BlockInfo* FindBlock(const proto::PartitionState* ps, const proto::PartitionRange& r) {
  if (ps == nullptr) return nullptr;
  for (const proto::BlockInfo& b : ps->blocks()) {
    if (SameRange(b.range(), r)) return &b;
  }
  return nullptr;
}


}  // namespace

DataPath::DataPath(std::string driver_id, DriverLog* log, Leadership* leadership,
                   WorkerProxy* workers, const RateControl* rates, Clock* clock)
    : driver_id_(std::move(driver_id)),
      log_(log),
      leadership_(leadership),
      workers_(workers),
      rates_(rates),
      clock_(clock) {}

Status DataPath::CheckEpoch(int64_t epoch) const {
  if (!leadership_->Serving()) {
    return absl::UnavailableError(fmt::format("driver {} is not the serving leader", driver_id_));
  }
  const int64_t mine = leadership_->epoch();
  if (epoch < mine) {
    return absl::FailedPreconditionError(fmt::format("epoch {} is older than the leader's {}", epoch, mine));
  }
  if (epoch > mine) {
    return absl::UnavailableError(fmt::format("epoch {} is newer than this leader's {}", epoch, mine));
  }
  return absl::OkStatus();
}

void DataPath::EnsureTermLocked(int64_t epoch) {
  if (term_ == epoch) return;
  // A serving leader has committed every earlier record (LeaderChange is
  // committed after them), so the committed view is complete.
  const std::shared_ptr<const proto::ClusterState> view = log_->View();
  sources_.clear();
  registered_.clear();
  for (const auto& [name, s] : view->sources()) {
    Source& source = sources_[name];
    source.spec = s.spec();
    source.partitions.resize(s.partitions_size());
    for (int i = 0; i < s.partitions_size(); ++i) {
      // Who reported each block; workers confirm what they still hold when
      // they register with this term.
      for (const proto::BlockInfo& b : s.partitions(i).blocks()) {
        source.partitions[i].holders[b.range().start_offset()].assign(b.holders().begin(), b.holders().end());
      }
    }
  }
  term_ = epoch;
  term_rounds_ = 0;
  spdlog::info("data path: term {} starts with {} sources", epoch, sources_.size());
}

DataPath::Partition* DataPath::FindLocked(const std::string& source, int32_t partition) {
  auto it = sources_.find(source);
  if (it == sources_.end() || partition < 0 || partition >= static_cast<int32_t>(it->second.partitions.size())) {
    return nullptr;
  }
  return &it->second.partitions[partition];
}

std::set<std::string> DataPath::LiveLocked() const {
  std::set<std::string> live;
  for (const proto::MemberInfo& m : live_) live.insert(m.id());
  return live;
}

Result<proto::SourceSpec> DataPath::RegisterSource(proto::SourceSpec spec) {
  RETURN_IF_ERROR(source::NormalizeSourceSpec(&spec));
  if (spec.partitions() == 0) {
    // The source's own partition count (a Kafka topic's), asked of it.
    ASSIGN_OR_RETURN(std::unique_ptr<source::SourceConnector> connector,
                     source::SourceConnector::Create(spec, clock_));
    ASSIGN_OR_RETURN(int32_t n, connector->Partitions());
    spec.set_partitions(n);
  }
  source::StampSourceSpec(&spec, clock_->UnixMillis());
  std::lock_guard<std::mutex> append(append_mu_);
  if (!leadership_->Serving()) {
    return absl::UnavailableError(fmt::format("driver {} is not the serving leader", driver_id_));
  }
  const int64_t epoch = leadership_->epoch();
  {
    std::lock_guard<std::mutex> lock(mu_);
    EnsureTermLocked(epoch);
    auto it = sources_.find(spec.name());
    if (it != sources_.end()) {
      if (source::SameSourceSpec(it->second.spec, spec)) return it->second.spec;  // a retry
      return absl::AlreadyExistsError(fmt::format("source {} exists with another spec", spec.name()));
    }
  }
  proto::DriverRecord record;
  *record.mutable_source_registered()->mutable_spec() = spec;
  Result<int64_t> seq = log_->Append(std::move(record));
  std::lock_guard<std::mutex> lock(mu_);
  if (!seq.ok()) {
    term_ = 0;  // the term is over (see AppendBlocks)
    return seq.status();
  }
  if (term_ == epoch) {
    Source& source = sources_[spec.name()];
    source.spec = spec;
    source.partitions.resize(spec.partitions());
  }
  spdlog::info("source {} registered: {} partitions", spec.name(), spec.partitions());
  return spec;
}

Status DataPath::AppendBlocks(int64_t epoch, std::vector<proto::BlockInfo> blocks) {
  if (blocks.empty()) return absl::OkStatus();
  proto::DriverRecord record;
  for (proto::BlockInfo& b : blocks) *record.mutable_blocks_added()->add_blocks() = b;
  Result<int64_t> seq = log_->Append(std::move(record));
  std::lock_guard<std::mutex> lock(mu_);
  if (!seq.ok()) {
    // An append fails only when the term ends; the next term rebuilds from
    // the WAL, which has the record if a quorum took it.
    term_ = 0;
    return seq.status();
  }
  if (term_ != epoch) return absl::OkStatus();
  for (const proto::BlockInfo& b : blocks) {
    Partition* p = FindLocked(b.range().source(), b.range().partition());
    AddHolders(&p->holders[b.range().start_offset()], b);
  }
  return absl::OkStatus();
}

Status DataPath::RegisterWorker(const proto::RegisterWorkerRequest& request,
                                proto::RegisterWorkerResponse* response) {
  std::lock_guard<std::mutex> append(append_mu_);
  RETURN_IF_ERROR(CheckEpoch(request.epoch()));
  const std::string& id = request.worker().id();
  std::vector<proto::BlockInfo> accepted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    EnsureTermLocked(request.epoch());
    std::vector<proto::BlockInfo> holdings(request.holdings().begin(), request.holdings().end());
    std::sort(holdings.begin(), holdings.end(), [](const proto::BlockInfo& a, const proto::BlockInfo& b) {
      return std::make_tuple(a.range().source(), a.range().partition(), a.range().start_offset()) <
             std::make_tuple(b.range().source(), b.range().partition(), b.range().start_offset());
    });
    // What this worker holds is exactly its holdings: it may have restarted
    // and lost what it held in memory.
    for (auto& [name, source] : sources_) {
      for (Partition& p : source.partitions) {
        for (auto& [start, holders] : p.holders) {
          holders.erase(std::remove(holders.begin(), holders.end(), id), holders.end());
        }
      }
    }
    const std::shared_ptr<const proto::ClusterState> view = log_->View();
    std::map<std::pair<std::string, int32_t>, int64_t> next;
    for (proto::BlockInfo& h : holdings) {
      const proto::PartitionRange& r = h.range();
      Partition* p = FindLocked(r.source(), r.partition());
      const proto::PartitionState* ps = FindPartitionState(*view, r.source(), r.partition());
      h.clear_holders();
      h.add_holders(id);
      bool keep = false;
      if (p != nullptr && ps != nullptr && r.end_offset() > r.start_offset()) {
        auto [it, fresh] = next.try_emplace({r.source(), r.partition()}, ps->next_offset());
        if (FindBlock(ps, r) != nullptr) {
          AddHolders(&p->holders[r.start_offset()], h);
          keep = true;
        } else if (it->second >= 0 && r.start_offset() >= it->second) {
          // Ahead of what is accepted: reported to the old leader and lost
          // with it, or not reported yet. A replayable source's next block is
          // taken now; the rest stays with the worker, whose reporter still
          // has it queued (a durable block is accepted only through a report,
          // which comes after its replica is made).
          keep = true;
          const bool durable = sources_[r.source()].spec.replication() >= 2;
          if (!durable && it->second == r.start_offset()) {
            it->second = r.end_offset();
            accepted.push_back(h);
          }
        } else if (it->second < 0 && sources_[r.source()].spec.replication() < 2) {
          it->second = r.end_offset();  // the first block fixes the start position
          accepted.push_back(h);
          keep = true;
        }
      }
      if (!keep) {
        proto::BlockRef* drop = response->add_drop();
        drop->set_source(r.source());
        drop->set_partition(r.partition());
        drop->set_start_offset(r.start_offset());
      }
    }
    std::set<std::string> live = LiveLocked();
    for (const proto::ReceiverState& rs : request.receivers()) {
      Partition* p = FindLocked(rs.source(), rs.partition());
      if (p == nullptr || rs.stopped()) continue;
      if (p->worker.empty() || !live.contains(p->worker)) {
        p->worker = id;
        p->receiver = rs;
      }
    }
    registered_[id] = request.epoch();
  }
  spdlog::info("worker {} registered with epoch {}: {} blocks held, {} receivers, {} new blocks, {} dropped",
               id, request.epoch(), request.holdings_size(), request.receivers_size(), accepted.size(),
               response->drop_size());
  return AppendBlocks(request.epoch(), std::move(accepted));
}

Status DataPath::ReportBlocks(const proto::ReportBlocksRequest& request, proto::ReportBlocksResponse* response) {
  std::lock_guard<std::mutex> append(append_mu_);
  RETURN_IF_ERROR(CheckEpoch(request.epoch()));
  std::vector<proto::BlockInfo> accepted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    EnsureTermLocked(request.epoch());
    auto reg = registered_.find(request.worker_id());
    if (reg == registered_.end() || reg->second != request.epoch()) {
      return absl::AbortedError(fmt::format("worker {} has not registered with epoch {}", request.worker_id(),
                                            request.epoch()));
    }
    std::set<std::string> live = LiveLocked();
    const std::shared_ptr<const proto::ClusterState> view = log_->View();
    std::map<std::pair<std::string, int32_t>, int64_t> next;
    for (const proto::BlockInfo& b : request.blocks()) {
      const proto::PartitionRange& r = b.range();
      Partition* p = FindLocked(r.source(), r.partition());
      const proto::PartitionState* ps = FindPartitionState(*view, r.source(), r.partition());
      proto::BlockVerdict verdict = proto::BLOCK_VERDICT_REJECTED;
      std::string reason;
      if (p == nullptr || ps == nullptr) {
        reason = fmt::format("no source partition {}[{}]", r.source(), r.partition());
      } else if (FindBlock(ps, r) != nullptr) {
        AddHolders(&p->holders[r.start_offset()], b);
        verdict = proto::BLOCK_VERDICT_DUPLICATE;
      } else if (std::any_of(accepted.begin(), accepted.end(), [&](const proto::BlockInfo& x) {
                   return x.range().source() == r.source() && x.range().partition() == r.partition() &&
                          SameRange(x.range(), r);
                 })) {
        verdict = proto::BLOCK_VERDICT_DUPLICATE;  // twice in one report
      } else if (!p->worker.empty() && p->worker != request.worker_id() && live.contains(p->worker)) {
        reason = fmt::format("{}[{}] is assigned to worker {}", r.source(), r.partition(), p->worker);
      } else {
        auto [it, fresh] = next.try_emplace({r.source(), r.partition()}, ps->next_offset());
        if (r.end_offset() > r.start_offset() && (it->second < 0 || it->second == r.start_offset())) {
          it->second = r.end_offset();
          accepted.push_back(b);
          verdict = proto::BLOCK_VERDICT_ACCEPTED;
        } else {
          reason = fmt::format("block {}[{}] {}..{} does not start at the partition's next offset {}", r.source(),
                               r.partition(), r.start_offset(), r.end_offset(), it->second);
        }
      }
      response->add_verdicts(verdict);
      response->add_reasons(reason);
      if (verdict == proto::BLOCK_VERDICT_REJECTED) {
        SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn, "refused a block from worker {}: {}",
                         request.worker_id(), reason);
      }
    }
  }
  return AppendBlocks(request.epoch(), std::move(accepted));
}

std::vector<std::string> DataPath::LiveHolders(const proto::BlockInfo& block,
                                               const std::set<std::string>& live) const {
  // This term's knowledge when it has any; else (a new term before its
  // first round, a block accepted a moment ago) the reporter the log names.
  const google::protobuf::RepeatedPtrField<std::string>* known = &block.holders();
  std::vector<std::string> from_index;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto src = sources_.find(block.range().source());
    if (term_ != 0 && term_ == leadership_->epoch() && src != sources_.end() && block.range().partition() >= 0 &&
        block.range().partition() < static_cast<int32_t>(src->second.partitions.size())) {
      const Partition& p = src->second.partitions[block.range().partition()];
      if (auto it = p.holders.find(block.range().start_offset()); it != p.holders.end()) from_index = it->second;
    }
  }
  std::vector<std::string> out;
  if (!from_index.empty()) {
    for (const std::string& h : from_index) {
      if (live.contains(h)) out.push_back(h);
    }
    return out;
  }
  for (const std::string& h : *known) {
    if (live.contains(h)) out.push_back(h);
  }
  return out;
}

void DataPath::PruneLocked(const proto::ClusterState& view) {
  // The blocks the log folded away (ClusterState's retention rule) are
  // nobody's any more.
  for (auto& [name, source] : sources_) {
    for (size_t i = 0; i < source.partitions.size(); ++i) {
      Result<int64_t> from = RetainedFrom(view, name, static_cast<int32_t>(i));
      if (!from.ok() || *from < 0) continue;
      auto& holders = source.partitions[i].holders;
      holders.erase(holders.begin(), holders.lower_bound(*from));
    }
  }
}

void DataPath::ListSources(const proto::ListSourcesRequest& request, proto::ListSourcesResponse* response) {
  const bool leads = leadership_->Serving();
  if (leads) {
    // Holders are filtered by membership; a block no live worker holds is lost
    // (recomputed from lineage if the source is replayable).
    std::lock_guard<std::mutex> lock(mu_);
    EnsureTermLocked(leadership_->epoch());
    const std::shared_ptr<const proto::ClusterState> view = log_->View();
    PruneLocked(*view);
    std::set<std::string> live = LiveLocked();
    for (const auto& [name, s] : sources_) {
      if (!request.source().empty() && request.source() != name) continue;
      proto::SourceInfo* info = response->add_sources();
      *info->mutable_spec() = s.spec;
      for (size_t i = 0; i < s.partitions.size(); ++i) {
        const Partition& p = s.partitions[i];
        const proto::PartitionState* ps = FindPartitionState(*view, name, static_cast<int32_t>(i));
        if (ps == nullptr) continue;
        proto::PartitionInfo* pi = info->add_partitions();
        pi->set_partition(static_cast<int32_t>(i));
        pi->set_next_offset(ps->next_offset());
        if (live.contains(p.worker)) {
          pi->set_worker(p.worker);
          *pi->mutable_receiver() = p.receiver;
        }
        pi->set_error(p.error);
        pi->set_blocks(ps->blocks_size());
        int64_t records = 0, lost = 0;
        for (const proto::BlockInfo& b : ps->blocks()) {
          records += b.records();
          proto::BlockInfo shown = b;
          shown.clear_holders();
          if (auto h = p.holders.find(b.range().start_offset()); h != p.holders.end()) {
            for (const std::string& w : h->second) {
              if (live.contains(w)) shown.add_holders(w);
            }
          }
          if (shown.holders().empty()) ++lost;
          if (request.with_blocks()) *pi->add_block_list() = std::move(shown);
        }
        pi->set_records(records);
        pi->set_lost_blocks(lost);
        *pi->mutable_lost() = ps->lost();
        pi->set_lost_offsets(ps->lost_offsets());
      }
    }
    return;
  }
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  const proto::ClusterState& state = *state_view;
  for (const auto& [name, s] : state.sources()) {
    if (!request.source().empty() && request.source() != name) continue;
    proto::SourceInfo* info = response->add_sources();
    *info->mutable_spec() = s.spec();
    for (const proto::PartitionState& ps : s.partitions()) {
      proto::PartitionInfo* pi = info->add_partitions();
      pi->set_partition(ps.partition());
      pi->set_next_offset(ps.next_offset());
      pi->set_blocks(ps.blocks_size());
      int64_t records = 0;
      for (const proto::BlockInfo& b : ps.blocks()) {
        records += b.records();
        if (request.with_blocks()) *pi->add_block_list() = b;
      }
      pi->set_records(records);
      *pi->mutable_lost() = ps.lost();
      pi->set_lost_offsets(ps.lost_offsets());
    }
  }
}

int DataPath::ReceiversOf(const std::string& worker) {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [name, s] : sources_) {
    for (const Partition& p : s.partitions) n += p.worker == worker ? 1 : 0;
  }
  return n;
}

std::optional<DataPath::Round> DataPath::PlanRound(const std::vector<proto::MemberInfo>& live_members,
                                                  int64_t epoch) {
  Round round;
  round.epoch = epoch;
  std::lock_guard<std::mutex> lock(mu_);
  EnsureTermLocked(epoch);
  const std::shared_ptr<const proto::ClusterState> view = log_->View();
  PruneLocked(*view);
  live_ = live_members;
  for (const proto::MemberInfo& m : live_members) {
    auto reg = registered_.find(m.id());
    if (reg != registered_.end() && reg->second == epoch) round.workers[m.id()] = m;
  }
  std::vector<PartitionId> partitions;
  std::map<PartitionId, std::string> pinned;  // partitions of sources not replayable stay while their worker lives
  for (auto& [name, s] : sources_) {
    // One limit for every partition of a source (docs/jobs.md "Backpressure").
    const PartitionLimits limits = rates_->LimitsOf(*view, name);
    for (size_t i = 0; i < s.partitions.size(); ++i) {
      Partition& p = s.partitions[i];
      const PartitionId id{name, static_cast<int32_t>(i)};
      if (!p.worker.empty() && !round.workers.contains(p.worker)) p.worker.clear();  // dead or not registered
      if (!p.error.empty()) continue;
      partitions.push_back(id);
      if (!p.worker.empty()) {
        round.current[id] = p.worker;
        if (!source::IsReplayable(s.spec)) pinned[id] = p.worker;
      }
      proto::ReceiverAssignment& a = round.assignment[id];
      *a.mutable_spec() = s.spec;
      a.set_partition(id.partition);
      a.set_rate_limit_per_s(limits.rate_limit_per_s);
      a.set_max_block_offsets(limits.max_block_offsets);
      // Revocations send the kept partitions with this offset (a receiver
      // restarted there starts at it); Grant refreshes it after them.
      if (const proto::PartitionState* ps = FindPartitionState(*view, name, static_cast<int32_t>(i))) {
        a.set_start_offset(ps->next_offset());
      }
    }
  }
  // Grace at the start of a term: wait (a few rounds) for every live worker
  // to register, so running receivers stay where they are instead of being
  // granted to another worker before their owner has told us.
  if (term_rounds_++ < kGraceRounds && round.workers.size() < live_members.size()) return std::nullopt;
  std::vector<std::string> ids;
  for (const auto& [id, m] : round.workers) {
    // A draining worker reads nothing while another can (WorkerDrainRequested).
    if (!view->draining_workers().contains(id)) ids.push_back(id);
  }
  if (ids.empty()) {
    for (const auto& [id, m] : round.workers) ids.push_back(id);
  }
  round.desired = AssignPartitions(partitions, ids, round.current);
  for (const auto& [id, w] : pinned) round.desired[id] = w;
  return round;
}

Status DataPath::SendAssignment(const Round& round, const proto::MemberInfo& worker,
                                const std::vector<PartitionId>& set, const std::string& leader_address,
                                proto::AssignReceiversResponse* response) {
  if (!leadership_->Serving() || leadership_->epoch() != round.epoch) {
    return absl::UnavailableError("no longer the serving leader");  // and Stop is not held up
  }
  proto::AssignReceiversRequest request;
  request.set_epoch(round.epoch);
  request.set_leader_id(driver_id_);
  request.set_leader_address(leader_address);
  for (const auto& [id, m] : round.workers) *request.add_replica_targets() = m;
  for (const PartitionId& id : set) *request.add_receivers() = round.assignment.at(id);
  rpc::Cancellation cancel;
  {
    std::lock_guard<std::mutex> lock(calls_mu_);
    if (members_ && !members_->contains(worker.id())) {
      // Left since the round was planned: the next round moves its receivers.
      return absl::UnavailableError(fmt::format("worker {} left the membership", worker.id()));
    }
    calls_.emplace(worker.id(), &cancel);
  }
  Status st = workers_->AssignReceivers(worker.rpc_address(), request, response, &cancel);
  {
    std::lock_guard<std::mutex> lock(calls_mu_);
    std::erase_if(calls_, [&](const auto& call) { return call.second == &cancel; });
  }
  if (!st.ok()) spdlog::warn("assigning receivers to worker {}: {}", worker.id(), st.ToString());
  return st;
}

void DataPath::RecordReceivers(int64_t epoch, const std::string& worker,
                               const proto::AssignReceiversResponse& response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (term_ != epoch) return;
  for (const proto::ReceiverState& rs : response.receivers()) {
    Partition* p = FindLocked(rs.source(), rs.partition());
    if (p == nullptr || p->worker != worker) continue;
    p->receiver = rs;
    if (rs.stopped() && source::IsPermanentReadError(static_cast<absl::StatusCode>(rs.error_code())) &&
        p->error.empty()) {
      p->error = fmt::format("receiver on worker {} stopped: {}", worker, rs.error());
      p->worker.clear();
      if (static_cast<absl::StatusCode>(rs.error_code()) == absl::StatusCode::kDataLoss) {
        p->data_lost = true;  // ResolveLosses, after this round
        p->lost_at = rs.next_offset();
        spdlog::warn("source {}[{}]: {}", rs.source(), rs.partition(), p->error);
      } else {
        spdlog::error("source {}[{}] stopped: {}", rs.source(), rs.partition(), p->error);
      }
    }
  }
}

void DataPath::Revoke(Round& round, const std::string& leader_address) {
  for (const auto& [wid, member] : round.workers) {
    std::vector<PartitionId> keep;
    bool loses = false;
    for (const auto& [id, owner] : round.current) {
      if (owner != wid) continue;
      if (round.desired[id] == wid) {
        keep.push_back(id);
      } else {
        loses = true;
      }
    }
    if (!loses) continue;
    proto::AssignReceiversResponse response;
    if (SendAssignment(round, member, keep, leader_address, &response).ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, owner] : round.current) {
        if (owner == wid && round.desired[id] != wid) {
          if (Partition* p = FindLocked(id.source, id.partition); p != nullptr && p->worker == wid) p->worker.clear();
        }
      }
    } else {
      for (auto& [id, owner] : round.current) {
        if (owner == wid) round.desired[id] = wid;  // not granted elsewhere this round
      }
    }
  }
}

void DataPath::Grant(Round& round, const std::string& leader_address) {
  {
    // New receivers start at the partition's next offset, read after the
    // revocations' last reports were accepted.
    std::lock_guard<std::mutex> lock(mu_);
    if (term_ != round.epoch) return;
    const std::shared_ptr<const proto::ClusterState> view = log_->View();
    for (auto& [id, a] : round.assignment) {
      if (const proto::PartitionState* ps = FindPartitionState(*view, id.source, id.partition)) {
        a.set_start_offset(ps->next_offset());
      }
    }
  }
  for (const auto& [wid, member] : round.workers) {
    std::vector<PartitionId> set;
    for (const auto& [id, owner] : round.desired) {
      if (owner == wid) set.push_back(id);
    }
    proto::AssignReceiversResponse response;
    if (!SendAssignment(round, member, set, leader_address, &response).ok()) continue;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (term_ != round.epoch) return;
      for (const PartitionId& id : set) {
        Partition* p = FindLocked(id.source, id.partition);
        if (p != nullptr && p->worker != wid) {
          spdlog::info("{}[{}] -> worker {} from offset {}", id.source, id.partition, wid,
                       round.assignment[id].start_offset());
          p->worker = wid;
        }
      }
    }
    RecordReceivers(round.epoch, wid, response);
  }
}

void DataPath::WorkersChanged(const std::vector<proto::MemberInfo>& live) {
  std::set<std::string> ids;
  for (const proto::MemberInfo& m : live) ids.insert(m.id());
  std::lock_guard<std::mutex> lock(calls_mu_);
  for (const auto& [worker, cancel] : calls_) {
    if (!ids.contains(worker)) cancel->Cancel();
  }
  members_ = std::move(ids);
}

void DataPath::Tick(const std::vector<proto::MemberInfo>& live_members, const std::string& leader_address) {
  if (!leadership_->Serving()) return;
  std::optional<Round> round = PlanRound(live_members, leadership_->epoch());
  if (!round || round->workers.empty()) return;
  Revoke(*round, leader_address);  // first, so no partition has two receivers at once
  Grant(*round, leader_address);
  ResolveLosses(round->epoch);
}

}  // namespace sluice::driver
