// A job's life on a cluster of real processes (ZooKeeper, 2 driverd, 2
// workerd, the Kafka mock): stop --drain, stop and restart, update in place,
// delete and the name used again (docs/jobs.md "A job's life").
//
// - Drain with --emit-windows of a keyed job whose event-time windows are all
//   still open (the watermark trails by an hour): every window is emitted
//   once with its exact count, the job stops by itself, and input produced
//   after the drain is never read.
// - Plain stop in the middle of the input, then restart: the running totals
//   per key go on exactly (each word's last total equals its count in the
//   input: no gap, no double count), and batches resume where they stopped.
// - Update of a running job's filter under load: batches before the update's
//   batch follow the old filter, later ones the new; events both filters pass
//   are each written once. A keyed change the state cannot follow is refused
//   unless --reset-state.
// - Delete frees the name; the job submitted again numbers its batches on.
//
// Each fault-like step prints how long until the next committed batch.
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/sink_output.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::LocalCluster;
using testing::KeyOf;
using testing::OutputLines;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

// The number after `"name":` in a JSON line, or -1.
int64_t NumberField(std::string_view line, std::string_view name) {
  const std::string_view text = testing::FieldOf(line, name);
  return text.empty() ? -1 : std::strtoll(std::string(text).c_str(), nullptr, 10);
}

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = LocalCluster::Start({.dir = dir_.path(),
                                        .drivers = 2,
                                        .workers = 2,
                                        .kafka_topics = {{"events", 2}, {"lines", 2}, {"more", 2}}});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"list"}) == 0; }, milliseconds(20'000), milliseconds(200)));
  }

  int Ctl(std::vector<std::string> args) {
    return cluster_->Sluicectl(args, dir_.Sub("ctl" + std::to_string(runs_++) + ".log"));
  }
  std::string LastCtlLog() { return testing::ReadFile(dir_.Sub("ctl" + std::to_string(runs_ - 1) + ".log")).value_or(""); }
  std::optional<proto::JobInfo> Describe(const std::string& job) { return cluster_->DescribeJob(job); }

  std::string WriteJob(const std::string& name, const std::string& body) {
    const std::string path = dir_.Sub(name + "-" + std::to_string(files_++) + ".yaml");
    EXPECT_TRUE(testing::WriteFile(path, "name: " + name + "\n" + body).ok());
    return path;
  }

  // Produces every line of `lines_file` once into `topic`, at `rate`/s.
  void Produce(const std::string& topic, const std::string& lines_file, int64_t count, int64_t rate) {
    auto producer = testing::Subprocess::Start(
        {testing::kKafkaToolPath, "produce", "--brokers", cluster_->kafka()->bootstrap(), "--topic", topic, "--count",
         std::to_string(count), "--rate", std::to_string(rate), "--lines", lines_file},
        {.log_path = dir_.Sub("producer-" + topic + std::to_string(files_++) + ".log")});
    ASSERT_TRUE(producer.ok()) << producer.status();
    producer_ = std::move(*producer);
  }
  void WaitProduced() {
    Result<int> produced = producer_->Wait(seconds(120));
    ASSERT_TRUE(produced.ok() && *produced == 0);
  }

  void WaitForInput(const std::string& job, int64_t events) {
    ASSERT_TRUE(testing::WaitUntil(
        [&] {
          std::optional<proto::JobInfo> info = Describe(job);
          return info && info->total_input() >= events;
        },
        milliseconds(120'000), milliseconds(250)))
        << job << ": " << (Describe(job) ? Describe(job)->ShortDebugString() : "no leader");
    EXPECT_EQ(Describe(job)->total_input(), events) << job;
  }

  // Seconds from now until `job` commits a batch past `after`.
  double SecondsToNextCommit(const std::string& job, int64_t after, Clock::time_point since) {
    EXPECT_TRUE(testing::WaitUntil(
        [&] {
          std::optional<proto::JobInfo> info = Describe(job);
          return info && info->last_committed_batch() > after;
        },
        milliseconds(30'000), milliseconds(50)))
        << job << " committed nothing past batch " << after;
    return std::chrono::duration<double>(Clock::now() - since).count();
  }

  TempDir dir_{"sluice-lifecycle"};
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<testing::Subprocess> producer_;
  int runs_ = 0;
  int files_ = 0;
};

TEST_F(LifecycleTest, DrainEmitsEveryOpenWindowOnceThenReadsNothingMore) {
  // 20,000 events over 5 keys, event time base + i ms: 20 one-second windows
  // per key, all open at the end (max_delay is an hour).
  constexpr int64_t kBase = 1'800'000'000'000;
  constexpr int kEvents = 20'000;
  std::string text;
  std::map<std::pair<std::string, int64_t>, int64_t> expected;  // (key, window start) -> count
  for (int i = 0; i < kEvents; ++i) {
    const std::string key = "k" + std::to_string(i % 5);
    const int64_t ts = kBase + i;
    ++expected[{key, ts / 1000 * 1000}];
    text += fmt::format("{{\"k\":\"{}\",\"ts\":{}}}\n", key, ts);
  }
  ASSERT_TRUE(testing::WriteFile(dir_.Sub("events.txt"), text).ok());
  const std::string out = dir_.Sub("windows");
  ASSERT_EQ(Ctl({"submit", WriteJob("windows", fmt::format(R"(batch_interval: 500ms
reduce_partitions: 2
sources:
  - {{name: events, kind: kafka, brokers: {}, topic: events, start: earliest}}
operators:
  - parse: {{format: json}}
  - key_by: k
  - window: {{type: tumbling, length: 1s, event_time: ts, max_delay: 1h}}
  - aggregate: [{{fn: count}}]
sink:
  file: {{path: {}}}
)",
                                                            cluster_->kafka()->bootstrap(), out))}),
            0)
      << LastCtlLog();
  ASSERT_NO_FATAL_FAILURE(Produce("events", dir_.Sub("events.txt"), kEvents, 10'000));
  ASSERT_NO_FATAL_FAILURE(WaitProduced());
  ASSERT_NO_FATAL_FAILURE(WaitForInput("windows", kEvents));
  EXPECT_TRUE(OutputLines(out).empty()) << "a window closed before the drain: " << OutputLines(out).front().second;

  const Clock::time_point asked = Clock::now();
  ASSERT_EQ(Ctl({"stop", "windows", "--drain", "--emit-windows", "--wait"}), 0) << LastCtlLog();
  const double drain_s = std::chrono::duration<double>(Clock::now() - asked).count();
  std::optional<proto::JobInfo> info = Describe("windows");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->state(), "stopped");
  std::printf("[drain] stopped %.1f s after stop --drain, at batch %ld\n", drain_s,
              static_cast<long>(info->last_committed_batch()));
  EXPECT_LT(drain_s, 20.0);

  std::map<std::pair<std::string, int64_t>, int64_t> emitted;
  int twice = 0;
  for (const auto& [batch, line] : OutputLines(out)) {
    EXPECT_EQ(batch, info->last_committed_batch()) << "emitted before the last batch: " << line;
    auto [it, fresh] = emitted.emplace(std::make_pair(KeyOf(line), NumberField(line, "window_start")),
                                       NumberField(line, "count"));
    if (!fresh && twice++ < 3) ADD_FAILURE() << "window emitted twice: " << line;
  }
  EXPECT_EQ(emitted, expected);

  // Nothing more: input after the drain is not read, no batch is planned.
  ASSERT_NO_FATAL_FAILURE(Produce("events", dir_.Sub("events.txt"), 1'000, 10'000));
  ASSERT_NO_FATAL_FAILURE(WaitProduced());
  std::this_thread::sleep_for(seconds(3));
  std::optional<proto::JobInfo> after = Describe("windows");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->state(), "stopped");
  EXPECT_EQ(after->last_planned_batch(), info->last_planned_batch());
  EXPECT_EQ(after->total_input(), kEvents);
  EXPECT_EQ(OutputLines(out).size(), expected.size());
}

TEST_F(LifecycleTest, StopAndRestartContinueRunningTotalsExactly) {
  constexpr int kLines = 60'000;
  std::string text;
  std::map<std::string, int64_t> expected;
  for (int i = 0; i < kLines; ++i) {
    const std::string line = fmt::format("w{} v{}", (i * 7) % 101, i % 13);
    text += line + "\n";
    std::istringstream words(line);
    for (std::string w; words >> w;) ++expected[w];
  }
  ASSERT_TRUE(testing::WriteFile(dir_.Sub("lines.txt"), text).ok());
  const std::string out = dir_.Sub("totals");
  const std::string job = WriteJob("totals", fmt::format(R"(batch_interval: 300ms
reduce_partitions: 3
sources:
  - {{name: lines, kind: kafka, brokers: {}, topic: lines, start: earliest}}
operators:
  - parse: {{format: raw}}
  - flat_map: {{split: line, separator: " ", as: word}}
  - key_by: word
  - update_state: {{running: [{{fn: count, as: total}}]}}
sink:
  file: {{path: {}}}
)",
                                                          cluster_->kafka()->bootstrap(), out));
  ASSERT_EQ(Ctl({"submit", job}), 0) << LastCtlLog();
  ASSERT_NO_FATAL_FAILURE(Produce("lines", dir_.Sub("lines.txt"), kLines, 10'000));
  ASSERT_TRUE(testing::WaitUntil([&] { return Describe("totals")->total_input() > 10'000; }, milliseconds(60'000),
                                 milliseconds(100)));
  ASSERT_EQ(Ctl({"stop", "totals"}), 0) << LastCtlLog();
  std::optional<proto::JobInfo> stopped = Describe("totals");
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->state(), "stopped");
  EXPECT_GT(stopped->state_keys(), 0) << "a stopped job keeps its state";
  // Input goes on arriving while the job is stopped.
  std::this_thread::sleep_for(seconds(2));
  std::optional<proto::JobInfo> still = Describe("totals");
  EXPECT_EQ(still->last_committed_batch(), stopped->last_committed_batch());
  EXPECT_EQ(still->total_input(), stopped->total_input());

  const Clock::time_point asked = Clock::now();
  ASSERT_EQ(Ctl({"restart", "totals"}), 0) << LastCtlLog();
  const double restart_s = SecondsToNextCommit("totals", still->last_committed_batch(), asked);
  std::printf("[restart] stopped at batch %ld with %ld events in; next batch committed %.1f s after restart\n",
              static_cast<long>(still->last_committed_batch()), static_cast<long>(still->total_input()), restart_s);
  EXPECT_LT(restart_s, 10.0);
  ASSERT_NO_FATAL_FAILURE(WaitProduced());
  ASSERT_NO_FATAL_FAILURE(WaitForInput("totals", kLines));
  const int64_t last_read = Describe("totals")->last_committed_batch();
  ASSERT_TRUE(testing::WaitUntil([&] { return Describe("totals")->last_committed_batch() > last_read; },
                                 milliseconds(10'000), milliseconds(100)));
  EXPECT_EQ(Describe("totals")->restarts(), 1);

  // Each word's last running total is its count in the input: no update lost
  // over the stop, none applied twice.
  std::map<std::string, int64_t> last_total;
  std::set<int64_t> batches;
  for (const auto& [batch, line] : OutputLines(out)) {
    last_total[KeyOf(line)] = NumberField(line, "total");
    batches.insert(batch);
  }
  EXPECT_EQ(last_total, expected);
  EXPECT_GT(*batches.rbegin(), still->last_committed_batch()) << "no output after the restart";
}

TEST_F(LifecycleTest, UpdateTheFilterUnderLoadThenRefuseAnIncompatibleKeyedChange) {
  // Event i has m = i % 10. Before the update the filter keeps m < 5, after
  // it m >= 3: events with m in {3, 4} pass both and must each be written
  // exactly once, whichever side of the update read them.
  constexpr int kEvents = 40'000;
  std::string text;
  for (int i = 0; i < kEvents; ++i) text += fmt::format("{{\"i\":{},\"m\":{}}}\n", i, i % 10);
  ASSERT_TRUE(testing::WriteFile(dir_.Sub("more.txt"), text).ok());
  const std::string out = dir_.Sub("filtered");
  auto spec = [&](const std::string& filter) {
    return fmt::format(R"(batch_interval: 300ms
sources:
  - {{name: more, kind: kafka, brokers: {}, topic: more, start: earliest}}
operators:
  - parse: {{format: json}}
  - filter: "{}"
sink:
  file: {{path: {}}}
)",
                       cluster_->kafka()->bootstrap(), filter, out);
  };
  ASSERT_EQ(Ctl({"submit", WriteJob("filtered", spec("m < 5"))}), 0) << LastCtlLog();
  ASSERT_NO_FATAL_FAILURE(Produce("more", dir_.Sub("more.txt"), kEvents, 8'000));
  ASSERT_TRUE(testing::WaitUntil([&] { return Describe("filtered")->total_input() > 12'000; }, milliseconds(60'000),
                                 milliseconds(100)));
  const std::string next = WriteJob("filtered", spec("m >= 3"));
  ASSERT_EQ(Ctl({"update", "filtered", next, "--dry-run"}), 0) << LastCtlLog();
  EXPECT_NE(LastCtlLog().find("would be updated"), std::string::npos) << LastCtlLog();
  const int64_t before = Describe("filtered")->last_planned_batch();
  const Clock::time_point asked = Clock::now();
  ASSERT_EQ(Ctl({"update", "filtered", next}), 0) << LastCtlLog();
  const std::string said = LastCtlLog();
  EXPECT_NE(said.find("operators: step 2 (filter -> filter) changed"), std::string::npos) << said;
  const size_t at = said.find("from batch ");
  ASSERT_NE(at, std::string::npos) << said;
  const int64_t from = std::strtoll(said.c_str() + at + 11, nullptr, 10);
  EXPECT_GT(from, before);
  const double update_s = SecondsToNextCommit("filtered", from - 1, asked);
  std::printf("[update] the new filter from batch %ld; it committed %.1f s after the update\n",
              static_cast<long>(from), update_s);
  EXPECT_LT(update_s, 10.0);
  ASSERT_NO_FATAL_FAILURE(WaitProduced());
  ASSERT_NO_FATAL_FAILURE(WaitForInput("filtered", kEvents));
  const int64_t last_read = Describe("filtered")->last_committed_batch();
  ASSERT_TRUE(testing::WaitUntil([&] { return Describe("filtered")->last_committed_batch() > last_read; },
                                 milliseconds(10'000), milliseconds(100)));

  std::map<int64_t, int> seen;  // i -> times written
  int64_t old_side = 0, new_side = 0, wrong = 0;
  for (const auto& [batch, line] : OutputLines(out)) {
    const int64_t i = NumberField(line, "i"), m = NumberField(line, "m");
    ++seen[i];
    const bool ok = batch < from ? m < 5 : m >= 3;
    if (!ok && wrong++ < 3) ADD_FAILURE() << "batch " << batch << " (update from " << from << "): " << line;
    (batch < from ? old_side : new_side) += 1;
  }
  int64_t both = 0, doubled = 0;
  for (int i = 0; i < kEvents; ++i) {
    if (seen[i] > 1 && doubled++ < 3) ADD_FAILURE() << "event " << i << " written " << seen[i] << " times";
    if (i % 10 == 3 || i % 10 == 4) {
      EXPECT_EQ(seen[i], 1) << "event " << i << " passes both filters";
      ++both;
    }
  }
  std::printf("[update] %ld records under the old filter, %ld under the new; %ld events passing both, each once\n",
              static_cast<long>(old_side), static_cast<long>(new_side), static_cast<long>(both));
  EXPECT_GT(old_side, 0);
  EXPECT_GT(new_side, 0);

  // A keyed job: changing its key cannot keep its state.
  auto keyed = [&](const std::string& key, const std::string& agg) {
    return fmt::format(R"(batch_interval: 300ms
sources: [more]
operators:
  - parse: {{format: json}}
  - key_by: {}
  - update_state: {{running: [{}]}}
sink:
  file: {{path: {}}}
)",
                       key, agg, dir_.Sub("keyed"));
  };
  ASSERT_EQ(Ctl({"submit", WriteJob("keyed", keyed("m", "{fn: count, as: n}"))}), 0) << LastCtlLog();
  EXPECT_EQ(Ctl({"update", "keyed", WriteJob("keyed", keyed("i", "{fn: count, as: n}"))}), 1);
  EXPECT_NE(LastCtlLog().find("--reset-state"), std::string::npos) << LastCtlLog();
  EXPECT_NE(LastCtlLog().find("key_by [m] -> [i]"), std::string::npos) << LastCtlLog();
  EXPECT_EQ(Describe("keyed")->updates(), 0);
  // The same key, a new filter before it: the state is kept.
  const std::string with_filter = WriteJob("keyed", R"(batch_interval: 300ms
sources: [more]
operators:
  - parse: {format: json}
  - filter: "m > 0"
  - key_by: m
  - update_state: {running: [{fn: count, as: n}]}
sink:
  file: {path: )" + dir_.Sub("keyed") + "}\n");
  ASSERT_EQ(Ctl({"update", "keyed", with_filter}), 0) << LastCtlLog();
  EXPECT_NE(LastCtlLog().find("state kept"), std::string::npos) << LastCtlLog();
  // A new key, with --reset-state: accepted.
  ASSERT_EQ(Ctl({"update", "keyed", WriteJob("keyed", keyed("i", "{fn: count, as: n}")), "--reset-state"}), 0)
      << LastCtlLog();
  EXPECT_NE(LastCtlLog().find("state reset"), std::string::npos) << LastCtlLog();
  EXPECT_EQ(Describe("keyed")->updates(), 2);
}

TEST_F(LifecycleTest, DeleteFreesTheNameAndTheNewJobNumbersItsBatchesOn) {
  const std::string out1 = dir_.Sub("first"), out2 = dir_.Sub("second");
  auto job = [&](const std::string& out) {
    return WriteJob("gen", fmt::format(R"(batch_interval: 200ms
sources:
  - {{name: gen, kind: generator, partitions: 2, rate: 2000, payload_bytes: 100}}
operators:
  - parse: {{format: json}}
sink:
  file: {{path: {}}}
)",
                                       out));
  };
  ASSERT_EQ(Ctl({"submit", job(out1)}), 0) << LastCtlLog();
  ASSERT_TRUE(testing::WaitUntil([&] { return Describe("gen")->last_committed_batch() >= 5; }, milliseconds(30'000),
                                 milliseconds(100)));
  EXPECT_EQ(Ctl({"submit", job(out1)}), 1) << "the name is taken";
  EXPECT_EQ(Ctl({"delete", "gen"}), 1) << "a running job is not deleted";
  EXPECT_NE(LastCtlLog().find("stop it first"), std::string::npos) << LastCtlLog();
  ASSERT_EQ(Ctl({"stop", "gen"}), 0) << LastCtlLog();
  const int64_t last = Describe("gen")->last_planned_batch();
  ASSERT_EQ(Ctl({"delete", "gen"}), 0) << LastCtlLog();
  // Any driver answers describe: a standby may lag a moment.
  EXPECT_TRUE(testing::WaitUntil([&] { return !Describe("gen").has_value(); }, milliseconds(5'000)));
  EXPECT_EQ(Ctl({"restart", "gen"}), 1);
  const Clock::time_point asked = Clock::now();
  ASSERT_EQ(Ctl({"submit", job(out2)}), 0) << LastCtlLog();
  const double s = SecondsToNextCommit("gen", last, asked);
  std::printf("[delete] the name used again; its first batch (after %ld) committed %.1f s after submit\n",
              static_cast<long>(last), s);
  std::optional<proto::JobInfo> again = Describe("gen");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->state(), "running");
  EXPECT_GT(again->last_committed_batch(), last);
  ASSERT_TRUE(testing::WaitUntil([&] { return !OutputLines(out2).empty(); }, milliseconds(15'000)))
      << "the job under the name used again wrote nothing";
  for (const auto& [batch, line] : OutputLines(out2)) {
    ASSERT_GT(batch, last) << "batch numbers go on after the deleted job's";
  }
}

}  // namespace
}  // namespace sluice
