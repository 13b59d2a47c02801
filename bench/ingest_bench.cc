// ingest_bench: receiver ingest from the generator source into blocks, in
// memory, on one core: events/s and MB/s for 600-byte events, against a plain
// memcpy of the same bytes measured in the same run (the physical baseline).
//
//   ingest_bench [--seconds 5] [--payload 600] [--block-events 120000]
//
// Target (issue 5): >= 1,000,000 events/s of 600 bytes on one core (memory
// only). The receiver WAL and Kafka phases come with the receivers.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/source/generator_source.h"

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
  sluice::source::BlockBuilder builder(options.name, 0, 0);
  builder.Reserve(buffer.size());
  t0 = Clock::now();
  end = t0 + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    events += gen.ReadInto(0, INT64_MAX, block_events, &builder);
    sluice::source::Block block = builder.Cut();
    builder.Reserve(block.bytes());
    ++blocks;
  }
  double ingest_s = std::chrono::duration<double>(Clock::now() - t0).count();
  double rate = events / ingest_s;

  std::printf("ingest: generator -> blocks in memory, one core, %d-byte events, %lld events per block\n",
              payload, static_cast<long long>(block_events));
  std::printf("  events/s                 %12.0f   (target >= 1000000)\n", rate);
  std::printf("  MB/s                     %12.0f\n", rate * payload / 1e6);
  std::printf("  blocks cut               %12lld\n", static_cast<long long>(blocks));
  std::printf("baseline: memcpy of the same bytes, same run\n");
  std::printf("  events/s                 %12.0f\n", copy_rate);
  std::printf("  MB/s                     %12.0f\n", copy_rate * payload / 1e6);
  std::printf("ratio: ingest / memcpy = %.3f\n", rate / copy_rate);
  std::printf("target (>= 1,000,000 events/s, memory only): %s\n", rate >= 1e6 ? "MET" : "NOT MET");
  return 0;
}
