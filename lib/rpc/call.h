// What every RPC client of Sluice shares: the retry policy of unary calls and
// the shape of streamed calls (a producer writing chunks, a consumer reading
// them).
//
// Module sluice::rpc owns it. Deadlines are per call, with each method's
// default next to its client (worker_client.h, driver_client.h,
// wal_peer_client.h). Thread-safe (plain values).
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <utility>

#include "lib/common/status.h"

namespace sluice::rpc {

// Retries of a unary call that failed with UNAVAILABLE, all within the call's
// one deadline, with exponential backoff. Every client defaults to none:
// their callers own the retry loops (the worker's reporter, the scheduler,
// the WAL's replication), and a streamed call is never retried.
struct RetryPolicy {
  int max_attempts = 1;  // 1: no retry
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{1000};
};

// A server stream bounded by its progress rather than only by its deadline:
// it ends (DEADLINE_EXCEEDED, saying so) once no chunk came for `first`
// before the first one, or for `between` after one; and, when `stopped`
// says so, as soon as the check notices (every 200 ms at most). Zero
// durations: no such bound. Used for copies whose size is not known ahead
// (a warm's FetchState).
struct StreamIdle {
  std::chrono::milliseconds first{0};
  std::chrono::milliseconds between{0};
  std::function<bool()> stopped;  // optional
  bool active() const { return first.count() > 0 || between.count() > 0 || stopped != nullptr; }
};

// Lets another thread end a call early: the call in progress (if any) and
// every later one made with it fail at once with CANCELLED. The scheduler
// uses one per task attempt, to give up on a worker that left the cluster
// instead of waiting out the attempt's deadline.
//
// Thread-safe.
class Cancellation {
 public:
  void Cancel() {
    // Under mu_: Detach() (before the call's context goes) waits for it.
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (cancel_call_) cancel_call_();
  }
  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }

  // For lib/rpc's calls: `cancel_call` ends the call now in progress until
  // Detach(). False (and nothing attached) if already cancelled.
  bool Attach(std::function<void()> cancel_call) {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return false;
    cancel_call_ = std::move(cancel_call);
    return true;
  }
  void Detach() {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_call_ = nullptr;
  }

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;
  std::function<void()> cancel_call_;
};

// Writes one chunk of a client stream; false once the stream is broken (stop
// writing: the call's status says why).
template <typename Chunk>
using ChunkWriter = std::function<bool(const Chunk&)>;

// Writes a client stream's chunks. A non-OK status cancels the call and is
// what the call returns.
template <typename Chunk>
using ChunkProducer = std::function<Status(const ChunkWriter<Chunk>&)>;

// Takes each chunk of a server stream, in order.
template <typename Chunk>
using ChunkConsumer = std::function<void(Chunk&&)>;

// For adapters to interfaces whose methods fill a `Response*`: the call's
// status, its answer moved into `*response`.
template <typename Response>
Status MoveInto(Result<Response> result, Response* response) {
  if (!result.ok()) return result.status();
  *response = std::move(*result);
  return absl::OkStatus();
}

}  // namespace sluice::rpc
