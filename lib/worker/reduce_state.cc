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

// The bytes `changes` take on the wire, about (for a copy's deadline).
int64_t BytesOf(std::span<const state::Change> changes) {
  int64_t bytes = 0;
  for (const state::Change& c : changes) bytes += static_cast<int64_t>(c.key.size() + (c.value ? c.value->size() : 0) + 8);
  return bytes;
}

Status Stale(const std::string& self, const std::string& job, int32_t partition, int64_t base, int64_t folded) {
  return absl::AbortedError(fmt::format(
      "worker {}: job {} reduce partition {} is already folded to batch {}: an attempt on top of batch {} is stale",
      self, job, partition, folded, base));
}

// The entries of a stream's chunks of one kind, as changes.
void AppendChanges(const proto::StateChunk& c, std::vector<state::Change>* out) {
  for (const proto::StateEntry& e : c.entries()) {
    out->push_back({e.key(), e.erased() ? std::nullopt : std::optional<std::string>(e.value())});
  }
}

// Streams `frozen` as snapshot chunks of `header`, never holding more than
// a chunk; the stream's last chunk is marked only if `ends_stream`.
Status WriteSnapshot(const state::StateStore::FrozenState& frozen, const proto::StateChunk& header, bool ends_stream,
                     const std::function<bool(const proto::StateChunk&)>& write, int64_t* keys) {
  proto::StateChunk snap = header;
  snap.set_snapshot(true);
  // One chunk held back, so that the stream's last one carries `last`.
  std::optional<proto::StateChunk> held_back;
  const auto hold = [&](const proto::StateChunk& c) {
    const bool ok = !held_back.has_value() || write(*held_back);
    held_back = c;
    return ok;
  };
  RETURN_IF_ERROR(frozen.Read(kChunkBytes, [&](std::span<const state::Change> chunk) {
    *keys += static_cast<int64_t>(chunk.size());
    if (!WriteChunks(snap, chunk, /*ends_stream=*/false, hold)) {
      return absl::CancelledError("the other side of the state stream went away");
    }
    return absl::OkStatus();
  }));
  held_back->set_last(ends_stream);
  if (!write(*held_back)) return absl::CancelledError("the other side of the state stream went away");
  return absl::OkStatus();
}

}  // namespace

Result<std::unique_ptr<ReduceState>> ReduceState::Open(const std::string& dir, std::string self_id,
                                                       rpc::ChannelCache* channels, int64_t state_memory_bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore> store,
                   state::StateStore::Open(dir, nullptr, {.memory_budget_bytes = state_memory_bytes}));
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
  ASSIGN_OR_RETURN(Fetched fetched, FetchCopy(epoch, job, partition, base, holders, /*warm=*/false, nullptr));
  RETURN_IF_ERROR(fetched.installer->Commit());
  spdlog::info("job {} reduce partition {}: state as of batch {} fetched from {} ({} keys)", job, partition, base,
               fetched.from, fetched.keys);
  return absl::OkStatus();
}

