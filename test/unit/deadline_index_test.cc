// The deadline index (lib/engine/deadline_index.h) as the keyed reduce side
// keeps it: its encoding, what a batch reads with it (counted, against a
// partition of 100,000 idle keys), and that sessions, running timeouts and a
// plugin's timeouts expire, emit and remove exactly what the full scan did,
// batch after batch on random input, over state with and without an index.
#include "lib/engine/deadline_index.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/engine/combiner.h"
#include "lib/engine/confinement.h"
#include "lib/engine/job_file.h"
#include "lib/engine/keyed.h"
#include "lib/engine/state_partition.h"
#include "lib/engine/window.h"
#include "lib/format/varint.h"

namespace sluice::engine {
namespace {

proto::JobSpec Job(const std::string& operators, int32_t reduce_partitions) {
  const std::string text = "name: j\nbatch_interval: 1s\nsources: [s]\nreduce_partitions: " +
                           std::to_string(reduce_partitions) + "\noperators:\n" + operators +
                           "sink: {stdout: {}}\n";
  Result<proto::JobSpec> spec = ParseJobFile(text, "j.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.value_or(proto::JobSpec());
}

// An in-memory partition state that counts what a reduce task reads: one per
// Get, one per entry a scan hands over, and the scans of the whole state.
class CountingState final : public StateAccess {
 public:
  Result<std::optional<std::string>> Get(std::string_view key) override {
    ++visited;
    auto it = values.find(std::string(key));
    if (it == values.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Status Scan(const std::function<bool(std::string_view, std::string_view)>& fn) override {
    ++full_scans;
    for (const auto& [k, v] : values) {
      ++visited;
      if (!fn(k, v)) break;
    }
    return absl::OkStatus();
  }
  Status ScanPrefix(std::string_view prefix,
                    const std::function<bool(std::string_view, std::string_view)>& fn) override {
    for (auto it = values.lower_bound(std::string(prefix)); it != values.end() && it->first.starts_with(prefix); ++it) {
      ++visited;
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
  std::map<std::string, std::string> UserEntries() const {
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : values) {
      if (!IsDeadlineIndexKey(k)) out.emplace(k, v);
    }
    return out;
  }
  // What the previous release left: the same state without any index.
  void DropIndex() {
    for (auto it = values.begin(); it != values.end();) it = IsDeadlineIndexKey(it->first) ? values.erase(it) : ++it;
  }

  std::map<std::string, std::string> values;
  int64_t visited = 0;
  int64_t full_scans = 0;
};

using Event = std::map<std::string, Value>;
// A Value views its string: the words live here, for the whole test binary.
std::string_view Kept(const std::string& s) {
  static std::set<std::string>* words = new std::set<std::string>();
  return *words->emplace(s).first;
}
Event Word(const std::string& w) { return {{"word", Value(Kept(w))}}; }
Event At(const std::string& k, int64_t ts) { return {{"k", Value(Kept(k))}, {"ts", Value(double(ts))}}; }
Event Amount(const std::string& w, double v) { return {{"word", Value(Kept(w))}, {"v", Value(v)}}; }

KeyedStage StageOf(const proto::JobSpec& spec) {
  Result<std::optional<KeyedStage>> stage = KeyedStageOf(spec);
  EXPECT_TRUE(stage.ok() && *stage) << stage.status();
  return **stage;
}

// Map side of one batch: one buffer per reduce partition (one map task).
std::vector<std::string> MapBatch(const KeyedStage& stage, const BatchContext& ctx, const std::vector<Event>& events) {
  auto mapper = KeyedMapper::Create(stage, ctx);
  EXPECT_TRUE(mapper.ok()) << mapper.status();
  for (const Event& e : events) {
    std::string encoded;
    if ((*mapper)->wants_events()) {
      AppendEventHeader(e.size(), &encoded);
      for (const auto& [name, value] : e) AppendEventField(name, value, &encoded);
    }
    IgnoreError((*mapper)->Add(
                    [&](std::string_view name) {
                      auto it = e.find(std::string(name));
                      return it == e.end() ? Value(Null{}) : it->second;
                    },
                    encoded),
                "a late event is a dead letter, as in a map task");
  }
  return (*mapper)->Finish();
}

struct BatchRun {
  std::vector<std::string> lines;  // sorted
  int64_t visited = 0;
  int64_t full_scans = 0;
  double reduce_ms = 0;  // the first run of every partition's reducer
  double rerun_ms = 0;   // the second, on the same state
};

void AddLines(const std::string& text, std::vector<std::string>* lines) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines->push_back(line);
}

// Reduces each partition twice on the same state (the second run must write
// the same bytes), then applies the changes.
BatchRun ReduceBatch(const KeyedStage& stage, const BatchContext& ctx, const std::vector<std::string>& buffers,
                std::vector<CountingState>* state) {
  BatchRun run;
  state->resize(buffers.size());
  for (size_t p = 0; p < buffers.size(); ++p) {
    CountingState& s = (*state)[p];
    ReduceOutput outs[2];
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto reducer = Reducer::Create(stage);
      EXPECT_TRUE(reducer.ok()) << reducer.status();
      EXPECT_TRUE((*reducer)->Merge(buffers[p]).ok());
      s.visited = s.full_scans = 0;
      const auto start = std::chrono::steady_clock::now();
      Result<ReduceOutput> out = (*reducer)->Finish(ctx, &s);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      (attempt == 0 ? run.reduce_ms : run.rerun_ms) += ms;
      if (attempt == 0) {
        run.visited += s.visited;
        run.full_scans += s.full_scans;
      }
      EXPECT_TRUE(out.ok()) << out.status();
      if (out.ok()) outs[attempt] = std::move(*out);
    }
    EXPECT_EQ(outs[0].lines, outs[1].lines) << "a re-run renders other bytes";
    EXPECT_EQ(outs[0].changes, outs[1].changes) << "a re-run writes other changes";
    AddLines(outs[0].lines, &run.lines);
    s.Apply(outs[0].changes);
  }
  std::sort(run.lines.begin(), run.lines.end());
  return run;
}

BatchRun RunBatch(const KeyedStage& stage, const BatchContext& ctx, const std::vector<Event>& events,
             std::vector<CountingState>* state) {
  return ReduceBatch(stage, ctx, MapBatch(stage, ctx, events), state);
}

// The index a state must have: one entry per key that can expire (`time_of`),
// and a marker counting them.
void ExpectIndexOf(const CountingState& s,
                   const std::function<std::optional<int64_t>(std::string_view)>& time_of) {
  std::set<std::string> want;
  for (const auto& [k, v] : s.UserEntries()) {
    if (std::optional<int64_t> t = time_of(v)) want.insert(DeadlineIndexKey(*t, k));
  }
  std::set<std::string> have;
  std::optional<std::string> marker;
  for (const auto& [k, v] : s.values) {
    if (IsDeadlineIndexMarker(k)) {
      marker = v;
    } else if (IsDeadlineIndexKey(k)) {
      have.insert(k);
      EXPECT_TRUE(v.empty());
    }
  }
  EXPECT_EQ(have, want);
  ASSERT_TRUE(marker.has_value()) << "no marker";
  DeadlineIndexSize size;
  for (const std::string& e : want) {
    ++size.entries;
    size.bytes += static_cast<int64_t>(e.size());
  }
  Result<DeadlineIndexSize> recorded = DecodeDeadlineIndexMarker(*marker);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_EQ(*recorded, size);
  // The user's keys and bytes, as the worker reports them.
  int64_t keys = static_cast<int64_t>(s.values.size()), bytes = 0, user_bytes = 0;
  for (const auto& [k, v] : s.values) bytes += static_cast<int64_t>(k.size() + v.size());
  for (const auto& [k, v] : s.UserEntries()) user_bytes += static_cast<int64_t>(k.size() + v.size());
  ASSERT_TRUE(ExcludeDeadlineIndex(marker, &keys, &bytes).ok());
  EXPECT_EQ(keys, static_cast<int64_t>(s.UserEntries().size()));
  EXPECT_EQ(bytes, user_bytes);
}

std::optional<int64_t> StampOf(std::string_view value) {
  if (value.size() < 8) return std::nullopt;
  return static_cast<int64_t>(format::GetFixed64(value.data()));
}

TEST(DeadlineIndexTest, KeysSortByTimeAndNoStateKeyStartsWithThePrefix) {
  std::mt19937_64 rng(7);
  std::vector<int64_t> times = {std::numeric_limits<int64_t>::min(), -1'000'000, -1, 0, 1, 1'700'000'000'000,
                                std::numeric_limits<int64_t>::max()};
  for (int i = 0; i < 200; ++i) times.push_back(static_cast<int64_t>(rng()));
  std::sort(times.begin(), times.end());
  std::string user;
  AppendKeyPart(Value(std::string_view("k")), &user);
  for (size_t i = 0; i + 1 < times.size(); ++i) {
    const std::string a = DeadlineIndexKey(times[i], user), b = DeadlineIndexKey(times[i + 1], user);
    EXPECT_LE(a, b) << times[i] << " " << times[i + 1];
    int64_t t = 0;
    std::string_view back;
    ASSERT_TRUE(ParseDeadlineIndexKey(a, &t, &back));
    EXPECT_EQ(t, times[i]);
    EXPECT_EQ(back, user);
    EXPECT_TRUE(IsDeadlineIndexKey(a));
    EXPECT_FALSE(IsDeadlineIndexMarker(a));
  }
  EXPECT_TRUE(IsDeadlineIndexMarker(kDeadlineIndexPrefix));
  int64_t t = 0;
  std::string_view back;
  EXPECT_FALSE(ParseDeadlineIndexKey(kDeadlineIndexPrefix, &t, &back)) << "the marker is not an entry";
  // The prefix is not a varint: no key of parts can start with it.
  size_t pos = 0;
  uint64_t len = 0;
  EXPECT_FALSE(format::GetVarint(kDeadlineIndexPrefix, &pos, &len));
  // Keys of every kind of part, including long ones (whose length varint
  // starts with 0xFF), sort before it and do not start with it.
  for (int i = 0; i < 500; ++i) {
    std::string key;
    const int parts = 1 + static_cast<int>(rng() % 3);
    for (int j = 0; j < parts; ++j) {
      switch (rng() % 4) {
        case 0:
          AppendKeyPart(Value(Null{}), &key);
          break;
        case 1:
          AppendKeyPart(Value(static_cast<double>(static_cast<int64_t>(rng())) / 7), &key);
          break;
        case 2:
          AppendKeyPart(Value(std::string_view(std::string(rng() % 40'000, static_cast<char>(0xff)))), &key);
          break;
        default:
          AppendKeyPart(Value(std::string_view(std::string(rng() % 300, static_cast<char>(rng())))), &key);
      }
    }
    EXPECT_FALSE(IsDeadlineIndexKey(key));
    EXPECT_LT(key, std::string(kDeadlineIndexPrefix));
  }
}

TEST(DeadlineIndexTest, MarkerAndTheUsersCounts) {
  const DeadlineIndexSize size{.entries = 3, .bytes = 90};
  const std::string marker = EncodeDeadlineIndexMarker(size);
  Result<DeadlineIndexSize> back = DecodeDeadlineIndexMarker(marker);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, size);
  EXPECT_EQ(DecodeDeadlineIndexMarker("short").status().code(), absl::StatusCode::kDataLoss);
  // 10 user keys of 200 bytes, 3 entries of 90 bytes, the marker (10 + 16).
  int64_t keys = 14, bytes = 200 + 90 + 26;
  ASSERT_TRUE(ExcludeDeadlineIndex(marker, &keys, &bytes).ok());
  EXPECT_EQ(keys, 10);
  EXPECT_EQ(bytes, 200);
  keys = 3, bytes = 1000;
  EXPECT_EQ(ExcludeDeadlineIndex(marker, &keys, &bytes).code(), absl::StatusCode::kDataLoss);
  keys = 7, bytes = 70;
  ASSERT_TRUE(ExcludeDeadlineIndex(std::nullopt, &keys, &bytes).ok());
  EXPECT_EQ(keys, 7);
  EXPECT_EQ(bytes, 70);
}

TEST(DeadlineIndexTest, AnEntryBelongsToItsKeysPartition) {
  for (int i = 0; i < 1000; ++i) {
    std::string user;
    AppendKeyPart(Value(std::string_view("user-" + std::to_string(i))), &user);
    for (uint32_t r : {1u, 2u, 3u, 7u, 64u}) {
      EXPECT_EQ(StatePartitionOf(DeadlineIndexKey(i * 1000 - 5000, user), r), StatePartitionOf(user, r));
    }
    EXPECT_TRUE(IsStateIndexKey(DeadlineIndexKey(i, user)));
    EXPECT_FALSE(IsStateIndexKey(user));
  }
  EXPECT_TRUE(IsStateIndexKey(kDeadlineIndexPrefix));
}

// --- running totals with a timeout: against a model of what expires --------

TEST(DeadlineIndexTest, RunningTimeoutsMatchTheFullScanOnRandomInput) {
  const int32_t r = 3;
  const int64_t timeout = 2'500;
  const KeyedStage stage = StageOf(
      Job("  - key_by: word\n  - update_state: {running: [{fn: count, as: total}], timeout: 2500ms}\n", r));
  struct Model {
    int64_t last = 0, total = 0;
  };
  std::map<std::string, Model> model;  // word -> its state
  std::vector<CountingState> state;
  std::mt19937 rng(11);
  int64_t bt = 0, expired_total = 0;
  for (int64_t batch = 1; batch <= 60; ++batch) {
    bt += 500 + static_cast<int64_t>(rng() % 2'000);
    if (batch == 20) {
      // The previous release's state: no index in any partition; in one, a
      // stray entry (a re-split that copied entries but not the marker).
      for (CountingState& s : state) s.DropIndex();
      state[1].values[DeadlineIndexKey(5, state[1].UserEntries().begin()->first)] = "";
    }
    if (batch == 40) {
      // An entry, counted by the marker, naming a key without state: erased
      // by the batch that finds it, with nothing emitted.
      std::string ghost;
      AppendKeyPart(Value(std::string_view("ghost")), &ghost);
      const std::string entry = DeadlineIndexKey(1, ghost);
      std::string& marker = state[0].values.at(std::string(kDeadlineIndexPrefix));
      DeadlineIndexSize size = DecodeDeadlineIndexMarker(marker).value();
      ++size.entries;
      size.bytes += static_cast<int64_t>(entry.size());
      marker = EncodeDeadlineIndexMarker(size);
      state[0].values[entry] = "";
    }
    std::vector<Event> events;
    std::map<std::string, int64_t> counts;
    const int n = static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) {
      const std::string w = "w" + std::to_string(rng() % 80);
      events.push_back(Word(w));
      ++counts[w];
    }
    std::vector<std::string> want;
    for (const auto& [w, c] : counts) {
      Model& m = model[w];
      m.total += c;
      m.last = bt;
      want.push_back(fmt::format(R"({{"key":["{}"],"total":{}}})", w, m.total));
    }
    for (auto it = model.begin(); it != model.end();) {
      if (!counts.contains(it->first) && it->second.last + timeout <= bt) {
        want.push_back(fmt::format(R"({{"key":["{}"],"total":{},"timed_out":true}})", it->first, it->second.total));
        ++expired_total;
        it = model.erase(it);
      } else {
        ++it;
      }
    }
    std::sort(want.begin(), want.end());
    const BatchRun run = RunBatch(stage, {.batch_id = batch, .batch_time_unix_ms = bt}, events, &state);
    ASSERT_EQ(run.lines, want) << "batch " << batch;
    // Built once (batch 1 on empty state, batch 20 after the drop), by one scan per partition.
    EXPECT_EQ(run.full_scans, batch == 1 || batch == 20 ? r : 0) << "batch " << batch;
    size_t keys = 0;
    for (const CountingState& s : state) {
      for (const auto& [k, v] : s.UserEntries()) {
        std::string w;
        ASSERT_TRUE(AppendKeyJson(k, &w).ok());
        w = w.substr(2, w.size() - 4);  // ["wN"] -> wN
        ASSERT_TRUE(model.contains(w)) << w;
        EXPECT_EQ(StampOf(v), model[w].last);
      }
      keys += s.UserEntries().size();
      ExpectIndexOf(s, StampOf);
    }
    EXPECT_EQ(keys, model.size());
  }
  EXPECT_GT(expired_total, 50) << "the input must make keys expire";
}

// --- sessions: against the full-scan algorithm the index replaced -----------

// Splits a session row key into its user key and event time (its last part).
void SplitRow(std::string_view key, std::string_view* user, int64_t* t) {
  size_t pos = 0, last = 0;
  std::string_view part;
  while (pos < key.size()) {
    last = pos;
    ASSERT_TRUE(format::GetLengthPrefixed(key, &pos, &part));
  }
  Value v;
  ASSERT_TRUE(DecodeValueKey(part, &v));
  *user = key.substr(0, last);
  *t = static_cast<int64_t>(std::get<double>(v));
}

// What FinishSessions did before the index: every key of the state looked at
// each batch. `state` holds user keys only.
std::vector<std::string> FullScanSessions(const KeyedStage& stage, const BatchContext& ctx,
                                          std::string_view buffer, std::map<std::string, std::string>* state) {
  auto reader = ShuffleReader::Create(stage.aggregate);
  EXPECT_TRUE(reader.ok());
  EXPECT_TRUE((*reader)->MergeRows(buffer).ok());
  std::vector<const Aggregator*> aggs;
  for (const auto& a : (*reader)->aggregators()) aggs.push_back(a.get());
  SessionMerger merger(aggs, stage.window.gap_ms());
  std::map<std::string, std::string> sets;
  for (const auto* row : (*reader)->Sorted()) {
    std::string_view user;
    int64_t t = 0;
    SplitRow(row->first, &user, &t);
    auto [it, fresh] = sets.try_emplace(std::string(user));
    if (fresh && state->contains(it->first)) it->second = state->at(it->first);
    EXPECT_TRUE(merger.Merge(&it->second, merger.Single(t, row->second)).ok());
  }
  std::map<std::string, std::string> all = sets;
  for (const auto& [k, v] : *state) all.try_emplace(k, v);
  const int64_t at = ctx.final_flush ? std::numeric_limits<int64_t>::max()
                     : ctx.watermark_unix_ms == kNoWatermark
                         ? kNoWatermark
                         : ctx.watermark_unix_ms - stage.window.allowed_lateness_ms();
  std::vector<std::string> lines;
  for (auto& [key, set] : all) {
    std::vector<Session> closed;
    if (at != kNoWatermark) {
      EXPECT_TRUE(merger.TakeClosed(&set, at, &closed).ok());
    }
    for (const Session& s : closed) {
      std::string line = "{\"key\":";
      EXPECT_TRUE(AppendKeyJson(key, &line).ok());
      line += fmt::format(",\"session_start\":{},\"session_end\":{}", s.start, s.last + stage.window.gap_ms());
      for (size_t i = 0; i < aggs.size(); ++i) {
        line += ",\"" + (*reader)->names()[i] + "\":";
        EXPECT_TRUE(aggs[i]->AppendResult(s.states[i], &line).ok());
      }
      line += "}";
      lines.push_back(line);
    }
    if (closed.empty() && !sets.contains(key)) continue;
    if (set.empty()) {
      state->erase(key);
    } else {
      (*state)[key] = set;
    }
  }
  return lines;
}

std::function<std::optional<int64_t>(std::string_view)> FirstLastOf(const KeyedStage& stage) {
  auto reader = ShuffleReader::Create(stage.aggregate);
  EXPECT_TRUE(reader.ok());
  auto owned = std::shared_ptr<ShuffleReader>(std::move(*reader));
  return [owned, gap = stage.window.gap_ms()](std::string_view set) -> std::optional<int64_t> {
    std::vector<const Aggregator*> aggs;
    for (const auto& a : owned->aggregators()) aggs.push_back(a.get());
    Result<std::vector<Session>> sessions = SessionMerger(aggs, gap).Decode(set);
    EXPECT_TRUE(sessions.ok()) << sessions.status();
    if (!sessions.ok() || sessions->empty()) return std::nullopt;
    return sessions->front().last;
  };
}

TEST(DeadlineIndexTest, SessionsMatchTheFullScanOnRandomInput) {
  const int32_t r = 2;
  const KeyedStage stage = StageOf(Job(
      "  - key_by: k\n  - window: {type: session, gap: 1s, event_time: ts, allowed_lateness: 300ms}\n"
      "  - aggregate: [{fn: count}, {fn: max, field: ts, as: last_ts}]\n",
      r));
  const auto first_last = FirstLastOf(stage);
  std::vector<CountingState> state;
  std::vector<std::map<std::string, std::string>> reference(r);
  std::mt19937 rng(5);
  int64_t watermark = kNoWatermark, max_seen = 0, emitted = 0;
  for (int64_t batch = 1; batch <= 80; ++batch) {
    const bool last = batch == 80;
    if (batch == 30) {
      for (CountingState& s : state) s.DropIndex();
    }
    std::vector<Event> events;
    const int n = static_cast<int>(rng() % 25);
    for (int i = 0; i < n; ++i) {
      // Around the newest event time, some behind the watermark (late).
      const int64_t ts = std::max<int64_t>(0, max_seen - 1'500 + static_cast<int64_t>(rng() % 3'000));
      events.push_back(At("k" + std::to_string(rng() % 40), ts));
    }
    const BatchContext ctx{.batch_id = batch, .batch_time_unix_ms = batch * 1000, .watermark_unix_ms = watermark,
                           .final_flush = last};
    const std::vector<std::string> buffers = MapBatch(stage, ctx, events);
    std::vector<std::string> want;
    for (int32_t p = 0; p < r; ++p) {
      for (std::string& l : FullScanSessions(stage, ctx, buffers[p], &reference[p])) want.push_back(std::move(l));
    }
    std::sort(want.begin(), want.end());
    const BatchRun run = ReduceBatch(stage, ctx, buffers, &state);
    ASSERT_EQ(run.lines, want) << "batch " << batch;
    emitted += static_cast<int64_t>(want.size());
    EXPECT_EQ(run.full_scans, batch == 1 || batch == 30 ? r : 0) << "batch " << batch;
    for (int32_t p = 0; p < r; ++p) {
      ASSERT_EQ(state[p].UserEntries(), reference[p]) << "batch " << batch << " partition " << p;
      ExpectIndexOf(state[p], first_last);
    }
    for (const Event& e : events) max_seen = std::max(max_seen, static_cast<int64_t>(std::get<double>(e.at("ts"))));
    if (batch % 3 == 0) watermark = max_seen - 700;  // the watermark moves every third batch
  }
  EXPECT_GT(emitted, 100);
  for (const CountingState& s : state) EXPECT_TRUE(s.UserEntries().empty()) << "the final flush closes every session";
}

// --- a plugin with a timeout: the keys it expires ---------------------------

TEST(DeadlineIndexTest, PluginTimeoutsMatchTheFullScanOnRandomInput) {
  const int32_t r = 2;
  proto::JobSpec spec = Job(
      "  - key_by: word\n  - update_state: {plugin: count_state_plugin, config: {field: v}, timeout: 3s}\n", r);
  const PathPolicy plugins{.plugin_dirs = {std::filesystem::path(SLUICE_COUNT_STATE_PLUGIN).parent_path().string()}};
  ASSERT_TRUE(plugins.ResolvePlugins(&spec).ok());
  const KeyedStage stage = StageOf(spec);
  std::map<std::string, int64_t> last_update;
  std::vector<CountingState> state;
  std::mt19937 rng(3);
  int64_t bt = 0, expired_total = 0;
  for (int64_t batch = 1; batch <= 50; ++batch) {
    bt += 400 + static_cast<int64_t>(rng() % 2'000);
    if (batch == 25) {
      for (CountingState& s : state) s.DropIndex();
    }
    std::vector<Event> events;
    std::set<std::string> touched;
    const int n = static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) {
      const std::string w = "w" + std::to_string(rng() % 60);
      events.push_back(Amount(w, 1));
      touched.insert(w);
    }
    std::set<std::string> want_expired;
    for (auto it = last_update.begin(); it != last_update.end();) {
      if (!touched.contains(it->first) && it->second + 3'000 <= bt) {
        want_expired.insert(it->first);
        it = last_update.erase(it);
      } else {
        ++it;
      }
    }
    for (const std::string& w : touched) last_update[w] = bt;
    const BatchRun run = RunBatch(stage, {.batch_id = batch, .batch_time_unix_ms = bt}, events, &state);
    std::set<std::string> expired;
    size_t updated = 0;
    for (const std::string& line : run.lines) {
      if (line.find("\"expired\":true") == std::string::npos) {
        ++updated;
        continue;
      }
      const size_t a = line.find("[\"") + 2;
      expired.insert(line.substr(a, line.find("\"]") - a));
    }
    EXPECT_EQ(expired, want_expired) << "batch " << batch;
    EXPECT_EQ(updated, touched.size());
    expired_total += static_cast<int64_t>(expired.size());
    EXPECT_EQ(run.full_scans, batch == 1 || batch == 25 ? r : 0) << "batch " << batch;
    size_t keys = 0;
    for (const CountingState& s : state) {
      keys += s.UserEntries().size();
      ExpectIndexOf(s, StampOf);
    }
    EXPECT_EQ(keys, last_update.size());
  }
  EXPECT_GT(expired_total, 30);
}

// --- what a batch reads, with many idle keys --------------------------------

// Number of idle keys for the cost tests (SLUICE_DEADLINE_KEYS overrides).
int IdleKeys(int fallback) {
  const char* env = std::getenv("SLUICE_DEADLINE_KEYS");
  return env != nullptr ? std::atoi(env) : fallback;
}

TEST(DeadlineIndexTest, ATimeoutBatchReadsWhatItTouchesAndWhatExpiresNotTheIdleKeys) {
  const int idle = IdleKeys(100'000);
  const KeyedStage stage = StageOf(
      Job("  - key_by: word\n  - update_state: {running: [{fn: count, as: total}], timeout: 10s}\n", 1));
  std::vector<CountingState> state;
  // 50 keys updated at 1,000 (they expire at 11,000), `idle` more at 2,000.
  std::vector<Event> early, many, touch;
  for (int i = 0; i < 50; ++i) early.push_back(Word("early" + std::to_string(i)));
  for (int i = 0; i < idle; ++i) many.push_back(Word("idle" + std::to_string(i)));
  for (int i = 0; i < 100; ++i) touch.push_back(Word("idle" + std::to_string(i * (idle / 100))));
  RunBatch(stage, {.batch_id = 1, .batch_time_unix_ms = 1'000}, early, &state);
  RunBatch(stage, {.batch_id = 2, .batch_time_unix_ms = 2'000}, many, &state);
  // Batch 3: 100 keys touched, 50 expire, the rest stay idle.
  const BatchRun run = RunBatch(stage, {.batch_id = 3, .batch_time_unix_ms = 11'000}, touch, &state);
  ASSERT_EQ(run.lines.size(), 150u);
  EXPECT_EQ(std::count_if(run.lines.begin(), run.lines.end(),
                          [](const std::string& l) { return l.find("timed_out") != std::string::npos; }),
            50);
  EXPECT_EQ(run.full_scans, 0);
  // 100 Gets, the marker, 50 entries and the first not passed, 50 Gets.
  EXPECT_LE(run.visited, 2 * (100 + 50) + 10) << "read " << run.visited << " entries of " << idle + 150;
  std::printf("timeouts: %d idle keys, 100 touched, 50 expired: %lld entries read, reduce %.2f ms (re-run %.2f ms)\n",
              idle, static_cast<long long>(run.visited), run.reduce_ms, run.rerun_ms);
  ExpectIndexOf(state[0], StampOf);
}

TEST(DeadlineIndexTest, ASessionBatchReadsWhatItTouchesAndWhatClosesNotTheIdleKeys) {
  const int idle = IdleKeys(100'000);
  const KeyedStage stage =
      StageOf(Job("  - key_by: k\n  - window: {type: session, gap: 1s, event_time: ts}\n  - aggregate: [{fn: count}]\n", 1));
  std::vector<CountingState> state;
  std::vector<Event> events;
  // 50 sessions end at 2,000 + 1,000; the others at 100,000 + 1,000.
  for (int i = 0; i < 50; ++i) events.push_back(At("early" + std::to_string(i), 2'000));
  for (int i = 0; i < idle; ++i) events.push_back(At("idle" + std::to_string(i), 100'000));
  RunBatch(stage, {.batch_id = 1, .watermark_unix_ms = kNoWatermark}, events, &state);
  std::vector<Event> touch;
  for (int i = 0; i < 100; ++i) touch.push_back(At("idle" + std::to_string(i * (idle / 100)), 100'500));
  const BatchRun run = RunBatch(stage, {.batch_id = 2, .watermark_unix_ms = 50'000}, touch, &state);
  ASSERT_EQ(run.lines.size(), 50u);
  EXPECT_EQ(run.full_scans, 0);
  EXPECT_LE(run.visited, 2 * (100 + 50) + 10) << "read " << run.visited << " entries of " << idle + 50;
  ExpectIndexOf(state[0], FirstLastOf(stage));
}

TEST(DeadlineIndexTest, AWindowBatchReadsOnlyTheClosedWindows) {
  const KeyedStage stage = StageOf(
      Job("  - key_by: k\n  - window: {type: tumbling, length: 1s, event_time: ts}\n  - aggregate: [{fn: count}]\n", 1));
  std::vector<CountingState> state;
  std::vector<Event> events;
  // 50 keys in [1000, 2000), 20,000 in [5000, 6000).
  for (int i = 0; i < 50; ++i) events.push_back(At("early" + std::to_string(i), 1'500));
  for (int i = 0; i < 20'000; ++i) events.push_back(At("open" + std::to_string(i), 5'500));
  RunBatch(stage, {.batch_id = 1, .watermark_unix_ms = kNoWatermark}, events, &state);
  const BatchRun run = RunBatch(stage, {.batch_id = 2, .watermark_unix_ms = 3'000}, {}, &state);
  ASSERT_EQ(run.lines.size(), 50u);
  // The closed windows sort first; the scan stops at the first open one.
  EXPECT_EQ(run.visited, 51);
  EXPECT_EQ(state[0].values.size(), 20'000u) << "windows keep no index";
}

// The figure for docs/state.md "Sessions and timeouts": reduce time per batch of a session
// job whose partition holds SLUICE_DEADLINE_KEYS (default 200,000; the doc: 1,000,000) idle
// keys, with the index and with the full scan it replaced (the reference
// above, over the same std::map state), and the one-time build. Printed,
// not asserted beyond equal results.
TEST(DeadlineIndexTest, SessionReduceTimeWithManyIdleKeys) {
  const int idle = IdleKeys(200'000);
  const KeyedStage stage =
      StageOf(Job("  - key_by: k\n  - window: {type: session, gap: 1s, event_time: ts}\n  - aggregate: [{fn: count}]\n", 1));
  std::vector<CountingState> state;
  std::vector<Event> events;
  for (int i = 0; i < 50; ++i) events.push_back(At("early" + std::to_string(i), 2'000));
  for (int i = 0; i < idle; ++i) events.push_back(At("idle" + std::to_string(i), 100'000));
  RunBatch(stage, {.batch_id = 1, .watermark_unix_ms = kNoWatermark}, events, &state);
  events.clear();
  std::vector<Event> touch;
  for (int i = 0; i < 100; ++i) touch.push_back(At("idle" + std::to_string(i * (idle / 100)), 100'500));
  const BatchContext ctx{.batch_id = 2, .watermark_unix_ms = 50'000};
  const std::vector<std::string> buffers = MapBatch(stage, ctx, touch);
  std::map<std::string, std::string> reference = state[0].UserEntries();
  auto start = std::chrono::steady_clock::now();
  std::vector<std::string> want = FullScanSessions(stage, ctx, buffers[0], &reference);
  const double full_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::sort(want.begin(), want.end());
  std::vector<CountingState> unindexed = state;
  unindexed[0].DropIndex();
  const BatchRun indexed = ReduceBatch(stage, ctx, buffers, &state);
  const BatchRun built = ReduceBatch(stage, ctx, buffers, &unindexed);
  EXPECT_EQ(indexed.lines, want);
  EXPECT_EQ(built.lines, want);
  EXPECT_EQ(built.full_scans, 1);
  std::printf("sessions, %d idle keys, 100 touched, 50 closed: full scan %.1f ms; index %.2f ms (re-run %.2f ms, "
              "%lld entries read); first batch without an index (build) %.1f ms\n",
              idle, full_ms, indexed.reduce_ms, indexed.rerun_ms, static_cast<long long>(indexed.visited),
              built.reduce_ms);
}

}  // namespace
}  // namespace sluice::engine
