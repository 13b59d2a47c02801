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

// The entries of a stream's chunks of one kind, as changes.
void AppendChanges(const proto::StateChunk& c, std::vector<state::Change>* out) {
  for (const proto::StateEntry& e : c.entries()) {
    out->push_back({e.key(), e.erased() ? std::nullopt : std::optional<std::string>(e.value())});
  }
}

// Streams (job, p)'s state as of `base` from `store` as snapshot chunks of
// `header`, never holding more than a chunk; the stream's last chunk is
// marked only if `ends_stream`. false from ReadAsOf: the store cannot.
Result<bool> WriteSnapshot(state::StateStore* store, const std::string& job, int32_t p, int64_t base,
                           const proto::StateChunk& header, bool ends_stream,
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
  ASSIGN_OR_RETURN(bool held, store->ReadAsOf(job, p, base, kChunkBytes, [&](std::span<const state::Change> chunk) {
                     *keys += static_cast<int64_t>(chunk.size());
                     if (!WriteChunks(snap, chunk, /*ends_stream=*/false, hold)) {
                       return absl::CancelledError("the other side of the state stream went away");
                     }
                     return absl::OkStatus();
                   }));
  if (!held) return false;
  held_back->set_last(ends_stream);
  if (!write(*held_back)) return absl::CancelledError("the other side of the state stream went away");
  return true;
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
  Status last = absl::UnavailableError("no holder of the state to fetch it from");
  std::vector<std::string> unreachable;
  for (const proto::MemberInfo& h : holders) {
    if (h.id() == self_) continue;
    proto::FetchStateRequest request;
    request.set_epoch(epoch);
    request.set_job_id(job);
    request.set_partition(partition);
    request.set_base_batch(base);
    // Installed chunk by chunk as they arrive; a stream that breaks off
    // leaves the copy here as it was (the installer, dropped, removes its part).
    Result<std::unique_ptr<state::StateStore::Installer>> installer = store_->BeginInstall(job, partition, base);
    if (!installer.ok()) return installer.status();
    Status added = absl::OkStatus();
    int64_t keys = 0;
    std::vector<state::Change> changes;
    bool complete = false;
    last = rpc::WorkerClient(*channels_, h.rpc_address()).FetchState(request, [&](proto::StateChunk&& chunk) {
      complete = chunk.last();
      if (!added.ok() || !chunk.snapshot()) return;
      changes.clear();
      AppendChanges(chunk, &changes);
      keys += static_cast<int64_t>(changes.size());
      added = (*installer)->Add(changes);
    });
    RETURN_IF_ERROR(added);
    if (last.ok() && !complete) last = absl::UnavailableError("the state stream ended early");
    if (rpc::IsUnreachable(last)) unreachable.push_back(h.id());
    if (!last.ok()) {
      // Per partition and attempt of a batch, while a holder is gone: limited.
      SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn,
                       "job {} reduce partition {}: fetching the state as of batch {} from {}: {}", job, partition,
                       base, h.id(), last.ToString());
      continue;
    }
    RETURN_IF_ERROR((*installer)->Commit());
    spdlog::info("job {} reduce partition {}: state as of batch {} fetched from {} ({} keys)", job, partition, base,
                 h.id(), keys);
    return absl::OkStatus();
  }
  return rpc::NamingUnreachable(
      Annotate(last, fmt::format("job {} reduce partition {}: the state as of batch {}", job, partition, base)),
      unreachable);
}