Result<ReduceState::Fetched> ReduceState::FetchCopy(
    int64_t epoch, const std::string& job, int32_t partition, int64_t base,
    const google::protobuf::RepeatedPtrField<proto::MemberInfo>& holders, bool warm,
    const std::function<bool()>& stopped) {
  Status last = absl::UnavailableError("no holder of the state to fetch it from");
  std::vector<std::string> unreachable;
  for (const proto::MemberInfo& h : holders) {
    if (h.id() == self_) continue;
    proto::FetchStateRequest request;
    request.set_epoch(epoch);
    request.set_job_id(job);
    request.set_partition(partition);
    request.set_base_batch(base);
    request.set_keep_changes(warm);
    // Installed chunk by chunk as they arrive, as of the batch the stream
    // says (a warm's may be later than asked); a stream that breaks off
    // leaves the copy here as it was (the installer, dropped, removes its part).
    Fetched fetched{.base = base, .from = h.id()};
    Status added = absl::OkStatus();
    std::vector<state::Change> changes;
    bool complete = false;
    // In a task, well inside its attempt; a warm, as long as chunks come
    // (the first may wait for the holder's batch to free the partition).
    const auto deadline = warm ? rpc::WorkerClient::kWarmFetchDeadline : rpc::WorkerClient::kFetchStateDeadline;
    const rpc::StreamIdle idle = warm ? rpc::StreamIdle{.first = rpc::WorkerClient::kWarmFetchFirstChunk,
                                                        .between = rpc::WorkerClient::kWarmFetchIdle,
                                                        .stopped = stopped}
                                      : rpc::StreamIdle{};
    last = rpc::WorkerClient(*channels_, h.rpc_address())
               .FetchState(
                   request,
                   [&](proto::StateChunk&& chunk) {
                     complete = chunk.last();
                     if (!added.ok() || !chunk.snapshot()) return;
                     if (fetched.installer == nullptr) {
                       if (chunk.base_batch() < base || (!warm && chunk.base_batch() != base)) {
                         added = absl::InternalError(fmt::format("{} sent the state as of batch {}, not {}", h.id(),
                                                                 chunk.base_batch(), base));
                         return;
                       }
                       fetched.base = chunk.base_batch();
                       Result<std::unique_ptr<state::StateStore::Installer>> in =
                           store_->BeginInstall(job, partition, fetched.base);
                       if (!in.ok()) {
                         added = in.status();
                         return;
                       }
                       fetched.installer = std::move(*in);
                     }
                     changes.clear();
                     AppendChanges(chunk, &changes);
                     fetched.keys += static_cast<int64_t>(changes.size());
                     added = fetched.installer->Add(changes);
                   },
                   deadline, idle);
    RETURN_IF_ERROR(added);
    if (last.ok() && (!complete || fetched.installer == nullptr)) {
      last = absl::UnavailableError("the state stream ended early");
    }
    if (rpc::IsUnreachable(last)) unreachable.push_back(h.id());
    if (!last.ok()) {
      // Per partition and attempt of a batch, while a holder is gone: limited.
      SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn,
                       "job {} reduce partition {}: fetching the state as of batch {} from {}: {}", job, partition,
                       base, h.id(), last.ToString());
      if (stopped && stopped()) break;
      continue;
    }
    return fetched;
  }
  return rpc::NamingUnreachable(
      Annotate(last, fmt::format("job {} reduce partition {}: the state as of batch {}", job, partition, base)),
      unreachable);
}

