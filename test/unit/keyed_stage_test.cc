// The keyed stage (lib/engine/keyed.h): map side, reduce side and their
// state, batch after batch, over an in-memory state that applies each
// batch's changes the way the worker's StateStore folds them.
#include "lib/engine/keyed.h"

#include <filesystem>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/engine/confinement.h"
#include "lib/engine/deadline_index.h"
#include "lib/engine/job_file.h"

namespace sluice::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

proto::JobSpec Job(const std::string& operators, int32_t reduce_partitions = 2) {
  const std::string text = "name: j\nbatch_interval: 1s\nsources: [s]\nreduce_partitions: " +
                           std::to_string(reduce_partitions) + "\noperators:\n" + operators +
                           "sink: {stdout: {}}\n";
  Result<proto::JobSpec> spec = ParseJobFile(text, "j.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.value_or(proto::JobSpec());
}

class MapState final : public StateAccess {
 public:
  Result<std::optional<std::string>> Get(std::string_view key) override {
    auto it = values.find(std::string(key));
    if (it == values.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Status Scan(const std::function<bool(std::string_view, std::string_view)>& fn) override {
    for (const auto& [k, v] : values) {
      if (!fn(k, v)) break;
    }
    return absl::OkStatus();
  }
  Status ScanPrefix(std::string_view prefix,
                    const std::function<bool(std::string_view, std::string_view)>& fn) override {
    for (auto it = values.lower_bound(std::string(prefix)); it != values.end() && it->first.starts_with(prefix); ++it) {
      if (!fn(it->first, it->second)) break;
    }
    return absl::OkStatus();
  }
  void Apply(const std::vector<state::Change>& changes) {
    for (const state::Change& c : changes) {
      if (c.value) {
        values[c.key] = *c.value;
      } else {
        values.erase(c.key);
      }
    }
  }
  // The state without the deadline index (deadline_index.h).
  std::map<std::string, std::string> UserEntries() const {
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : values) {
      if (!IsDeadlineIndexKey(k)) out.emplace(k, v);
    }
    return out;
  }
  std::map<std::string, std::string> values;
};

using Event = std::map<std::string, Value>;

// Runs one batch: every event through a mapper (one map task per element of
// `tasks`), every partition through a reducer; returns the output lines,
// sorted, and applies the changes to `state`.
struct BatchRun {
  std::vector<std::string> lines;
  int64_t late = 0;
  int64_t max_event_time = 0;
  std::vector<std::string> dead;  // messages
};

BatchRun RunBatch(const proto::JobSpec& spec, const BatchContext& ctx, const std::vector<std::vector<Event>>& tasks,
                  std::vector<MapState>* state) {
  Result<std::optional<KeyedStage>> stage = KeyedStageOf(spec);
  EXPECT_TRUE(stage.ok() && *stage) << stage.status();
  const int32_t r = (*stage)->reduce_partitions;
  state->resize(r);
  std::vector<std::vector<std::string>> buffers;  // [task][partition]
  BatchRun run;
  for (const std::vector<Event>& events : tasks) {
    auto mapper = KeyedMapper::Create(**stage, ctx);
    EXPECT_TRUE(mapper.ok());
    for (const Event& e : events) {
      std::string encoded;
      if ((*mapper)->wants_events()) {
        AppendEventHeader(e.size(), &encoded);
        for (const auto& [name, value] : e) AppendEventField(name, value, &encoded);
      }
      Status st = (*mapper)->Add(
          [&](std::string_view name) {
            auto it = e.find(std::string(name));
            return it == e.end() ? Value(Null{}) : it->second;
          },
          encoded);
      if (!st.ok()) run.dead.push_back(std::string(st.message()));
    }
    run.late += (*mapper)->late_events();
    run.max_event_time = std::max(run.max_event_time, (*mapper)->max_event_time());
    buffers.push_back((*mapper)->Finish());
  }
  for (int32_t p = 0; p < r; ++p) {
    auto reducer = Reducer::Create(**stage);
    EXPECT_TRUE(reducer.ok());
    for (const auto& b : buffers) EXPECT_TRUE((*reducer)->Merge(b[p]).ok());
    Result<ReduceOutput> out = (*reducer)->Finish(ctx, (*stage)->stateful() ? &(*state)[p] : nullptr);
    EXPECT_TRUE(out.ok()) << out.status();
    std::istringstream in(out->lines);
    for (std::string line; std::getline(in, line);) run.lines.push_back(line);
    (*state)[p].Apply(out->changes);
  }
  std::sort(run.lines.begin(), run.lines.end());
  return run;
}

Event Word(const std::string& w) { return {{"word", Value(std::string_view(w))}}; }

TEST(KeyedStageTest, ShapesAndRefusals) {
  auto mode = [](const std::string& ops) {
    Result<std::optional<KeyedStage>> s = KeyedStageOf(Job(ops));
    EXPECT_TRUE(s.ok() && *s) << s.status();
    return (*s)->mode;
  };
  EXPECT_EQ(mode("  - key_by: k\n  - aggregate: [{fn: count}]\n"), KeyedStage::Mode::kPerBatch);
  EXPECT_EQ(mode("  - key_by: k\n  - window: {type: tumbling, length: 2s}\n  - aggregate: [{fn: count}]\n"),
            KeyedStage::Mode::kBatchWindow);
  EXPECT_EQ(mode("  - key_by: k\n  - window: {type: sliding, length: 2s, slide: 1s, event_time: ts}\n"
                 "  - aggregate: [{fn: count}]\n"),
            KeyedStage::Mode::kEventWindow);
  EXPECT_EQ(mode("  - key_by: k\n  - window: {type: session, gap: 5s, event_time: ts}\n  - aggregate: [{fn: count}]\n"),
            KeyedStage::Mode::kSession);
  EXPECT_EQ(mode("  - key_by: k\n  - update_state: {running: [{fn: sum, field: x}], timeout: 1m}\n"),
            KeyedStage::Mode::kRunning);
  Result<std::optional<KeyedStage>> none = KeyedStageOf(Job("  - parse: {format: json}\n"));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);

  proto::JobSpec after = Job("  - key_by: k\n  - aggregate: [{fn: count}]\n");
  after.add_operators()->mutable_filter()->set_expr("true");
  EXPECT_THAT(std::string(KeyedStageOf(after).status().message()), HasSubstr("must be the job's last operators"));
  EXPECT_EQ(mode("  - key_by: k\n  - update_state: {plugin: p, config: {a: b}, timeout: 1m}\n"),
            KeyedStage::Mode::kPlugin);
  proto::JobSpec windowed = Job("  - key_by: k\n  - window: {type: tumbling, length: 2s}\n  - aggregate: [{fn: count}]\n");
  *windowed.mutable_operators(2)->mutable_update_state()->add_running() = proto::Aggregation();
  EXPECT_THAT(std::string(CheckRunnable(windowed).message()), HasSubstr("j.yaml: line"));
}

TEST(KeyedStageTest, PerBatchWordCountOverTwoMapTasks) {
  const proto::JobSpec spec = Job("  - key_by: word\n  - aggregate: [{fn: count}]\n", 3);
  std::vector<MapState> state;
  BatchRun run = RunBatch(spec, {.batch_id = 1, .batch_time_unix_ms = 1000},
                          {{Word("a"), Word("b"), Word("a")}, {Word("a"), Word("c")}}, &state);
  EXPECT_THAT(run.lines, ElementsAre(R"({"key":["a"],"count":3})", R"({"key":["b"],"count":1})",
                                     R"({"key":["c"],"count":1})"));
  for (const MapState& s : state) EXPECT_TRUE(s.values.empty()) << "a per-batch aggregate keeps no state";
}

TEST(KeyedStageTest, RunningTotalsAccumulateAndTimeOut) {
  const proto::JobSpec spec = Job("  - key_by: word\n  - update_state: {running: [{fn: count, as: total}], timeout: 2s}\n");
  std::vector<MapState> state;
  BatchRun b1 = RunBatch(spec, {.batch_id = 1, .batch_time_unix_ms = 1000}, {{Word("a"), Word("b")}}, &state);
  EXPECT_THAT(b1.lines, ElementsAre(R"({"key":["a"],"total":1})", R"({"key":["b"],"total":1})"));
  BatchRun b2 = RunBatch(spec, {.batch_id = 2, .batch_time_unix_ms = 2000}, {{Word("a")}, {Word("a")}}, &state);
  EXPECT_THAT(b2.lines, ElementsAre(R"({"key":["a"],"total":3})"));
  // b was last updated at 1000: idle 2 s at 3000 -> emitted as timed out, removed.
  BatchRun b3 = RunBatch(spec, {.batch_id = 3, .batch_time_unix_ms = 3000}, {{Word("a")}}, &state);
  EXPECT_THAT(b3.lines, ElementsAre(R"({"key":["a"],"total":4})", R"({"key":["b"],"total":1,"timed_out":true})"));
  BatchRun b4 = RunBatch(spec, {.batch_id = 4, .batch_time_unix_ms = 4000}, {{Word("b")}}, &state);
  EXPECT_THAT(b4.lines, ElementsAre(R"({"key":["b"],"total":1})")) << "a timed-out key starts again";
}

TEST(KeyedStageTest, TumblingWindowOverBatchTimeIsEmittedByItsLastBatch) {
  // 1 s batches, windows of 2 batches: batches 1+2, 3+4. The job started at
  // 10,000 (batch 1 ends at 11,000).
  const proto::JobSpec spec = Job("  - key_by: word\n  - window: {type: tumbling, length: 2s}\n  - aggregate: [{fn: count}]\n");
  std::vector<MapState> state;
  BatchRun b1 = RunBatch(spec, {.batch_id = 1, .batch_time_unix_ms = 11'000}, {{Word("a"), Word("a")}}, &state);
  EXPECT_TRUE(b1.lines.empty());
  BatchRun b2 = RunBatch(spec, {.batch_id = 2, .batch_time_unix_ms = 12'000}, {{Word("a"), Word("b")}}, &state);
  EXPECT_THAT(b2.lines, ElementsAre(R"({"key":["a"],"window_start":10000,"window_end":12000,"count":3})",
                                    R"({"key":["b"],"window_start":10000,"window_end":12000,"count":1})"));
  BatchRun b3 = RunBatch(spec, {.batch_id = 3, .batch_time_unix_ms = 13'000}, {{Word("a")}}, &state);
  EXPECT_TRUE(b3.lines.empty());
  BatchRun b4 = RunBatch(spec, {.batch_id = 4, .batch_time_unix_ms = 14'000}, {}, &state);
  EXPECT_THAT(b4.lines, ElementsAre(R"({"key":["a"],"window_start":12000,"window_end":14000,"count":1})"));
  for (const MapState& s : state) EXPECT_TRUE(s.values.empty()) << "emitted windows leave no state";
}

Event At(const std::string& k, int64_t ts) { return {{"k", Value(std::string_view(k))}, {"ts", Value(double(ts))}}; }

TEST(KeyedStageTest, SlidingEventTimeWindowsCloseAtTheWatermarkAndLateEventsAreDeadLetters) {
  const proto::JobSpec spec = Job(
      "  - key_by: k\n  - window: {type: sliding, length: 2s, slide: 1s, event_time: ts, max_delay: 500ms, "
      "allowed_lateness: 1s}\n  - aggregate: [{fn: count}]\n");
  std::vector<MapState> state;
  // No watermark yet: nothing closes.
  BatchRun b1 = RunBatch(spec, {.batch_id = 1, .batch_time_unix_ms = 1, .watermark_unix_ms = kNoWatermark},
                         {{At("a", 1'500), At("a", 2'500)}, {At("b", 900)}}, &state);
  EXPECT_TRUE(b1.lines.empty());
  EXPECT_EQ(b1.max_event_time, 2'500);
  // Watermark 3,000: windows ending by 2,000 (+1 s lateness) close: [0,2000).
  BatchRun b2 = RunBatch(spec, {.batch_id = 2, .batch_time_unix_ms = 2, .watermark_unix_ms = 3'000},
                         {{At("a", 1'200), At("a", 500)}}, &state);
  // At("a", 1'200) is in [0,2000) (closing now, so late) and [1000,3000) (open): it counts in the open one only.
  // At("a", 500) is only in [-1000,1000) and [0,2000): both closed -> late.
  EXPECT_THAT(b2.lines, ElementsAre(R"({"key":["a"],"window_start":0,"window_end":2000,"count":1})",
                                    R"({"key":["b"],"window_start":-1000,"window_end":1000,"count":1})",
                                    R"({"key":["b"],"window_start":0,"window_end":2000,"count":1})"));
  EXPECT_EQ(b2.late, 1);
  ASSERT_EQ(b2.dead.size(), 1u);
  EXPECT_THAT(b2.dead[0], HasSubstr("late"));
  BatchRun b3 = RunBatch(spec, {.batch_id = 3, .batch_time_unix_ms = 3, .watermark_unix_ms = 10'000}, {}, &state);
  EXPECT_THAT(b3.lines, ElementsAre(R"({"key":["a"],"window_start":1000,"window_end":3000,"count":3})",
                                    R"({"key":["a"],"window_start":2000,"window_end":4000,"count":1})"));
  for (const MapState& s : state) EXPECT_TRUE(s.values.empty());
}

TEST(KeyedStageTest, SessionsMergeAcrossBatchesAndCloseAtTheWatermark) {
  const proto::JobSpec spec =
      Job("  - key_by: k\n  - window: {type: session, gap: 1s, event_time: ts}\n  - aggregate: [{fn: count}]\n");
  std::vector<MapState> state;
  BatchRun b1 = RunBatch(spec, {.batch_id = 1, .watermark_unix_ms = kNoWatermark},
                         {{At("a", 10'000), At("a", 10'500)}, {At("a", 13'000)}}, &state);
  EXPECT_TRUE(b1.lines.empty());
  // 11,400 joins the first session (within 1 s of 10,500), which then ends at
  // 12,400: past the watermark 12,300, so nothing closes yet.
  BatchRun b2 = RunBatch(spec, {.batch_id = 2, .watermark_unix_ms = 12'300}, {{At("a", 11'400)}}, &state);
  EXPECT_TRUE(b2.lines.empty());
  EXPECT_EQ(b2.late, 0);
  // At 20,000 both close; an event whose session would have ended by then is late.
  BatchRun b3 = RunBatch(spec, {.batch_id = 3, .watermark_unix_ms = 20'000}, {{At("a", 5'000)}}, &state);
  EXPECT_THAT(b3.lines, ElementsAre(R"({"key":["a"],"session_start":10000,"session_end":12400,"count":3})",
                                    R"({"key":["a"],"session_start":13000,"session_end":14000,"count":1})"));
  EXPECT_EQ(b3.late, 1);
  for (const MapState& s : state) EXPECT_TRUE(s.UserEntries().empty());
}


Event Amount(const std::string& w, double v) { return {{"word", Value(std::string_view(w))}, {"v", Value(v)}}; }

TEST(KeyedStageTest, APluginKeepsItsOwnStatePerKey) {
  proto::JobSpec spec =
      Job("  - key_by: word\n  - update_state: {plugin: count_state_plugin, config: {field: v}, timeout: 2s}\n");
  // What a worker does before running it: the name resolved in its plugin dirs.
  const PathPolicy plugins{.plugin_dirs = {std::filesystem::path(SLUICE_COUNT_STATE_PLUGIN).parent_path().string()}};
  ASSERT_TRUE(plugins.ResolvePlugins(&spec).ok());
  std::vector<MapState> state;
  BatchRun b1 = RunBatch(spec, {.batch_id = 1, .batch_time_unix_ms = 1000},
                         {{Amount("a", 1), Amount("b", 5)}, {Amount("a", 2)}}, &state);
  EXPECT_THAT(b1.lines, ElementsAre(R"({"key":["a"],"events":2,"batch_events":2,"sum":3})",
                                    R"({"key":["b"],"events":1,"batch_events":1,"sum":5})"));
  BatchRun b2 = RunBatch(spec, {.batch_id = 2, .batch_time_unix_ms = 2000}, {{Amount("a", 10)}}, &state);
  EXPECT_THAT(b2.lines, ElementsAre(R"({"key":["a"],"events":3,"batch_events":1,"sum":13})"));
  // b was last updated at 1000: with a 2 s timeout it expires at 3000.
  BatchRun b3 = RunBatch(spec, {.batch_id = 3, .batch_time_unix_ms = 3000}, {}, &state);
  EXPECT_THAT(b3.lines, ElementsAre(R"({"key":["b"],"events":1,"sum":5,"expired":true})"));
  BatchRun b4 = RunBatch(spec, {.batch_id = 4, .batch_time_unix_ms = 4000}, {{Amount("b", 1)}}, &state);
  EXPECT_THAT(b4.lines, ElementsAre(R"({"key":["a"],"events":3,"sum":13,"expired":true})",
                                    R"({"key":["b"],"events":1,"batch_events":1,"sum":1})"))
      << "an expired key starts again from nothing";
}

}  // namespace
}  // namespace sluice::engine