Status ReduceState::Replicate(int64_t epoch, const std::string& job, int32_t partition, int64_t base, int64_t batch,
                              bool replica_is_holder, const proto::MemberInfo& replica) {
  ASSIGN_OR_RETURN(std::vector<state::Change> delta, store_->ReadDelta(job, partition, batch));
  // The copy's deadline follows its bytes: the delta, and the whole state
  // when it goes too (a replica that cannot take it in time is unreachable).
  int64_t delta_bytes = 0;
  for (const state::Change& c : delta) delta_bytes += static_cast<int64_t>(c.key.size() + (c.value ? c.value->size() : 0) + 8);
  const int64_t state_bytes = store_->PartitionStats(job, partition).bytes;
  proto::StateChunk header;
  header.set_epoch(epoch);
  header.set_job_id(job);
  header.set_partition(partition);
  header.set_base_batch(base);
  header.set_batch(batch);
  for (bool with_snapshot : {!replica_is_holder, true}) {
    auto produce = [&](const rpc::ChunkWriter<proto::StateChunk>& write) -> Status {
      bool sent = true;
      if (with_snapshot) {
        // The state as of base (this copy is folded to it): streamed.
        int64_t keys = 0;
        Result<bool> held = WriteSnapshot(store_.get(), job, partition, base, header, /*ends_stream=*/false, write, &keys);
        if (absl::IsCancelled(held.status())) return absl::OkStatus();  // the call's own status says why
        if (!held.ok()) return held.status();
        if (!*held) return absl::FailedPreconditionError(fmt::format("no state of {}[{}] as of batch {} here", job, partition, base));
        spdlog::info("job {} reduce partition {}: copied the state as of batch {} ({} keys) to worker {}", job,
                     partition, base, keys, replica.id());
      }
      if (sent) WriteChunks(header, delta, /*ends_stream=*/true, write);
      return absl::OkStatus();
    };
    // A whole state is written to the replica's store before it answers: at
    // least the fixed deadline copies had before, and well under the task's
    // own (the leader's RunTask deadline, 60 s).
    const auto deadline =
        with_snapshot ? std::clamp(TransferDeadline(delta_bytes + state_bytes),
                                   rpc::WorkerClient::kReplicateStateDeadline, std::chrono::milliseconds(45'000))
                      : TransferDeadline(delta_bytes);
    Status st = rpc::WorkerClient(*channels_, replica.rpc_address()).ReplicateState(produce, deadline).status();
    if (st.ok()) return st;
    if (with_snapshot || !absl::IsNotFound(st)) {
      return Annotate(st, fmt::format("copying job {} reduce partition {} batch {} to worker {}", job, partition,
                                      batch, replica.id()));
    }
    // The replica lacks the base: send it the whole state first.
    spdlog::info("job {} reduce partition {}: worker {} lacks the state as of batch {}: sending it whole", job,
                 partition, replica.id(), base);
  }
  return absl::InternalError("unreachable");
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
  proto::StateChunk header;
  header.set_job_id(job);
  header.set_partition(partition);
  header.set_base_batch(base);
  int64_t keys = 0;
  ASSIGN_OR_RETURN(bool held, WriteSnapshot(store_.get(), job, partition, base, header, /*ends_stream=*/true, write, &keys));
  if (!held) {
    return absl::NotFoundError(
        fmt::format("worker {} does not hold job {} reduce partition {} as of batch {}", self_, job, partition, base));
  }
  return absl::OkStatus();
}

Status ReduceState::Apply(const std::vector<proto::StateChunk>& chunks) {
  size_t i = 0;
  return Apply([&](proto::StateChunk* c) {
    if (i == chunks.size()) return false;
    *c = chunks[i++];
    return true;
  });
}

Status ReduceState::Apply(const std::function<bool(proto::StateChunk*)>& next) {
  proto::StateChunk chunk;
  if (!next(&chunk)) return absl::InvalidArgumentError("an empty state stream");
  const std::string job = chunk.job_id();
  const int32_t partition = chunk.partition();
  const int64_t base = chunk.base_batch();
  const int64_t batch = chunk.batch();
  std::lock_guard<std::mutex> lock(LockOf(job, partition));
  // Never roll a copy back: a copy past `base` means a later batch
  // committed, and this stream comes from a stale attempt.
  ASSIGN_OR_RETURN(std::optional<int64_t> folded, store_->FoldedBatch(job, partition));
  if (folded.has_value() && *folded > base) return Stale(self_, job, partition, base, *folded);
  // Snapshot chunks go to the store as they arrive (a whole state is never
  // held here); the delta's chunks, small, are kept for the end.
  std::unique_ptr<state::StateStore::Installer> installer;
  std::vector<proto::StateChunk> delta;
  std::vector<state::Change> changes;
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
    } else {
      delta.push_back(std::move(chunk));
    }
  } while (!last && next(&chunk));
  if (!last) return absl::InvalidArgumentError("an incomplete state stream");  // the installer removes its part
  const bool has_snapshot = installer != nullptr;
  if (has_snapshot) RETURN_IF_ERROR(installer->Commit());
  // A snapshot alone (a savepoint's restore installs each partition so): the
  // state as of `base`, with no delta on top.
  if (has_snapshot && delta.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(bool here, store_->Prepare(job, partition, base));
  if (!here) {
    // The sender then sends the whole state (Replicate).
    return absl::NotFoundError(
        fmt::format("worker {} does not hold job {} reduce partition {} as of batch {}", self_, job, partition, base));
  }
  return store_->WriteDelta(job, partition, batch, ChangesOf(delta, false));
}

}  // namespace sluice::worker
