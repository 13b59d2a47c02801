// state_move_bench: the rate at which a reduce partition's state moves from
// one worker's state store to another's, through the real FetchState stream
// (WorkerServiceImpl on a gRPC server on loopback, in this process, the
// client a second store's streamed install, as ReduceState::EnsureBase does
// it), against the baseline of reading the same state locally from RocksDB
// (the chunked ReadAsOf alone) in the same run.
//
//   state_move_bench [--mb 1024] [--value-bytes 1000] [--budget-mb 256] [--dir /tmp]
//
// Both stores in the disk layout under --budget-mb (0: in memory). Prints
// MB/s of key and value bytes for each, the ratio, and the process's peak
// RSS (VmHWM): the copy holds a chunk at a time, not the state.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include "CLI/CLI.hpp"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/rpc.h"
#include "lib/rpc/worker_client.h"
#include "lib/state/state_store.h"
#include "lib/worker/epoch_fence.h"
#include "lib/worker/reduce_state.h"
#include "lib/worker/worker_service.h"
#include "spdlog/spdlog.h"

namespace {

using Clock = std::chrono::steady_clock;
using sluice::Status;
using sluice::state::Change;

long StatusKb(const char* field) {
  FILE* f = std::fopen("/proc/self/status", "r");
  char line[256];
  long kb = 0;
  while (f != nullptr && std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::strncmp(line, field, std::strlen(field)) == 0) kb = std::strtol(line + std::strlen(field), nullptr, 10);
  }
  if (f != nullptr) std::fclose(f);
  return kb;
}

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

