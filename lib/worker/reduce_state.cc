#include "lib/worker/reduce_state.h"

#include <algorithm>

#include "lib/common/logging.h"
#include "lib/rpc/rpc.h"
#include "lib/rpc/worker_client.h"
#include "lib/worker/transfer_deadline.h"
#include "spdlog/spdlog.h"

namespace sluice::worker {
namespace {

constexpr size_t kChunkBytes = 1 << 20;

// Cuts `changes` into chunks of about kChunkBytes; at least one chunk. The
// last one is marked `last` if `ends_stream` (a snapshot followed by a delta
// is not the end: only the delta's last chunk is).
bool WriteChunks(const proto::StateChunk& header, std::span<const state::Change> changes, bool ends_stream,
                 const std::function<bool(const proto::StateChunk&)>& write) {
  proto::StateChunk chunk = header;
  size_t bytes = 0;
  for (const state::Change& c : changes) {
    proto::StateEntry* e = chunk.add_entries();
    e->set_key(c.key);
    if (c.value) {
      e->set_value(*c.value);
    } else {
      e->set_erased(true);
    }
    bytes += c.key.size() + (c.value ? c.value->size() : 0) + 8;
    if (bytes >= kChunkBytes) {
      if (!write(chunk)) return false;
      chunk = header;
      bytes = 0;
    }
  }
  chunk.set_last(ends_stream);
  return write(chunk);
}

Status Stale(const std::string& self, const std::string& job, int32_t partition, int64_t base, int64_t folded) {
  return absl::AbortedError(fmt::format(
      "worker {}: job {} reduce partition {} is already folded to batch {}: an attempt on top of batch {} is stale",
      self, job, partition, folded, base));
}

std::vector<state::Change> ChangesOf(const std::vector<proto::StateChunk>& chunks, bool snapshot) {
  std::vector<state::Change> out;
  for (const proto::StateChunk& c : chunks) {
    if (c.snapshot() != snapshot) continue;
    for (const proto::StateEntry& e : c.entries()) {
      out.push_back({e.key(), e.erased() ? std::nullopt : std::optional<std::string>(e.value())});
    }
  }
  return out;
}

Result<std::vector<state::Change>> ScanAll(state::StateStore* store, const std::string& job, int32_t p) {
  std::vector<state::Change> all;
  RETURN_IF_ERROR(store->Scan(job, p, "", [&](std::string_view k, std::string_view v) {
    all.push_back({std::string(k), std::string(v)});
    return true;
  }));
  return all;
}

}  // namespace

Result<std::unique_ptr<ReduceState>> ReduceState::Open(const std::string& dir, std::string self_id,
                                                       rpc::ChannelCache* channels) {
  ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore> store, state::StateStore::Open(dir));
  return std::unique_ptr<ReduceState>(new ReduceState(std::move(store), std::move(self_id), channels));
}

std::mutex& ReduceState::LockOf(const std::string& job, int32_t partition) {
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<std::mutex>& m = locks_[{job, partition}];
  if (!m) m = std::make_unique<std::mutex>();
  return *m;
}

Status ReduceState::EnsureBase(int64_t epoch, const std::string& job, int32_t partition, int64_t base,
                               const google::protobuf::RepeatedPtrField<proto::MemberInfo>& holders) {
  // A copy already past `base` means a later batch committed: this attempt
  // is stale and must not roll the copy back.
  ASSIGN_OR_RETURN(std::optional<int64_t> folded, store_->FoldedBatch(job, partition));
  if (folded.has_value() && *folded > base) return Stale(self_, job, partition, base, *folded);
  bool holder = false;
  for (const proto::MemberInfo& h : holders) holder = holder || h.id() == self_;
  if (holder) {
    ASSIGN_OR_RETURN(bool here, store_->Prepare(job, partition, base));
    if (here) return absl::OkStatus();
    spdlog::warn("job {} reduce partition {}: named a holder of batch {} but the state here is not complete", job,
                 partition, base);
  }
  if (holders.empty()) {
    // No batch has committed state yet: the partition starts empty.
    return store_->Install(job, partition, base, {});
  }
  Status last = absl::UnavailableError("no holder of the state to fetch it from");
  std::vector<std::string> unreachable;
  for (const proto::MemberInfo& h : holders) {
    if (h.id() == self_) continue;
    proto::FetchStateRequest request;
    request.set_epoch(epoch);
    request.set_job_id(job);
    request.set_partition(partition);
    request.set_base_batch(base);
    std::vector<proto::StateChunk> chunks;
    bool complete = false;
    last = rpc::WorkerClient(*channels_, h.rpc_address()).FetchState(request, [&](proto::StateChunk&& chunk) {
      complete = chunk.last();
      chunks.push_back(std::move(chunk));
    });
    if (last.ok() && !complete) last = absl::UnavailableError("the state stream ended early");
    if (rpc::IsUnreachable(last)) unreachable.push_back(h.id());
    if (!last.ok()) {
      // Per partition and attempt of a batch, while a holder is gone: limited.
      SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn,
                       "job {} reduce partition {}: fetching the state as of batch {} from {}: {}", job, partition,
                       base, h.id(), last.ToString());
      continue;
    }
    const std::vector<state::Change> entries = ChangesOf(chunks, /*snapshot=*/true);
    RETURN_IF_ERROR(store_->Install(job, partition, base, entries));
    spdlog::info("job {} reduce partition {}: state as of batch {} fetched from {} ({} keys)", job, partition, base,
                 h.id(), entries.size());
    return absl::OkStatus();
  }
  return rpc::NamingUnreachable(
      Annotate(last, fmt::format("job {} reduce partition {}: the state as of batch {}", job, partition, base)),
      unreachable);
}

