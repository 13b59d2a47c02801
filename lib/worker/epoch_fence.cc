#include "lib/worker/epoch_fence.h"

namespace sluice::worker {

Status EpochFence::Accept(int64_t epoch) {
  if (epoch <= 0) return absl::InvalidArgumentError(fmt::format("epoch {} is not positive", epoch));
  int64_t seen = highest_.load();
  while (epoch > seen && !highest_.compare_exchange_weak(seen, epoch)) {
  }
  if (epoch < seen) {
    return absl::FailedPreconditionError(
        fmt::format("stale leader epoch {}: this worker has accepted epoch {}", epoch, seen));
  }
  return absl::OkStatus();
}

}  // namespace sluice::worker