int Fail(const std::string& what, const Status& st) {
  std::cerr << "state_move_bench: " << what << ": " << st << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("state_move_bench: moving a partition's state between two workers' stores over FetchState");
  int64_t mb = 1024;
  int value_bytes = 1000;
  int64_t budget_mb = 256;
  std::string tmp = "/tmp";
  app.add_option("--mb", mb, "Key and value bytes of the partition's state, MB")->capture_default_str();
  app.add_option("--value-bytes", value_bytes, "Bytes per value")->capture_default_str();
  app.add_option("--budget-mb", budget_mb, "Each store's --state-memory-mb (0: in memory)")->capture_default_str();
  app.add_option("--dir", tmp, "Where the two stores go")->capture_default_str();
  int fold_ms = 100;
  app.add_option("--fold-ms", fold_ms, "A batch folded on the source every this many ms during the move (0: none)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  const std::string dir = tmp + "/state_move_bench." + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string job = "bench";
  const int64_t base = 41;

  sluice::rpc::ChannelCache channels;
  auto source = sluice::worker::ReduceState::Open(dir + "/a", "worker-a", &channels, budget_mb << 20);
  if (!source.ok()) return Fail("opening the source store", source.status());
  auto target = sluice::worker::ReduceState::Open(dir + "/b", "worker-b", &channels, budget_mb << 20);
  if (!target.ok()) return Fail("opening the target store", target.status());

  // The state: keys "key-<12 digits>", values of --value-bytes.
  const int64_t entry_bytes = 16 + value_bytes;
  const int64_t keys = (mb * 1'000'000) / entry_bytes;
  {
    const auto t0 = Clock::now();
    auto in = (*source)->store()->BeginInstall(job, 0, base);
    if (!in.ok()) return Fail("installing the source state", in.status());
    std::vector<Change> chunk;
    std::string value(value_bytes, 'v');
    char key[32];
    for (int64_t i = 0; i < keys; ++i) {
      std::snprintf(key, sizeof(key), "key-%012lld", static_cast<long long>(i));
      std::memcpy(value.data(), key, std::min<size_t>(16, value.size()));
      chunk.push_back(Change{key, value});
      if (chunk.size() == 4096 || i + 1 == keys) {
        if (Status st = (*in)->Add(chunk); !st.ok()) return Fail("installing the source state", st);
        chunk.clear();
      }
    }
    if (Status st = (*in)->Commit(); !st.ok()) return Fail("installing the source state", st);
    std::printf("source state: %lld keys, %.0f MB, written in %.1f s\n", static_cast<long long>(keys),
                static_cast<double>(keys * entry_bytes) / 1e6, Seconds(t0));
  }
  const sluice::state::StateStats stats = (*source)->store()->PartitionStats(job, 0);
  const double state_mb = static_cast<double>(stats.bytes) / 1e6;

  // Baseline: the same state read locally, chunk by chunk.
  double local_s = 0;
  {
    const auto t0 = Clock::now();
    int64_t read = 0;
    auto held = (*source)->store()->ReadAsOf(job, 0, base, 1 << 20, [&](std::span<const Change> c) {
      read += static_cast<int64_t>(c.size());
      return absl::OkStatus();
    });
    local_s = Seconds(t0);
    if (!held.ok() || !*held || read != stats.keys) return Fail("reading the state locally", held.status());
  }

  // The move: FetchState from the source's server into the target's store.
  sluice::worker::EpochFence fence;
  sluice::worker::WorkerServiceImpl service("worker-a", &fence, nullptr, nullptr, source->get(), nullptr, nullptr,
                                            [] { return sluice::proto::WorkerStatus(); },
                                            [](const sluice::proto::LeaderHeartbeatRequest&) {});
  auto server = sluice::rpc::RpcServer::Start("127.0.0.1:0", {&service});
  if (!server.ok()) return Fail("starting the gRPC server", server.status());
  double move_s = 0;
  // Meanwhile the source's "batches" go on: every --fold-ms one takes the
  // partition's lock, writes a delta and folds it. The stream holds the lock
  // only to freeze the state, so none of them waits for the copy.
  std::atomic<bool> moving{true}, streaming{false};  // from the first chunk
  double longest_wait_ms = 0;
  int folded = 0;
  std::thread batches([&] {
    if (fold_ms <= 0) return;
    while (moving.load() && !streaming.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (int64_t n = base + 1; moving.load(); ++n) {
      {
        const auto asked = Clock::now();
        std::lock_guard<std::mutex> lock((*source)->LockOf(job, 0));
        longest_wait_ms = std::max(longest_wait_ms, Seconds(asked) * 1000);
        const std::vector<Change> delta{Change{"key-batch", std::to_string(n)}};
        if (!(*source)->store()->WriteDelta(job, 0, n, delta).ok() || !(*source)->store()->Prepare(job, 0, n).ok()) {
          std::cerr << "state_move_bench: a batch on the source failed\n";
          return;
        }
        ++folded;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(fold_ms));
    }
  });
  {
    const auto t0 = Clock::now();
    sluice::proto::FetchStateRequest request;
    request.set_epoch(1);
    request.set_job_id(job);
    request.set_partition(0);
    request.set_base_batch(base);
    auto in = (*target)->store()->BeginInstall(job, 0, base);
    if (!in.ok()) {
      moving = false;
      batches.join();
      return Fail("starting the install", in.status());
    }
    Status added = absl::OkStatus();
    std::vector<Change> changes;
    bool complete = false;
    Status fetched = sluice::rpc::WorkerClient(channels, (*server)->address())
                         .FetchState(
                             request,
                             [&](sluice::proto::StateChunk&& chunk) {
                               streaming = true;
                               complete = chunk.last();
                               if (!added.ok()) return;
                               changes.clear();
                               for (const auto& e : chunk.entries()) changes.push_back(Change{e.key(), e.value()});
                               added = (*in)->Add(changes);
                             },
                             std::chrono::minutes(10));
    moving = false;
    batches.join();
    if (!fetched.ok()) return Fail("FetchState", fetched);
    if (!added.ok()) return Fail("installing", added);
    if (!complete) return Fail("FetchState", absl::DataLossError("the stream ended early"));
    if (Status st = (*in)->Commit(); !st.ok()) return Fail("committing the install", st);
    move_s = Seconds(t0);
  }
  const sluice::state::StateStats moved = (*target)->store()->PartitionStats(job, 0);
  if (moved.keys != stats.keys || moved.bytes != stats.bytes) {
    std::cerr << "state_move_bench: moved " << moved.keys << " keys " << moved.bytes << " bytes of " << stats.keys
              << " / " << stats.bytes << "\n";
    return 1;
  }
  (*server)->Shutdown();
  std::printf("layout: %s (budget %lld MiB per store)\n", budget_mb > 0 ? "disk" : "memory",
              static_cast<long long>(budget_mb));
  std::printf("baseline, local chunked read: %.0f MB in %.2f s = %.0f MB/s\n", state_mb, local_s, state_mb / local_s);
  std::printf("move over FetchState + streamed install: %.0f MB in %.2f s = %.0f MB/s (%.2fx the local read)\n",
              state_mb, move_s, state_mb / move_s, local_s / move_s);
  std::printf("batches on the source during the move: %d folded, the longest wait for the partition's lock %.1f ms\n",
              folded, longest_wait_ms);
  std::printf("peak RSS of this process (both stores, server and client): %ld MiB\n", StatusKb("VmHWM:") / 1024);
  std::filesystem::remove_all(dir);
  return 0;
}
