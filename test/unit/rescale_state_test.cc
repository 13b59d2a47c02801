// Re-splitting keyed state (docs/state.md "Rescaling"): for every stateful
// mode, the state a reducer of partition p writes lies in p by
// StatePartitionOf, and a job re-split between batches (4 -> 7 -> 2
// partitions, each entry moved by StatePartitionOf) emits exactly what one
// run at a single partition emits. Also the state namespace helper.
#include <filesystem>
#include <map>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/engine/confinement.h"
#include "lib/engine/job_file.h"
#include "lib/engine/keyed.h"
#include "lib/engine/state_namespace.h"
#include "lib/engine/state_partition.h"

namespace sluice::engine {
namespace {

using State = std::vector<std::map<std::string, std::string>>;  // [partition] key -> value

class MapState final : public StateAccess {
 public:
  explicit MapState(std::map<std::string, std::string>* values) : values_(values) {}
  Result<std::optional<std::string>> Get(std::string_view key) override {
    auto it = values_->find(std::string(key));
    if (it == values_->end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Status Scan(const std::function<bool(std::string_view, std::string_view)>& fn) override {
    for (const auto& [k, v] : *values_) {
      if (!fn(k, v)) break;
    }
    return absl::OkStatus();
  }
  Status ScanPrefix(std::string_view prefix, const std::function<bool(std::string_view, std::string_view)>& fn) override {
    for (auto it = values_->lower_bound(std::string(prefix)); it != values_->end() && it->first.starts_with(prefix); ++it) {
      if (!fn(it->first, it->second)) break;
    }
    return absl::OkStatus();
  }

 private:
  std::map<std::string, std::string>* const values_;
};

proto::JobSpec Job(const std::string& operators, int32_t partitions) {
  Result<proto::JobSpec> spec = ParseJobFile("name: j\nbatch_interval: 1s\nsources: [s]\nreduce_partitions: " +
                                                 std::to_string(partitions) + "\noperators:\n" + operators +
                                                 "sink: {stdout: {}}\n",
                                             "j.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  proto::JobSpec out = spec.value_or(proto::JobSpec());
  const PathPolicy plugins{.plugin_dirs = {std::filesystem::path(SLUICE_COUNT_STATE_PLUGIN).parent_path().string()}};
  EXPECT_TRUE(plugins.ResolvePlugins(&out).ok());
  return out;
}

using Event = std::map<std::string, Value>;

// Batch b's events over two map tasks: 300 words, some twice, event times
// inside the batch's second.
std::vector<std::vector<Event>> Events(int64_t b) {
  // Values view their bytes: the words outlive the events.
  static const std::vector<std::string>* const words = [] {
    auto* w = new std::vector<std::string>;
    for (int i = 0; i < 300; ++i) w->push_back("w" + std::to_string(i));
    return w;
  }();
  std::vector<std::vector<Event>> tasks(2);
  for (int i = 0; i < 300; ++i) {
    const std::string& w = (*words)[(i * 7 + b * 13) % 300];
    const int copies = 1 + static_cast<int>((i + b) % 3 == 0);
    for (int c = 0; c < copies; ++c) {
      tasks[(i + c) % 2].push_back({{"word", Value(std::string_view(w))},
                                    {"ts", Value(double(b * 1000 + (i * 37 + c * 11) % 1000))},
                                    {"v", Value(double(i % 17 + c))}});
    }
  }
  return tasks;
}

BatchContext Context(int64_t b, bool last) {
  return {.batch_id = b,
          .batch_time_unix_ms = 10'000 + b * 1000,
          .watermark_unix_ms = b == 1 ? kNoWatermark : b * 1000 - 1500,
          .final_flush = last};
}

// One batch at the spec's partition count; checks that every entry the
// reducer of p writes belongs to p. Returns the output lines.
std::vector<std::string> RunBatch(const proto::JobSpec& spec, int64_t b, bool last, State* state) {
  Result<std::optional<KeyedStage>> stage = KeyedStageOf(spec);
  EXPECT_TRUE(stage.ok() && *stage) << stage.status();
  const uint32_t r = static_cast<uint32_t>((*stage)->reduce_partitions);
  EXPECT_EQ(state->size(), r);
  const BatchContext ctx = Context(b, last);
  std::vector<std::vector<std::string>> buffers;
  for (const std::vector<Event>& events : Events(b)) {
    auto mapper = KeyedMapper::Create(**stage, ctx);
    EXPECT_TRUE(mapper.ok());
    for (const Event& e : events) {
      std::string encoded;
      if ((*mapper)->wants_events()) {
        AppendEventHeader(e.size(), &encoded);
        for (const auto& [name, value] : e) AppendEventField(name, value, &encoded);
      }
      Status st = (*mapper)->Add([&](std::string_view name) { return e.at(std::string(name)); }, encoded);
      EXPECT_TRUE(st.ok()) << st;
    }
    buffers.push_back((*mapper)->Finish());
  }
  std::vector<std::string> lines;
  for (uint32_t p = 0; p < r; ++p) {
    auto reducer = Reducer::Create(**stage);
    EXPECT_TRUE(reducer.ok());
    for (const auto& buf : buffers) EXPECT_TRUE((*reducer)->Merge(buf[p]).ok());
    MapState access(&(*state)[p]);
    Result<ReduceOutput> out = (*reducer)->Finish(ctx, &access);
    EXPECT_TRUE(out.ok()) << out.status();
    for (const state::Change& c : out->changes) {
      if (!IsStateIndexKey(c.key)) {
        EXPECT_EQ(StatePartitionOf(c.key, r), p) << "batch " << b << ": a state entry written by partition " << p;
      }
      if (c.value) {
        (*state)[p][c.key] = *c.value;
      } else {
        (*state)[p].erase(c.key);
      }
    }
    std::istringstream in(out->lines);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

// What a rescale does between batches: each entry to StatePartitionOf(key, to).
State Resplit(const State& from, uint32_t to) {
  State out(to);
  for (const auto& part : from) {
    for (const auto& [k, v] : part) {
      if (!IsStateIndexKey(k)) out[StatePartitionOf(k, to)][k] = v;  // the index is rebuilt, never split
    }
  }
  return out;
}

size_t Keys(const State& s) {
  size_t n = 0;
  for (const auto& p : s) n += p.size();
  return n;
}

struct Mode {
  std::string name;
  std::string operators;
};

class RescaleStateTest : public ::testing::TestWithParam<Mode> {};

TEST_P(RescaleStateTest, ReSplitBetweenBatchesEmitsWhatOnePartitionEmits) {
  const std::string& ops = GetParam().operators;
  // The reference: one partition throughout.
  State one(1);
  std::vector<std::vector<std::string>> expected;
  for (int64_t b = 1; b <= 6; ++b) expected.push_back(RunBatch(Job(ops, 1), b, b == 6, &one));
  // 4 partitions for batches 1-2, 7 for 3-4, 2 for 5-6.
  State state(4);
  size_t lines = 0;
  size_t most_keys = 0;
  for (int64_t b = 1; b <= 6; ++b) {
    if (b == 3) state = Resplit(state, 7);
    if (b == 5) state = Resplit(state, 2);
    const int32_t r = static_cast<int32_t>(state.size());
    most_keys = std::max(most_keys, Keys(state));
    std::vector<std::string> got = RunBatch(Job(ops, r), b, b == 6, &state);
    EXPECT_EQ(got, expected[b - 1]) << GetParam().name << " batch " << b << " at " << r << " partitions";
    lines += got.size();
  }
  EXPECT_GT(most_keys, 200u) << "the state moved by the re-splits must be there";
  EXPECT_GT(lines, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    EveryStatefulMode, RescaleStateTest,
    ::testing::Values(
        Mode{"batch_window", "  - key_by: word\n  - window: {type: sliding, length: 4s, slide: 2s}\n"
                             "  - aggregate: [{fn: count}, {fn: sum, field: v}]\n"},
        Mode{"event_time_window",
             "  - key_by: word\n  - window: {type: tumbling, length: 2s, event_time: ts, max_delay: 500ms}\n"
             "  - aggregate: [{fn: count}, {fn: max, field: v}]\n"},
        Mode{"session", "  - key_by: word\n  - window: {type: session, gap: 1500ms, event_time: ts}\n"
                        "  - aggregate: [{fn: count}]\n"},
        Mode{"running", "  - key_by: word\n  - update_state: {running: [{fn: count, as: n}, {fn: sum, field: v}], "
                        "timeout: 3s}\n"},
        Mode{"plugin", "  - key_by: word\n  - update_state: {plugin: count_state_plugin, config: {field: v}, "
                       "timeout: 3s}\n"}),
    [](const ::testing::TestParamInfo<Mode>& info) { return info.param.name; });

TEST(StateNamespaceTest, LayoutZeroIsTheJobAndOthersRoundTrip) {
  EXPECT_EQ(StateNamespace("totals", 0), "totals");
  EXPECT_EQ(StateNamespace("totals", 3), std::string("totals\x1f") + "3");
  for (int64_t layout : {int64_t{0}, int64_t{1}, int64_t{9}, int64_t{10}, int64_t{12345678901}}) {
    const ParsedStateNamespace p = ParseStateNamespace(StateNamespace("a.b-c", layout));
    EXPECT_EQ(p.job_id, "a.b-c");
    EXPECT_EQ(p.layout, layout);
  }
  // Two layouts of one job, and two jobs, never share a namespace.
  EXPECT_NE(StateNamespace("j", 1), StateNamespace("j", 2));
  EXPECT_NE(StateNamespace("j", 1), StateNamespace("j1", 0));
  // Not a layout suffix: the whole string is a job at layout 0.
  for (const std::string& odd : {std::string("j\x1f"), std::string("j\x1f") + "x", std::string("j\x1f") + "01",
                                std::string("j\x1f") + "-2"}) {
    EXPECT_EQ(ParseStateNamespace(odd).job_id, odd);
    EXPECT_EQ(ParseStateNamespace(odd).layout, 0);
  }
}

}  // namespace
}  // namespace sluice::engine
