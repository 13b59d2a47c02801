// pipeline_bench: a job's operators over blocks on one core —
// generator blocks of 600-byte JSON events -> parse json -> filter -> project
// -> JSON lines (the null sink's work), against making the same blocks
// (the receiver's side) measured in the same run. Then a plugin's cost:
// the example plugin upper-casing a field against `map` doing the same
// with upper(), same events, same run.
//
//   pipeline_bench [--seconds 3] [--payload 600] [--plugin uppercase_plugin.so]
//
// The end-to-end target is 500,000 events/s with 2 workers on this
// 2-core machine; this is the per-core operator cost that target rests on.
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/engine/confinement.h"
#include "lib/engine/job_file.h"
#include "lib/engine/pipeline.h"
#include "lib/source/generator_source.h"

namespace {

using Clock = std::chrono::steady_clock;

// Input events/s of `operators` over `blocks` for `seconds`; 0 if they do
// not build.
// `plugins`, if given, resolves the job's plugins by name, as a worker does.
double EventsPerSecond(const std::string& operators, const std::vector<sluice::format::Block>& blocks,
                       double seconds, const sluice::engine::PathPolicy* plugins = nullptr) {
  sluice::Result<sluice::proto::JobSpec> spec = sluice::engine::ParseJobFile(
      "name: bench\nsources: [gen]\nsink: {null: {}}\noperators:\n" + operators, "bench");
  if (spec.ok() && plugins != nullptr) {
    if (sluice::Status st = plugins->ResolvePlugins(&*spec); !st.ok()) spec = st;
  }
  if (!spec.ok()) {
    std::fprintf(stderr, "pipeline_bench: %s\n", spec.status().ToString().c_str());
    return 0;
  }
  auto pipeline = sluice::engine::Pipeline::Create(*spec);
  if (!pipeline.ok()) {
    std::fprintf(stderr, "pipeline_bench: %s\n", pipeline.status().ToString().c_str());
    return 0;
  }
  std::string out;
  sluice::engine::PipelineCounts counts;
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration<double>(seconds);
  size_t i = 0;
  while (Clock::now() < end) {
    out.clear();
    (*pipeline)->Run(blocks[i++ % blocks.size()], &out, &counts);
  }
  return counts.input / std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Operators over blocks vs making the blocks, one core", "pipeline_bench");
  double seconds = 3;
  int payload = 600;
  app.add_option("--seconds", seconds, "Time per phase")->capture_default_str();
  app.add_option("--payload", payload, "Event size in bytes")->capture_default_str();
  std::string plugin = SLUICE_UPPERCASE_PLUGIN;
  app.add_option("--plugin", plugin, "The example uppercase plugin (examples/plugins)")->capture_default_str();
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;

  sluice::source::GeneratorOptions options{.partitions = 1, .num_keys = 1000, .payload_size = payload};
  sluice::source::GeneratorSource gen(options, sluice::Clock::Real());
  constexpr int64_t kBlock = 32'768;

  // Baseline: making blocks of the same events.
  // As workerd does: freed block buffers stay in the heap.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  int64_t made = 0;
  sluice::format::BlockBuilder builder("gen", 0, 0);
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    made += gen.ReadInto(0, INT64_MAX, kBlock, &builder);
    sluice::format::Block block = builder.Cut();
    builder.Reserve(block.bytes());
  }
  const double make_rate = made / std::chrono::duration<double>(Clock::now() - t0).count();

  // The pipeline over pre-made blocks (a task's work once its blocks are here).
  sluice::Result<sluice::proto::JobSpec> spec = sluice::engine::ParseJobFile(
      "name: bench\nsources: [gen]\nsink: {null: {}}\noperators:\n"
      "  - parse: {format: json}\n"
      "  - filter: \"v > 500000\"\n"
      "  - project: {fields: [id, key, v]}\n",
      "bench");
  auto pipeline = sluice::engine::Pipeline::Create(*spec);
  if (!spec.ok() || !pipeline.ok()) {
    std::fprintf(stderr, "pipeline_bench: cannot build the pipeline\n");
    return 1;
  }
  std::vector<sluice::format::Block> blocks;
  for (int i = 0; i < 8; ++i) {
    sluice::format::BlockBuilder b("gen", 0, i * kBlock);
    gen.ReadInto(0, INT64_MAX, kBlock, &b);
    blocks.push_back(b.Cut());
  }
  std::string out;
  sluice::engine::PipelineCounts counts;
  t0 = Clock::now();
  end = t0 + std::chrono::duration<double>(seconds);
  size_t i = 0;
  while (Clock::now() < end) {
    out.clear();
    (*pipeline)->Run(blocks[i++ % blocks.size()], &out, &counts);
  }
  const double run_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double rate = counts.input / run_s;

  std::printf("pipeline: parse json -> filter -> project -> JSON lines, one core, %d-byte events\n", payload);
  std::printf("  events/s in               %12.0f\n", rate);
  std::printf("  MB/s in                   %12.0f\n", rate * payload / 1e6);
  std::printf("  passed the filter         %12.3f\n", counts.input ? double(counts.output) / counts.input : 0.0);
  std::printf("  dead letters              %12lld\n", static_cast<long long>(counts.dead_letters));
  std::printf("baseline: making the same blocks (generator), same run\n");
  std::printf("  events/s                  %12.0f\n", make_rate);
  std::printf("ratio: pipeline / making blocks = %.3f\n", rate / make_rate);
  std::printf("per-core share of the end-to-end target (250,000 events/s per core of 2): %s\n",
              rate >= 250'000 ? "enough" : "NOT enough");

  // A plugin against the built-in operator doing the same work.
  const std::string tail = "  - filter: \"v > 500000\"\n  - project: {fields: [id, key, v]}\n";
  const double map_rate =
      EventsPerSecond("  - parse: {format: json}\n  - map: {fields: {key: upper(key)}}\n" + tail, blocks, seconds);
  // Loaded by name from its directory, as workers load plugins (plugin-dirs).
  const std::filesystem::path plugin_path(plugin);
  sluice::engine::PathPolicy plugin_dirs;
  plugin_dirs.plugin_dirs = {plugin_path.parent_path().string()};
  const double plugin_rate = EventsPerSecond("  - parse: {format: json}\n  - plugin: {name: " +
                                                 plugin_path.stem().string() + ", config: {field: key}}\n" + tail,
                                             blocks, seconds, &plugin_dirs);
  std::printf("plugin: parse json -> upper-case key -> filter -> project, one core\n");
  std::printf("  events/s with map upper()  %12.0f\n", map_rate);
  std::printf("  events/s with the plugin   %12.0f\n", plugin_rate);
  std::printf("ratio: plugin / map = %.3f\n", map_rate > 0 ? plugin_rate / map_rate : 0.0);
  return 0;
}
