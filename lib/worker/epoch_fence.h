// EpochFence: a worker's memory of the highest leader epoch it has accepted.
//
// Module sluice::worker owns it. Every driver->worker RPC carries the
// sender's epoch (docs/design.md, rule 4): Accept() takes it if it is not lower
// than the highest seen (and raises the mark), else answers
// FAILED_PRECONDITION, so a paused-then-resumed old leader can do no harm.
//
// Thread-safe (lock-free).
#pragma once

#include <atomic>
#include <cstdint>

#include "lib/common/status.h"

namespace sluice::worker {

class EpochFence {
 public:
  [[nodiscard]] Status Accept(int64_t epoch);
  int64_t highest() const { return highest_.load(); }

 private:
  std::atomic<int64_t> highest_{0};
};

}  // namespace sluice::worker
