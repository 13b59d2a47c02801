// TransferDeadline: how long one worker waits for a transfer of a given size
// to or from another worker (a block, a shuffle push, a state copy).
//
// Module sluice::worker owns it. A few seconds and the time to move the
// bytes at a slow 20 MB/s: a peer that does not answer in time (paused, cut
// off, overloaded) is treated as unreachable; waiting longer is what stalled
// jobs. Thread-safe (a pure function).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace sluice::worker {

inline std::chrono::milliseconds TransferDeadline(int64_t bytes) {
  return std::chrono::milliseconds(3000 + std::max<int64_t>(0, bytes) / 20'000);
}

}  // namespace sluice::worker