Status ReduceState::Replicate(int64_t epoch, const std::string& job, int32_t partition, int64_t base, int64_t batch,
                              bool replica_is_holder, const proto::MemberInfo& replica) {
  // Whether the replica holds the base is its own answer now (a holder
  // restarted from an older version, or a worker warmed ahead of a move,
  // needs only the changes it lacks); `replica_is_holder` no longer decides.
  (void)replica_is_holder;
  const int64_t state_bytes = store_->PartitionStats(job, partition).bytes;
  return ReplicateVia(
      epoch, job, partition, base, batch, replica.id(),
      [&](const std::vector<proto::StateChunk>& chunks, int64_t bytes) -> Result<proto::ReplicateStateResponse> {
        auto produce = [&](const rpc::ChunkWriter<proto::StateChunk>& write) -> Status {
          for (const proto::StateChunk& c : chunks) {
            if (!write(c)) break;
          }
          return absl::OkStatus();
        };
        // A whole state is written to the replica's store before it answers:
        // at least the fixed deadline copies had before, and well under the
        // task's own (the leader's RunTask deadline, 60 s).
        const bool whole = std::any_of(chunks.begin(), chunks.end(), [](const auto& c) { return c.snapshot(); });
        const auto deadline = whole ? std::clamp(TransferDeadline(bytes + state_bytes),
                                                 rpc::WorkerClient::kReplicateStateDeadline,
                                                 std::chrono::milliseconds(45'000))
                                    : TransferDeadline(bytes);
        return rpc::WorkerClient(*channels_, replica.rpc_address()).ReplicateState(produce, deadline);
      });
}

Status ReduceState::ReplicateVia(int64_t epoch, const std::string& job, int32_t partition, int64_t base, int64_t batch,
                                 const std::string& replica_id, const SendState& send, Sent* sent) {
  ASSIGN_OR_RETURN(std::vector<state::Change> delta, store_->ReadDelta(job, partition, batch));
  proto::StateChunk header;
  header.set_epoch(epoch);
  header.set_job_id(job);
  header.set_partition(partition);
  header.set_base_batch(base);
  header.set_batch(batch);
  header.set_answer_lacking(true);
  auto collect = [](const proto::StateChunk& h, std::span<const state::Change> changes, bool ends,
                    std::vector<proto::StateChunk>* out, int64_t* bytes) {
    WriteChunks(h, changes, ends, [&](const proto::StateChunk& c) {
      out->push_back(c);
      return true;
    });
    for (const state::Change& c : changes) *bytes += static_cast<int64_t>(c.key.size() + (c.value ? c.value->size() : 0) + 8);
  };
  auto annotate = [&](const Status& st) {
    return Annotate(st, fmt::format("copying job {} reduce partition {} batch {} to worker {}", job, partition, batch,
                                    replica_id));
  };
  Sent counted;
  auto finish = [&](Status st) {
    if (sent != nullptr) *sent = counted;
    return st;
  };
  // 1. The delta alone: what a replica holding the base needs.
  std::vector<proto::StateChunk> chunks;
  int64_t bytes = 0;
  collect(header, delta, /*ends=*/true, &chunks, &bytes);
  ++counted.streams;
  counted.delta_entries += static_cast<int64_t>(delta.size());
  Result<proto::ReplicateStateResponse> answer = send(chunks, bytes);
  std::optional<int64_t> has;
  if (answer.ok()) {
    if (!answer->lacks_base()) return finish(absl::OkStatus());
    if (answer->has_has_batch()) has = answer->has_batch();
  } else if (!absl::IsNotFound(answer.status())) {
    return finish(annotate(answer.status()));
  }
  // 2. The changes since the replica's copy, when this store still has them.
  std::optional<std::vector<state::Change>> since;
  if (has.has_value() && *has >= -1 && *has < base) {
    ASSIGN_OR_RETURN(since, store_->ChangesSince(job, partition, *has, base));
  }
  chunks.clear();
  bytes = 0;
  if (since.has_value()) {
    proto::StateChunk catch_up = header;
    catch_up.set_since_batch(*has);
    collect(catch_up, *since, /*ends=*/false, &chunks, &bytes);
    counted.catch_up_entries += static_cast<int64_t>(since->size());
    spdlog::info("job {} reduce partition {}: worker {} has the state as of batch {}: sending the {} changes to "
                 "batch {}",
                 job, partition, replica_id, *has, since->size(), base);
  } else {
    // 3. The whole state: the replica has no copy, or the deltas since its
    // copy were folded into a newer snapshot here.
    ASSIGN_OR_RETURN(std::vector<state::Change> all, ScanAll(store_.get(), job, partition));
    spdlog::info("job {} reduce partition {}: worker {} lacks the state as of batch {} ({}): sending it whole ({} "
                 "keys)",
                 job, partition, replica_id, base,
                 has.has_value() ? fmt::format("has batch {}, whose later deltas are gone here", *has)
                                 : std::string("no copy"),
                 all.size());
    proto::StateChunk snap = header;
    snap.set_snapshot(true);
    collect(snap, all, /*ends=*/false, &chunks, &bytes);
    counted.snapshot_entries += static_cast<int64_t>(all.size());
  }
  collect(header, delta, /*ends=*/true, &chunks, &bytes);
  ++counted.streams;
  counted.delta_entries += static_cast<int64_t>(delta.size());
  answer = send(chunks, bytes);
  if (!answer.ok()) return finish(annotate(answer.status()));
  if (answer->lacks_base()) {
    // Its copy changed between the two streams (a stale attempt moved it).
    return finish(annotate(absl::AbortedError("the replica still lacks the base")));
  }
  return finish(absl::OkStatus());
}

Result<proto::WarmStateResponse> ReduceState::Warm(int64_t epoch, const std::string& job, int32_t partition,
                                                    int64_t base,
                                                    const google::protobuf::RepeatedPtrField<proto::MemberInfo>& holders) {
  const auto started = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(LockOf(job, partition));
  proto::WarmStateResponse out;
  ASSIGN_OR_RETURN(std::optional<int64_t> folded, store_->FoldedBatch(job, partition));
  if (folded.has_value() && *folded >= base) {
    out.set_batch(*folded);
    return out;
  }
  google::protobuf::RepeatedPtrField<proto::MemberInfo> others;
  for (const proto::MemberInfo& h : holders) {
    if (h.id() != self_) *others.Add() = h;
  }
  if (others.empty()) {
    return absl::FailedPreconditionError(
        fmt::format("job {} reduce partition {}: no other holder to copy the state as of batch {} from", job,
                    partition, base));
  }
  // A copy of its own with the deltas up to base is enough (a former holder).
  ASSIGN_OR_RETURN(bool here, store_->Prepare(job, partition, base));
  if (!here) RETURN_IF_ERROR(EnsureBase(epoch, job, partition, base, others));
  out.set_batch(base);
  if (!here) out.set_bytes(store_->PartitionStats(job, partition).bytes);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("job {} reduce partition {}: warmed to batch {} ahead of a move ({} bytes copied in {:.3f} s)", job,
               partition, base, out.bytes(), seconds);
  return out;
}

Status ReduceState::DropJob(const std::string& job) {
  ASSIGN_OR_RETURN(auto held, store_->Partitions());
  int partitions = 0;
  for (const auto& [j, p] : held) {
    if (j != job) continue;
    // Under the partition's lock: an abandoned task of the job may still run.
    std::lock_guard<std::mutex> lock(LockOf(j, p));
    RETURN_IF_ERROR(store_->Drop(j, p));
    ++partitions;
  }
  if (partitions > 0) spdlog::info("job {} stopped: dropped its state ({} reduce partitions)", job, partitions);
  return absl::OkStatus();
}

Status ReduceState::Snapshot(const std::string& job, int32_t partition, int64_t base,
                             const std::function<bool(const proto::StateChunk&)>& write) {
  std::lock_guard<std::mutex> lock(LockOf(job, partition));
  // Read-only: this worker may be running (or about to fold) a later batch.
  ASSIGN_OR_RETURN(std::optional<std::vector<state::Change>> all, store_->ReadAsOf(job, partition, base));
  if (!all.has_value()) {
    return absl::NotFoundError(
        fmt::format("worker {} does not hold job {} reduce partition {} as of batch {}", self_, job, partition, base));
  }
  proto::StateChunk header;
  header.set_job_id(job);
  header.set_partition(partition);
  header.set_base_batch(base);
  header.set_snapshot(true);
  if (!WriteChunks(header, *all, /*ends_stream=*/true, write)) return absl::CancelledError("the reader went away");
  return absl::OkStatus();
}

Result<proto::ReplicateStateResponse> ReduceState::ApplyAnswering(const std::vector<proto::StateChunk>& chunks) {
  if (chunks.empty() || !chunks.back().last()) return absl::InvalidArgumentError("an incomplete state stream");
  const proto::StateChunk& first = chunks.front();
  const std::string& job = first.job_id();
  const int32_t partition = first.partition();
  const int64_t base = first.base_batch();
  std::lock_guard<std::mutex> lock(LockOf(job, partition));
  // Never roll a copy back: a copy past `base` means a later batch
  // committed, and this stream comes from a stale attempt.
  ASSIGN_OR_RETURN(std::optional<int64_t> folded, store_->FoldedBatch(job, partition));
  if (folded.has_value() && *folded > base) return Stale(self_, job, partition, base, *folded);
  bool has_snapshot = false, has_delta = false;
  std::optional<int64_t> since;
  std::vector<state::Change> catch_up, delta;
  for (const proto::StateChunk& c : chunks) {
    if (c.snapshot()) {
      has_snapshot = true;
      continue;
    }
    std::vector<state::Change>& into = c.has_since_batch() ? catch_up : delta;
    if (c.has_since_batch()) {
      since = c.since_batch();
    } else {
      has_delta = true;
    }
    for (const proto::StateEntry& e : c.entries()) {
      into.push_back({e.key(), e.erased() ? std::nullopt : std::optional<std::string>(e.value())});
    }
  }
  if (has_snapshot) RETURN_IF_ERROR(store_->Install(job, partition, base, ChangesOf(chunks, true)));
  // A snapshot alone (a savepoint's restore installs each partition so): the
  // state as of `base`, with no delta on top.
  if (has_snapshot && !has_delta) return proto::ReplicateStateResponse();
  if (since.has_value() && !has_snapshot) {
    // The changes since the copy's batch bring it to `base`: they are
    // written as the deltas since+1..base (all empty but the last, which
    // holds them merged), so the fold below makes the state as of base.
    if (*since >= base) return absl::InvalidArgumentError("changes since a batch not before the base");
    ASSIGN_OR_RETURN(bool at_since, store_->Prepare(job, partition, *since));
    if (!at_since) {
      return absl::NotFoundError(fmt::format("worker {} does not hold job {} reduce partition {} as of batch {}",
                                             self_, job, partition, *since));
    }
    for (int64_t b = *since + 1; b < base; ++b) RETURN_IF_ERROR(store_->WriteDelta(job, partition, b, {}));
    RETURN_IF_ERROR(store_->WriteDelta(job, partition, base, catch_up));
    spdlog::info("job {} reduce partition {}: caught up from batch {} to {} ({} changes)", job, partition, *since,
                 base, catch_up.size());
  }
  ASSIGN_OR_RETURN(bool here, store_->Prepare(job, partition, base));
  if (!here) {
    if (first.answer_lacking()) {
      proto::ReplicateStateResponse lacking;
      lacking.set_lacks_base(true);
      ASSIGN_OR_RETURN(std::optional<int64_t> has, store_->FoldedBatch(job, partition));
      if (has.has_value()) lacking.set_has_batch(*has);
      return lacking;
    }
    // The sender then sends the whole state (Replicate).
    return absl::NotFoundError(
        fmt::format("worker {} does not hold job {} reduce partition {} as of batch {}", self_, job, partition, base));
  }
  RETURN_IF_ERROR(store_->WriteDelta(job, partition, first.batch(), delta));
  return proto::ReplicateStateResponse();
}

}  // namespace sluice::worker