Status ReduceState::Replicate(int64_t epoch, const std::string& job, int32_t partition, int64_t base, int64_t batch,
                              bool replica_is_holder, const proto::MemberInfo& replica, Sent* sent) {
  // Whether the replica holds the base is its own answer now (a holder
  // restarted from an older version, or a worker warmed ahead of a move,
  // needs only the changes it lacks); `replica_is_holder` no longer decides.
  (void)replica_is_holder;
  const int64_t state_bytes = store_->PartitionStats(job, partition).bytes;
  return ReplicateVia(
      epoch, job, partition, base, batch, replica.id(),
      [&](const rpc::ChunkProducer<proto::StateChunk>& produce, int64_t bytes,
          bool whole) -> Result<proto::ReplicateStateResponse> {
        // A whole state is written to the replica's store before it answers:
        // at least the fixed deadline copies had before, and well under the
        // task's own (the leader's RunTask deadline, 60 s).
        const auto deadline = whole ? std::clamp(TransferDeadline(bytes + state_bytes),
                                                 rpc::WorkerClient::kReplicateStateDeadline,
                                                 std::chrono::milliseconds(45'000))
                                    : TransferDeadline(bytes);
        return rpc::WorkerClient(*channels_, replica.rpc_address()).ReplicateState(produce, deadline);
      },
      sent);
}

Status ReduceState::ReplicateVia(int64_t epoch, const std::string& job, int32_t partition, int64_t base, int64_t batch,
                                 const std::string& replica_id, const SendState& send, Sent* sent) {
  ASSIGN_OR_RETURN(std::vector<state::Change> delta, store_->ReadDelta(job, partition, batch));
  const int64_t delta_bytes = BytesOf(delta);
  proto::StateChunk header;
  header.set_epoch(epoch);
  header.set_job_id(job);
  header.set_partition(partition);
  header.set_base_batch(base);
  header.set_batch(batch);
  header.set_answer_lacking(true);
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
  ++counted.streams;
  counted.delta_entries += static_cast<int64_t>(delta.size());
  Result<proto::ReplicateStateResponse> answer = send(
      [&](const rpc::ChunkWriter<proto::StateChunk>& write) -> Status {
        WriteChunks(header, delta, /*ends_stream=*/true, write);
        return absl::OkStatus();
      },
      delta_bytes, /*whole=*/false);
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
  ++counted.streams;
  counted.delta_entries += static_cast<int64_t>(delta.size());
  if (since.has_value()) {
    counted.copy = Sent::Copy::kChanges;
    proto::StateChunk catch_up = header;
    catch_up.set_since_batch(*has);
    counted.catch_up_entries += static_cast<int64_t>(since->size());
    spdlog::info("job {} reduce partition {}: worker {} has the state as of batch {}: sending the {} changes to "
                 "batch {}",
                 job, partition, replica_id, *has, since->size(), base);
    answer = send(
        [&](const rpc::ChunkWriter<proto::StateChunk>& write) -> Status {
          if (WriteChunks(catch_up, *since, /*ends_stream=*/false, write)) {
            WriteChunks(header, delta, /*ends_stream=*/true, write);
          }
          return absl::OkStatus();
        },
        delta_bytes + BytesOf(*since), /*whole=*/false);
  } else {
    // 3. The whole state, streamed chunk by chunk: the replica has no copy,
    // or the deltas since its copy were folded into a newer snapshot here.
    spdlog::info("job {} reduce partition {}: worker {} lacks the state as of batch {} ({}): sending it whole ({} "
                 "keys)",
                 job, partition, replica_id, base,
                 has.has_value() ? fmt::format("has batch {}, whose later deltas are gone here", *has)
                                 : std::string("no copy"),
                 store_->PartitionStats(job, partition).keys);
    counted.copy = Sent::Copy::kWhole;
    int64_t keys = 0;
    answer = send(
        [&](const rpc::ChunkWriter<proto::StateChunk>& write) -> Status {
          // The caller holds the partition's lock (the batch's task): the
          // state is frozen here and read at once.
          ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore::FrozenState> frozen,
                           store_->Freeze(job, partition, base));
          if (frozen == nullptr) {
            return absl::FailedPreconditionError(
                fmt::format("no state of {}[{}] as of batch {} here", job, partition, base));
          }
          Status written = WriteSnapshot(*frozen, header, /*ends_stream=*/false, write, &keys);
          if (absl::IsCancelled(written)) return absl::OkStatus();  // the call's own status says why
          RETURN_IF_ERROR(written);
          WriteChunks(header, delta, /*ends_stream=*/true, write);
          return absl::OkStatus();
        },
        delta_bytes, /*whole=*/true);
    counted.snapshot_entries += keys;
  }
  if (!answer.ok()) return finish(annotate(answer.status()));
  if (answer->lacks_base()) {
    // Its copy changed between the two streams (a stale attempt moved it).
    return finish(annotate(absl::AbortedError("the replica still lacks the base")));
  }
  return finish(absl::OkStatus());
}

Result<proto::WarmStateResponse> ReduceState::Warm(int64_t epoch, const std::string& job, int32_t partition,
                                                    int64_t base,
                                                    const google::protobuf::RepeatedPtrField<proto::MemberInfo>& holders,
                                                    const std::function<bool()>& stopped) {
  const auto started = std::chrono::steady_clock::now();
  proto::WarmStateResponse out;
  google::protobuf::RepeatedPtrField<proto::MemberInfo> others;
  for (const proto::MemberInfo& h : holders) {
    if (h.id() != self_) *others.Add() = h;
  }
  {
    std::lock_guard<std::mutex> lock(LockOf(job, partition));
    ASSIGN_OR_RETURN(std::optional<int64_t> folded, store_->FoldedBatch(job, partition));
    if (folded.has_value() && *folded >= base) {
      out.set_batch(*folded);
      return out;
    }
    if (others.empty()) {
      return absl::FailedPreconditionError(
          fmt::format("job {} reduce partition {}: no other holder to copy the state as of batch {} from", job,
                      partition, base));
    }
    // A copy of its own with the deltas up to base is enough (a former holder).
    ASSIGN_OR_RETURN(bool here, store_->Prepare(job, partition, base));
    if (here) {
      out.set_batch(base);
      return out;
    }
  }
  // The copy streams in without the partition's lock (it may take minutes;
  // nothing else of this partition waits for it), and is switched to under
  // it, unless this worker got a copy as new meanwhile.
  ASSIGN_OR_RETURN(Fetched fetched, FetchCopy(epoch, job, partition, base, others, /*warm=*/true, stopped));
  {
    std::lock_guard<std::mutex> lock(LockOf(job, partition));
    ASSIGN_OR_RETURN(std::optional<int64_t> folded, store_->FoldedBatch(job, partition));
    if (folded.has_value() && *folded >= fetched.base) {
      out.set_batch(*folded);  // the fetched copy is dropped with its installer
      return out;
    }
    RETURN_IF_ERROR(fetched.installer->Commit());
  }
  out.set_batch(fetched.base);
  out.set_bytes(store_->PartitionStats(job, partition).bytes);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("job {} reduce partition {}: warmed to batch {} ahead of a move ({} keys, {} bytes from {} in {:.3f} s)",
               job, partition, fetched.base, fetched.keys, out.bytes(), fetched.from, seconds);
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

Result<std::unique_ptr<state::StateStore::FrozenState>> ReduceState::Freeze(const std::string& job,
                                                                            int32_t partition, int64_t base) {
  std::lock_guard<std::mutex> lock(LockOf(job, partition));
  return store_->Freeze(job, partition, base);
}

Status ReduceState::Snapshot(const std::string& job, int32_t partition, int64_t base, bool keep_changes,
                             const std::function<bool(const proto::StateChunk&)>& write) {
  // Read-only, and outside the partition's lock: this worker may be running
  // (or about to fold) a later batch, which a stream of gigabytes to a slow
  // reader must not hold up.
  std::unique_ptr<state::StateStore::FrozenState> frozen;
  {
    std::lock_guard<std::mutex> lock(LockOf(job, partition));
    if (keep_changes) {
      // A warm: as of base, or of this copy's folded batch if it is past it
      // (a folded batch has committed), and the changes since kept from then.
      ASSIGN_OR_RETURN(std::optional<int64_t> folded, store_->FoldedBatch(job, partition));
      if (folded.has_value() && *folded > base) base = *folded;
    }
    ASSIGN_OR_RETURN(frozen, store_->Freeze(job, partition, base));
    if (frozen != nullptr && keep_changes) {
      store_->KeepChangesSince(job, partition, base, std::chrono::steady_clock::now() + kWarmKeep);
    }
  }
  if (frozen == nullptr) {
    return absl::NotFoundError(
        fmt::format("worker {} does not hold job {} reduce partition {} as of batch {}", self_, job, partition, base));
  }
  proto::StateChunk header;
  header.set_job_id(job);
  header.set_partition(partition);
  header.set_base_batch(base);
  int64_t keys = 0;
  RETURN_IF_ERROR(WriteSnapshot(*frozen, header, /*ends_stream=*/true, write, &keys));
  return absl::OkStatus();
}

Result<proto::ReplicateStateResponse> ReduceState::ApplyAnswering(const std::vector<proto::StateChunk>& chunks) {
  size_t i = 0;
  return ApplyAnswering([&](proto::StateChunk* c) {
    if (i == chunks.size()) return false;
    *c = chunks[i++];
    return true;
  });
}

Result<proto::ReplicateStateResponse> ReduceState::ApplyAnswering(
    const std::function<bool(proto::StateChunk*)>& next) {
  proto::StateChunk chunk;
  if (!next(&chunk)) return absl::InvalidArgumentError("an empty state stream");
  const std::string job = chunk.job_id();
  const int32_t partition = chunk.partition();
  const int64_t base = chunk.base_batch();
  const int64_t batch = chunk.batch();
  const bool answer_lacking = chunk.answer_lacking();
  std::lock_guard<std::mutex> lock(LockOf(job, partition));
  // Never roll a copy back: a copy past `base` means a later batch
  // committed, and this stream comes from a stale attempt.
  ASSIGN_OR_RETURN(std::optional<int64_t> folded, store_->FoldedBatch(job, partition));
  if (folded.has_value() && *folded > base) return Stale(self_, job, partition, base, *folded);
  // Snapshot chunks go to the store as they arrive (a whole state is never
  // held here); the changes since a copy and the delta, small, are kept for
  // the end.
  std::unique_ptr<state::StateStore::Installer> installer;
  std::optional<int64_t> since;
  std::vector<state::Change> changes, catch_up, delta;
  bool has_delta = false;
  bool last = false;
  do {
    last = chunk.last();
    if (chunk.snapshot()) {
      if (installer == nullptr) {
        ASSIGN_OR_RETURN(installer, store_->BeginInstall(job, partition, base));
      }
      changes.clear();
      AppendChanges(chunk, &changes);
      RETURN_IF_ERROR(installer->Add(changes));
    } else if (chunk.has_since_batch()) {
      since = chunk.since_batch();
      AppendChanges(chunk, &catch_up);
    } else {
      has_delta = true;
      AppendChanges(chunk, &delta);
    }
  } while (!last && next(&chunk));
  if (!last) return absl::InvalidArgumentError("an incomplete state stream");  // the installer removes its part
  const bool has_snapshot = installer != nullptr;
  if (has_snapshot) RETURN_IF_ERROR(installer->Commit());
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
    if (answer_lacking) {
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
  RETURN_IF_ERROR(store_->WriteDelta(job, partition, batch, delta));
  return proto::ReplicateStateResponse();
}

}  // namespace sluice::worker
