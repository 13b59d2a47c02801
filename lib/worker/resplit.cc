#include "lib/worker/resplit.h"

#include <mutex>
#include <set>

#include "lib/engine/state_namespace.h"
#include "lib/engine/state_partition.h"
#include "lib/rpc/rpc.h"
#include "lib/rpc/worker_client.h"
#include "lib/worker/reduce_state.h"
#include "spdlog/spdlog.h"

namespace sluice::worker {
namespace {

constexpr size_t kChunkBytes = 1 << 20;

}  // namespace

Status Resplitter::ServeSplit(const proto::FetchStateRequest& request,
                              const std::function<bool(const proto::StateChunk&)>& write) {
  const uint32_t into = static_cast<uint32_t>(request.split_partitions());
  if (request.split_partition() < 0 || static_cast<uint32_t>(request.split_partition()) >= into) {
    return absl::InvalidArgumentError(fmt::format("split partition {} of {}", request.split_partition(), into));
  }
  proto::StateChunk header;
  header.set_job_id(request.job_id());
  header.set_partition(request.partition());
  header.set_base_batch(request.base_batch());
  header.set_snapshot(true);
  proto::StateChunk chunk = header;
  size_t bytes = 0;
  bool gone = false;  // the reader went away
  // Read-only, like FetchState (this copy may be folded on by a later
  // batch), outside the partition's lock, and in chunks: the whole state is
  // never in memory here.
  ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore::FrozenState> frozen,
                   state_->Freeze(request.job_id(), request.partition(), request.base_batch()));
  if (frozen == nullptr) {
    return absl::NotFoundError(fmt::format("worker {} does not hold {} reduce partition {} as of batch {}",
                                           state_->self_id(), request.job_id(), request.partition(),
                                           request.base_batch()));
  }
  const auto share = [&](std::span<const state::Change> entries) -> Status {
    for (const state::Change& c : entries) {
      // The deadline index is rebuilt on each new partition, never split.
      if (engine::IsStateIndexKey(c.key)) continue;
      if (engine::StatePartitionOf(c.key, into) != static_cast<uint32_t>(request.split_partition())) continue;
      proto::StateEntry* e = chunk.add_entries();
      e->set_key(c.key);
      e->set_value(c.value.value_or(""));
      bytes += c.key.size() + (c.value ? c.value->size() : 0) + 8;
      if (bytes >= kChunkBytes) {
        if (!write(chunk)) {
          gone = true;
          return absl::CancelledError("the reader went away");
        }
        chunk = header;
        bytes = 0;
      }
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(frozen->Read(kChunkBytes, share));
  chunk.set_last(true);
  if (gone || !write(chunk)) return absl::CancelledError("the reader went away");
  return absl::OkStatus();
}

Result<proto::ResplitStateResponse> Resplitter::Resplit(const proto::ResplitStateRequest& request) {
  if (request.new_partitions() <= 0 || request.new_partition() < 0 ||
      request.new_partition() >= request.new_partitions() || request.new_layout() == request.old_layout()) {
    return absl::InvalidArgumentError(fmt::format("re-split into partition {} of {}, layout {} -> {}",
                                                  request.new_partition(), request.new_partitions(),
                                                  request.old_layout(), request.new_layout()));
  }
  const std::string old_ns = engine::StateNamespace(request.job_id(), request.old_layout());
  const std::string new_ns = engine::StateNamespace(request.job_id(), request.new_layout());
  const int64_t base = request.base_batch();
  // Each key lies in exactly one old partition, so the shares never overlap.
  // They are installed as they arrive (the new partition's whole state is
  // never in memory); until Commit nothing of the new layout is visible, and
  // an installer dropped by an error removes what it wrote.
  std::lock_guard<std::mutex> lock(state_->LockOf(new_ns, request.new_partition()));
  // A copy past `base` means a batch of the new layout committed: this call
  // is stale and must not roll it back.
  ASSIGN_OR_RETURN(std::optional<int64_t> folded, state_->store()->FoldedBatch(new_ns, request.new_partition()));
  if (folded.has_value() && *folded > base) {
    return absl::AbortedError(fmt::format("job {} partition {} of layout {} is already folded to batch {}",
                                          request.job_id(), request.new_partition(), request.new_layout(), *folded));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore::Installer> installer,
                   state_->store()->BeginInstall(new_ns, request.new_partition(), base, /*distinct_keys=*/true));
  proto::ResplitStateResponse response;
  for (const proto::ResplitHolders& old : request.old_holders()) {
    Status last = absl::UnavailableError("no holder named");
    for (const proto::MemberInfo& h : old.workers()) {
      proto::FetchStateRequest fetch;
      fetch.set_epoch(request.epoch());
      fetch.set_job_id(old_ns);
      fetch.set_partition(old.partition());
      fetch.set_base_batch(base);
      fetch.set_split_partitions(request.new_partitions());
      fetch.set_split_partition(request.new_partition());
      // A share is added chunk by chunk; one that breaks off midway cannot be
      // taken back from the installer, so the whole re-split starts again.
      bool complete = false;
      int64_t keys = 0, bytes = 0;
      Status added = absl::OkStatus();
      std::vector<state::Change> share;
      last = rpc::WorkerClient(*channels_, h.rpc_address()).FetchState(fetch, [&](proto::StateChunk&& chunk) {
        complete = chunk.last();
        if (!added.ok()) return;
        share.clear();
        for (proto::StateEntry& e : *chunk.mutable_entries()) {
          bytes += static_cast<int64_t>(e.key().size() + e.value().size());
          share.push_back({std::move(*e.mutable_key()), std::move(*e.mutable_value())});
        }
        keys += static_cast<int64_t>(share.size());
        added = installer->Add(share);
      });
      RETURN_IF_ERROR(added);
      if (last.ok() && !complete) last = absl::UnavailableError("the state stream ended early");
      if (last.ok()) {
        response.set_keys(response.keys() + keys);
        response.set_bytes(response.bytes() + bytes);
        break;
      }
      if (keys > 0) {
        return absl::UnavailableError(fmt::format(
            "job {} re-split into partition {}: old partition {} as of batch {} from {} broke off: {}",
            request.job_id(), request.new_partition(), old.partition(), base, h.id(), last.ToString()));
      }
      spdlog::warn("job {} re-split into partition {}: old partition {} as of batch {} from {}: {}",
                   request.job_id(), request.new_partition(), old.partition(), base, h.id(), last.ToString());
    }
    if (!last.ok()) {
      return absl::UnavailableError(fmt::format("job {}: no holder gave old reduce partition {} as of batch {}: {}",
                                                request.job_id(), old.partition(), base, std::string(last.message())));
    }
  }
  RETURN_IF_ERROR(installer->Commit());
  spdlog::info("job {}: reduce partition {} of {} (layout {}) re-split from {} partitions as of batch {}: {} keys",
               request.job_id(), request.new_partition(), request.new_partitions(), request.new_layout(),
               request.old_partitions(), base, response.keys());
  return response;
}

Status Resplitter::DropNamespace(const std::string& ns) {
  ASSIGN_OR_RETURN(auto held, state_->store()->Partitions());
  int partitions = 0;
  for (const auto& [j, p] : held) {
    if (j != ns) continue;
    // Under the partition's lock: an abandoned task may still run on it.
    std::lock_guard<std::mutex> lock(state_->LockOf(j, p));
    RETURN_IF_ERROR(state_->store()->Drop(j, p));
    ++partitions;
  }
  if (partitions > 0) {
    const engine::ParsedStateNamespace parsed = engine::ParseStateNamespace(ns);
    spdlog::info("job {}: dropped state layout {} ({} reduce partitions)", parsed.job_id, parsed.layout, partitions);
  }
  return absl::OkStatus();
}

Status Resplitter::DropLaterLayouts(const std::string& job_id) {
  ASSIGN_OR_RETURN(auto held, state_->store()->Partitions());
  std::set<std::string> namespaces;
  for (const auto& [j, p] : held) {
    const engine::ParsedStateNamespace parsed = engine::ParseStateNamespace(j);
    if (parsed.layout > 0 && parsed.job_id == job_id) namespaces.insert(j);
  }
  for (const std::string& ns : namespaces) RETURN_IF_ERROR(DropNamespace(ns));
  return absl::OkStatus();
}

}  // namespace sluice::worker
