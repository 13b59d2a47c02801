// How Sluice's clients make a call: the context with its deadline, the retry
// policy and the status mapping, once for unary calls and once for each kind
// of stream. Only lib/rpc's client .cc files include it.
//
// Module sluice::rpc owns it (internal). Thread-safe.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "fmt/format.h"
#include "grpcpp/grpcpp.h"
#include "lib/common/version.h"
#include "lib/rpc/call.h"
#include "lib/rpc/rpc.h"

namespace sluice::rpc::internal {

inline std::chrono::system_clock::time_point DeadlineIn(std::chrono::milliseconds d) {
  return std::chrono::system_clock::now() + d;
}

// Every call says which protocol its caller speaks (version.h); the server
// refuses one it does not talk to (auth.h, Authorize).
inline void PrepareContext(grpc::ClientContext* ctx, std::chrono::system_clock::time_point deadline) {
  ctx->set_deadline(deadline);
  ctx->AddMetadata(std::string(version::kProtocolHeader), std::to_string(version::kProtocol));
}

// `invoke(ClientContext*, Response*)` is one stub call returning grpc::Status.
// `cancel` (optional) may end it early from another thread.
template <typename Response, typename Invoke>
Result<Response> Unary(const RetryPolicy& retry, std::chrono::milliseconds deadline, Invoke&& invoke,
                       Cancellation* cancel = nullptr) {
  const auto end = DeadlineIn(deadline);
  std::chrono::milliseconds backoff = retry.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext ctx;
    PrepareContext(&ctx, end);
    Response response;
    if (cancel != nullptr && !cancel->Attach([&ctx] { ctx.TryCancel(); })) {
      return absl::CancelledError("the call was cancelled before it started");
    }
    Status st = FromGrpc(invoke(&ctx, &response));
    if (cancel != nullptr) cancel->Detach();
    if (st.ok()) return response;
    if (!absl::IsUnavailable(st) || attempt >= retry.max_attempts ||
        std::chrono::system_clock::now() + backoff >= end) {
      return st;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, retry.max_backoff);
  }
}

// A client stream: `open(ClientContext*, Response*)` starts it (a
// ClientWriter), `produce` writes it.
template <typename Response, typename Chunk, typename Open>
Result<Response> WriteStream(std::chrono::milliseconds deadline, Open&& open, const ChunkProducer<Chunk>& produce) {
  grpc::ClientContext ctx;
  PrepareContext(&ctx, DeadlineIn(deadline));
  Response response;
  std::unique_ptr<grpc::ClientWriter<Chunk>> writer = open(&ctx, &response);
  bool sent = true;
  Status produced = produce([&](const Chunk& chunk) { return sent = sent && writer->Write(chunk); });
  if (!produced.ok()) {
    ctx.TryCancel();
    writer->Finish();  // CANCELLED: the producer's status is the answer
    return produced;
  }
  if (sent) writer->WritesDone();
  RETURN_IF_ERROR(FromGrpc(writer->Finish()));
  return response;
}

// A server stream: `open(ClientContext*)` starts it (a ClientReader); every
// chunk goes to `consume`. `idle` (call.h): a watchdog thread cancels the
// stream once no chunk came for too long, or its caller stopped; the answer
// is then DEADLINE_EXCEEDED or CANCELLED saying so.
template <typename Chunk, typename Open>
Status ReadStream(std::chrono::milliseconds deadline, Open&& open, const ChunkConsumer<Chunk>& consume,
                  const StreamIdle& idle = {}) {
  grpc::ClientContext ctx;
  PrepareContext(&ctx, DeadlineIn(deadline));
  std::mutex mu;
  std::condition_variable wake;
  bool done = false, any = false;
  std::string ended;  // why the watchdog cancelled the call
  auto last = std::chrono::steady_clock::now();
  std::thread watchdog;
  if (idle.active()) {
    watchdog = std::thread([&] {
      constexpr std::chrono::milliseconds kCheck{200};
      std::unique_lock<std::mutex> lock(mu);
      while (!done) {
        const std::chrono::milliseconds limit = any ? idle.between : idle.first;
        const auto now = std::chrono::steady_clock::now();
        if (limit.count() > 0 && now - last >= limit) {
          ended = fmt::format("no chunk of the stream for {} ms", limit.count());
        } else if (idle.stopped && idle.stopped()) {
          ended = "its caller stopped";
        }
        if (!ended.empty()) {
          ctx.TryCancel();
          return;
        }
        auto until = now + kCheck;
        if (limit.count() > 0) until = std::min(until, last + limit);
        wake.wait_until(lock, until);
      }
    });
  }
  std::unique_ptr<grpc::ClientReader<Chunk>> reader = open(&ctx);
  Chunk chunk;
  while (reader->Read(&chunk)) {
    if (watchdog.joinable()) {
      std::lock_guard<std::mutex> lock(mu);
      last = std::chrono::steady_clock::now();
      any = true;
    }
    consume(std::move(chunk));
    chunk.Clear();
  }
  Status st = FromGrpc(reader->Finish());
  if (watchdog.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu);
      done = true;
    }
    wake.notify_all();
    watchdog.join();
  }
  if (!ended.empty() && !st.ok()) {
    const std::string why = ended + ": " + std::string(st.message());
    return ended.starts_with("no chunk") ? absl::DeadlineExceededError(why) : absl::CancelledError(why);
  }
  return st;
}

}  // namespace sluice::rpc::internal
