// ingest_bench: receiver ingest from the generator source into blocks, in
// memory, on one core: events/s and MB/s for 600-byte events, against a plain
// memcpy of the same bytes measured in the same run (the physical baseline).
//
//   ingest_bench [--seconds 5] [--payload 600] [--block-events 120000]
//
// Phases: the generator writing blocks directly; the worker's Receiver cutting
// 200 ms blocks into the BlockStore; the same with the receiver WAL on (every
// block synced to the block log), against this disk's sequential synced write
// bandwidth measured in the same run. Targets: >= 1,000,000
// events/s of 600 bytes on one core (memory only); with the WAL on, >= the
// lower of 500,000 events/s and 70% of the synced disk bandwidth. Kafka
// ingest is bench/kafka_ingest_bench.
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <cstring>
#include <vector>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/source/generator_source.h"
#include "lib/worker/receiver.h"

namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Generator -> blocks ingest rate vs memcpy, one core", "ingest_bench");
  double seconds = 5;
  int payload = 600;
  int64_t block_events = 120'000;  // 200 ms of 600,000 events/s
  app.add_option("--seconds", seconds, "Time per phase")->capture_default_str();
  app.add_option("--payload", payload, "Event size in bytes")->capture_default_str();
  app.add_option("--block-events", block_events, "Events per block")->capture_default_str();
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  // As workerd does: keep freed block buffers in the heap for the next blocks
  // instead of returning them to the kernel and faulting them in again.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);

  sluice::source::GeneratorOptions options{.partitions = 1, .payload_size = payload};
  if (sluice::Status st = options.Validate(); !st.ok()) {
    std::fprintf(stderr, "ingest_bench: %s\n", std::string(st.message()).c_str());
    return sluice::kExitUsage;
  }
  sluice::source::GeneratorSource gen(options, sluice::Clock::Real());

  // Baseline: memcpy of the same bytes (a template event) into block-sized buffers.
  const std::string event = gen.EventString(0, 0);
  std::vector<char> buffer(static_cast<size_t>(block_events) * (payload + 4));
  int64_t copied = 0;
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    char* out = buffer.data();
    for (int64_t i = 0; i < block_events; ++i) {
      std::memcpy(out, event.data(), payload);
      out += payload + 4;
    }
    copied += block_events;
  }
  double copy_s = std::chrono::duration<double>(Clock::now() - t0).count();
  double copy_rate = copied / copy_s;

  // Ingest: the generator writes each event into a block, blocks are cut.
  int64_t events = 0, blocks = 0;
  sluice::format::BlockBuilder builder(options.name, 0, 0);
  builder.Reserve(buffer.size());
  t0 = Clock::now();
  end = t0 + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    events += gen.ReadInto(0, INT64_MAX, block_events, &builder);
    sluice::format::Block block = builder.Cut();
    builder.Reserve(block.bytes());
    ++blocks;
  }
  double ingest_s = std::chrono::duration<double>(Clock::now() - t0).count();
  double rate = events / ingest_s;

  // Receiver: the worker's receiver thread cutting 200 ms blocks into the
  // BlockStore, with a consumer dropping each block once reported (as the
  // leader does when its batch commits). With `durable`, every block also
  // goes to the block log (the receiver WAL: RocksDB, synced write per block).
  auto run_receiver = [&](bool durable) -> double {
    const std::string dir = "/tmp/sluice-ingest-bench-" + std::to_string(::getpid());
    auto store = sluice::worker::BlockStore::Open({.memory_budget_bytes = 512u << 20,
                                                   .disk_budget_bytes = 0,
                                                   .spill_path = dir + "/spill",
                                                   .log_path = durable ? dir + "/log" : ""});
    if (!store.ok()) {
      std::fprintf(stderr, "ingest_bench: %s\n", std::string(store.status().message()).c_str());
      std::exit(1);
    }
    std::atomic<int64_t> reported{0};
    sluice::worker::Receiver receiver(
        {.source = options.name,
         .partition = 0,
         .block_interval = std::chrono::milliseconds(200),
         .max_block_records = durable ? std::min(block_events, sluice::worker::kDurableMaxBlockRecords)
                                      : block_events,
         .durable = durable},
        sluice::source::NewGeneratorReader(&gen, 0), store->get(),
        [&](const sluice::worker::HeldBlock& b) {
          reported = b.lineage.end_offset;
          (*store)->DropBefore(b.lineage.source, b.lineage.partition, b.lineage.end_offset);
          return absl::OkStatus();
        },
        sluice::Clock::Real());
    const auto start = Clock::now();
    receiver.Start();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    receiver.Stop();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    store->reset();
    std::filesystem::remove_all(dir);
    return reported.load() / elapsed;
  };
  const double recv_rate = run_receiver(false);
  const double wal_rate = run_receiver(true);

  // Baseline for the WAL: this disk's sequential synced write bandwidth, in
  // the same run — block-sized writes, each followed by fdatasync (what
  // `dd bs=<block> conv=fdatasync` per block would do).
  const std::string disk_file = "/tmp/sluice-ingest-bench-disk-" + std::to_string(::getpid());
  const size_t chunk =
      static_cast<size_t>(std::min(block_events, sluice::worker::kDurableMaxBlockRecords)) * (payload + 4);
  std::vector<char> bytes(chunk, 'x');
  int fd = ::open(disk_file.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  int64_t written = 0;
  t0 = Clock::now();
  end = t0 + std::chrono::duration<double>(seconds);
  while (fd >= 0 && Clock::now() < end) {
    if (::write(fd, bytes.data(), chunk) != static_cast<ssize_t>(chunk) || ::fdatasync(fd) != 0) break;
    written += static_cast<int64_t>(chunk);
    if (written >= (2ll << 30)) {  // stay within 2 GiB of scratch space
      ::lseek(fd, 0, SEEK_SET);
    }
  }
  const double disk_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (fd >= 0) ::close(fd);
  ::unlink(disk_file.c_str());
  const double disk_bw = written / disk_s;  // bytes/s
  const double disk_events = disk_bw / (payload + 4);
  const double wal_target = std::min(500'000.0, 0.7 * disk_events);

  std::printf("ingest: generator -> blocks in memory, one core, %d-byte events, %lld events per block\n",
              payload, static_cast<long long>(block_events));
  std::printf("  events/s                 %12.0f   (target >= 1000000)\n", rate);
  std::printf("  MB/s                     %12.0f\n", rate * payload / 1e6);
  std::printf("  blocks cut               %12lld\n", static_cast<long long>(blocks));
  std::printf("receiver: 200 ms blocks into the BlockStore, dropped when reported\n");
  std::printf("  events/s                 %12.0f\n", recv_rate);
  std::printf("  MB/s                     %12.0f\n", recv_rate * payload / 1e6);
  std::printf("receiver + WAL: the same, every block also synced to the block log (RocksDB)\n");
  std::printf("  events/s                 %12.0f\n", wal_rate);
  std::printf("  MB/s                     %12.0f\n", wal_rate * payload / 1e6);
  std::printf("baseline: sequential synced writes of %zu-byte blocks (write + fdatasync), same run\n", chunk);
  std::printf("  MB/s                     %12.0f\n", disk_bw / 1e6);
  std::printf("  events/s equivalent      %12.0f\n", disk_events);
  std::printf("baseline: memcpy of the same bytes, same run\n");
  std::printf("  events/s                 %12.0f\n", copy_rate);
  std::printf("  MB/s                     %12.0f\n", copy_rate * payload / 1e6);
  std::printf("ratio: ingest / memcpy = %.3f\n", rate / copy_rate);
  std::printf("ratio: receiver / memcpy = %.3f\n", recv_rate / copy_rate);
  std::printf("ratio: receiver + WAL / synced disk = %.3f\n", wal_rate / disk_events);
  std::printf("target (>= 1,000,000 events/s, memory only, receiver): %s\n",
              recv_rate >= 1e6 ? "MET" : "NOT MET");
  std::printf("target (WAL on >= min(500,000 events/s, 70%% of synced disk = %.0f) = %.0f events/s): %s\n",
              0.7 * disk_events, wal_target, wal_rate >= wal_target ? "MET" : "NOT MET");
  return 0;
}
