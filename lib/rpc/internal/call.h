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
// chunk goes to `consume`. `idle` > 0: the stream is also cancelled once no
// chunk came for that long (a long copy is bounded by its progress, not by
// its size), and the answer is DEADLINE_EXCEEDED saying so.
template <typename Chunk, typename Open>
Status ReadStream(std::chrono::milliseconds deadline, Open&& open, const ChunkConsumer<Chunk>& consume,
                  std::chrono::milliseconds idle = std::chrono::milliseconds(0)) {
  grpc::ClientContext ctx;
  PrepareContext(&ctx, DeadlineIn(deadline));
  std::mutex mu;
  std::condition_variable wake;
  bool done = false, stalled = false;
  auto last = std::chrono::steady_clock::now();
  std::thread watchdog;
  if (idle.count() > 0) {
    watchdog = std::thread([&] {
      std::unique_lock<std::mutex> lock(mu);
      while (!done) {
        if (std::chrono::steady_clock::now() - last >= idle) {
          stalled = true;
          ctx.TryCancel();
          return;
        }
        wake.wait_until(lock, last + idle);
      }
    });
  }
  std::unique_ptr<grpc::ClientReader<Chunk>> reader = open(&ctx);
  Chunk chunk;
  while (reader->Read(&chunk)) {
    if (idle.count() > 0) {
      std::lock_guard<std::mutex> lock(mu);
      last = std::chrono::steady_clock::now();
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
  if (stalled && !st.ok()) {
    return absl::DeadlineExceededError(
        fmt::format("no chunk of the stream for {} ms: {}", idle.count(), std::string(st.message())));
  }
  return st;
}

}  // namespace sluice::rpc::internal
