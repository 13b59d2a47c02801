// Keyed aggregation end to end on a cluster of real processes:
// ZooKeeper, 3 driverd, 2 workerd, the Kafka mock; shuffle between the
// workers over gRPC, state in the workers' RocksDB.
//
// - Word count over 1,000,000 lines (paced, from the mock broker), per batch
//   (key_by + aggregate count: the shuffle, no state), and as running totals
//   (update_state: state versioned by batch, replicated to a second worker),
//   and as a plugin's own per-key state (examples/plugins/count_state_plugin).
//   The per-batch counts summed, and each word's last running total, equal
//   the counts computed here from the same lines. Once without faults, once
//   with the leader killed (-9), both workers killed (-9) one after the
//   other and restarted, and a worker paused (SIGSTOP) and resumed: the same
//   result, so no update is lost or applied twice.
// - Sliding event-time windows over out-of-order events with late ones: the
//   emitted windows equal a reference computed here; the late events are
//   counted and written to the dead letters.
#include <signal.h>

#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "gmock/gmock.h"
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
using testing::FieldOf;
using testing::KeyOf;
using testing::OutputLines;
using testing::TempDir;

constexpr int64_t kLines = 1'000'000;
constexpr int kDistinctLines = 1'000;

// Line i of the text: three to five words from vocabularies of different sizes.
std::string LineOf(int i) {
  std::string line = fmt::format("w{} v{} u{}", (i * 7) % 503, (i * 13) % 97, i % 11);
  if (i % 3 == 0) line += fmt::format(" w{}", (i * 31) % 503);
  if (i % 5 == 0) line += " the";
  return line;
}

int64_t NumberOf(std::string_view s) { return std::strtoll(std::string(s).c_str(), nullptr, 10); }

class KeyedTest : public ::testing::Test {
 protected:
  void StartCluster() {
    auto cluster = LocalCluster::Start({.dir = dir_.path(),
                                        .drivers = 3,
                                        .workers = 2,
                                        .kafka_topics = {{"lines", 4}, {"events", 2}}});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
  }

  int Ctl(std::vector<std::string> args) {
    return cluster_->Sluicectl(args, dir_.Sub("ctl" + std::to_string(runs_++) + ".log"));
  }
  std::string LastCtlLog() { return testing::ReadFile(dir_.Sub("ctl" + std::to_string(runs_ - 1) + ".log")).value_or(""); }

  std::optional<proto::JobInfo> Describe(const std::string& job) { return cluster_->DescribeJob(job); }

  int Leader() { return cluster_->LeaderIndex(); }

  void Submit(const std::string& name, const std::string& body) {
    const std::string path = dir_.Sub(name + ".yaml");
    ASSERT_TRUE(testing::WriteFile(path, "name: " + name + "\n" + body).ok());
    ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"list"}) == 0; }, milliseconds(20'000), milliseconds(200)));
    ASSERT_EQ(Ctl({"submit", path}), 0) << LastCtlLog();
  }

  void Produce(const std::string& topic, const std::string& lines_file, int64_t count, int64_t rate) {
    auto producer = testing::Subprocess::Start(
        {testing::kKafkaToolPath, "produce", "--brokers", cluster_->kafka()->bootstrap(), "--topic", topic, "--count",
         std::to_string(count), "--rate", std::to_string(rate), "--lines", lines_file},
        {.log_path = dir_.Sub("producer-" + topic + ".log")});
    ASSERT_TRUE(producer.ok()) << producer.status();
    producer_ = std::move(*producer);
  }

  void WaitForInput(const std::string& job, int64_t events) {
    ASSERT_TRUE(testing::WaitUntil(
        [&] {
          std::optional<proto::JobInfo> info = Describe(job);
          return info && (info->total_input() >= events || info->state() != "running");
        },
        milliseconds(240'000), milliseconds(500)))
        << job << ": " << (Describe(job) ? Describe(job)->ShortDebugString() : "no leader");
    std::optional<proto::JobInfo> info = Describe(job);
    ASSERT_TRUE(info);
    ASSERT_EQ(info->state(), "running") << info->stop_reason();
    EXPECT_EQ(info->total_input(), events) << job;
  }

  // Word count and running totals over the same 1,000,000 lines; `faults`
  // runs while the lines are produced.
  void RunWordCount(const std::function<void()>& faults) {
    std::string text;
    for (int i = 0; i < kDistinctLines; ++i) text += LineOf(i) + "\n";
    const std::string lines_file = dir_.Sub("lines.txt");
    ASSERT_TRUE(testing::WriteFile(lines_file, text).ok());
    std::map<std::string, int64_t> expected;
    for (int64_t n = 0; n < kLines; ++n) {
      std::istringstream words(LineOf(static_cast<int>(n % kDistinctLines)));
      for (std::string w; words >> w;) ++expected[w];
    }
    const std::string source = fmt::format(R"(max_task_failures: 6
reduce_partitions: 4
sources:
  - name: lines
    kind: kafka
    brokers: {}
    topic: lines
    start: earliest
operators:
  - parse: {{format: raw}}
  - flat_map: {{split: line, separator: " ", as: word}}
  - key_by: word
)",
                                           cluster_->kafka()->bootstrap());
    ASSERT_NO_FATAL_FAILURE(Submit("wordcount", "batch_interval: 1s\n" + source +
                                                    "  - aggregate: [{fn: count}]\nsink:\n  file: {path: " +
                                                    dir_.Sub("wordcount") + "}\n"));
    // A timeout no key reaches: the state keeps a deadline index, which
    // describe's state_keys below must not count.
    ASSERT_NO_FATAL_FAILURE(Submit("totals", "batch_interval: 200ms\n" + source +
                                                 "  - update_state: {running: [{fn: count, as: total}], timeout: 1h}\nsink:\n"
                                                 "  file: {path: " + dir_.Sub("totals") + "}\n"));
    ASSERT_NO_FATAL_FAILURE(Submit("plugin", "batch_interval: 1s\n" + source + "  - update_state: {plugin: count_state_plugin, timeout: 1h}\nsink:\n"
                                                 "  file: {path: " +
                                                 dir_.Sub("plugin") + "}\n"));
    ASSERT_NO_FATAL_FAILURE(Produce("lines", lines_file, kLines, 20'000));
    faults();
    Result<int> produced = producer_->Wait(seconds(180));
    ASSERT_TRUE(produced.ok() && *produced == 0) << testing::ReadFile(dir_.Sub("producer-lines.log")).value_or("");
    ASSERT_NO_FATAL_FAILURE(WaitForInput("wordcount", kLines));
    ASSERT_NO_FATAL_FAILURE(WaitForInput("totals", kLines));
    ASSERT_NO_FATAL_FAILURE(WaitForInput("plugin", kLines));
    // Running totals across 200 batches (the empty ones after the input
    // change nothing).
    ASSERT_TRUE(testing::WaitUntil([&] { return Describe("totals")->last_committed_batch() >= 200; },
                                   milliseconds(60'000), milliseconds(200)));
    // The batch that read the last lines has committed: its output is there.
    ASSERT_EQ(Ctl({"stop", "wordcount"}), 0);
    ASSERT_EQ(Ctl({"stop", "totals"}), 0);
    ASSERT_EQ(Ctl({"stop", "plugin"}), 0);

    std::map<std::string, int64_t> counted;
    for (const auto& [batch, line] : OutputLines(dir_.Sub("wordcount"))) {
      counted[KeyOf(line)] += NumberOf(FieldOf(line, "count"));
    }
    EXPECT_EQ(counted.size(), expected.size());
    int64_t wrong = 0;
    for (const auto& [word, n] : expected) {
      if (counted[word] != n && wrong++ < 5) ADD_FAILURE() << "word count of " << word << ": " << counted[word] << ", expected " << n;
    }
    EXPECT_EQ(wrong, 0);

    // Running totals: per word, increasing from batch to batch, the last one
    // the word's count.
    std::map<std::string, int64_t> last;
    std::map<std::string, int64_t> last_batch;
    int64_t not_increasing = 0;
    std::set<int64_t> batches;
    for (const auto& [batch, line] : OutputLines(dir_.Sub("totals"))) {
      const std::string word = KeyOf(line);
      const int64_t total = NumberOf(FieldOf(line, "total"));
      batches.insert(batch);
      if (last.contains(word) && (total <= last[word] || batch <= last_batch[word])) {
        if (not_increasing++ < 5) {
          ADD_FAILURE() << word << ": total " << total << " in batch " << batch << " after " << last[word]
                        << " in batch " << last_batch[word];
        }
      }
      last[word] = total;
      last_batch[word] = batch;
    }
    EXPECT_EQ(not_increasing, 0);
    // Batches that found input while the others were running are merged by
    // planning (no more than max_batches_in_flight): fewer output batches
    // than committed ones, but many.
    EXPECT_GE(batches.size(), 10u) << "the running totals came in too few batches to test anything";
    wrong = 0;
    for (const auto& [word, n] : expected) {
      if (last[word] != n && wrong++ < 5) ADD_FAILURE() << "running total of " << word << ": " << last[word] << ", expected " << n;
    }
    EXPECT_EQ(wrong, 0);
    // The plugin's own state (examples/plugins/count_state_plugin.cc): its
    // last count per word is the word's count.
    std::map<std::string, int64_t> plugin_last;
    for (const auto& [batch, line] : OutputLines(dir_.Sub("plugin"))) {
      plugin_last[KeyOf(line)] = NumberOf(FieldOf(line, "events"));
    }
    wrong = 0;
    for (const auto& [word, n] : expected) {
      if (plugin_last[word] != n && wrong++ < 5) {
        ADD_FAILURE() << "plugin count of " << word << ": " << plugin_last[word] << ", expected " << n;
      }
    }
    EXPECT_EQ(wrong, 0);
    std::optional<proto::JobInfo> totals = Describe("totals");
    ASSERT_TRUE(totals);
    EXPECT_EQ(totals->state_keys(), static_cast<int64_t>(expected.size())) << "state size in describe";
    EXPECT_GT(totals->state_bytes(), 0);
  }

  TempDir dir_{"keyed"};
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<testing::Subprocess> producer_;
  int runs_ = 0;
};

TEST_F(KeyedTest, WordCountAndRunningTotalsOverAMillionLines) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  ASSERT_NO_FATAL_FAILURE(RunWordCount([] {}));
}

TEST_F(KeyedTest, WordCountAndRunningTotalsSurviveLeaderAndWorkerKillsAndAPause) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  ASSERT_NO_FATAL_FAILURE(RunWordCount([&] {
    std::this_thread::sleep_for(seconds(8));
    const int killed = Leader();
    ASSERT_GE(killed, 0);
    cluster_->KillDriver(killed);
    ASSERT_TRUE(testing::WaitUntil([&] { return Leader() >= 0 && Leader() != killed; }, milliseconds(30'000),
                                   milliseconds(100)));
    ASSERT_TRUE(cluster_->StartDriver(killed).ok());
    std::this_thread::sleep_for(seconds(5));
    cluster_->KillWorker(0);  // state owners and replicas both live on the two workers
    std::this_thread::sleep_for(seconds(4));
    ASSERT_TRUE(cluster_->StartWorker(0).ok());
    std::this_thread::sleep_for(seconds(8));
    cluster_->KillWorker(1);
    std::this_thread::sleep_for(seconds(4));
    ASSERT_TRUE(cluster_->StartWorker(1).ok());
    std::this_thread::sleep_for(seconds(8));
    ASSERT_TRUE(cluster_->worker(0)->Signal(SIGSTOP).ok());
    std::this_thread::sleep_for(seconds(3));
    ASSERT_TRUE(cluster_->worker(0)->Signal(SIGCONT).ok());
  }));
}

TEST_F(KeyedTest, SlidingEventTimeWindowsMatchAReferenceAndLateEventsAreDeadLetters) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  // Event i: key k<i % 5>, event time base + i ms (produced at 2,000/s, so
  // event time runs at twice the wall clock); every 7th a little out of
  // order (300 ms back: its windows are all still open); from i = 25,000
  // every 500th is 30 s back: all its windows were emitted long before
  // (late). The watermark is the largest committed event time less max_delay,
  // over both Kafka partitions, so max_delay must cover how far one
  // partition's reads may trail the other's: 10 s of event time is 5 s of
  // wall clock here (3 s was too little on a busy machine: one run counted 50
  // on-time events of a trailing partition late). The late events stay late
  // through a trail of up to 8 s. Once all of them have committed, one more
  // event, 10^7 ms ahead, moves the watermark past every other window so
  // they all close (sent with the others, it could be read while the other
  // partition's last events trail by a block, and make them late).
  constexpr int64_t kBase = 1'800'000'000'000;  // a multiple of the slide
  constexpr int kEvents = 40'000;
  std::string text;
  std::map<std::tuple<std::string, int64_t>, int64_t> expected;  // (key, window start) -> count
  int64_t late = 0;
  for (int i = 0; i < kEvents; ++i) {
    const std::string key = "k" + std::to_string(i % 5);
    int64_t ts = kBase + i;
    if (i % 7 == 3) ts -= 300;
    const bool is_late = i >= 25'000 && i % 500 == 0;
    if (is_late) {
      ts -= 30'000;
      ++late;
    } else {
      for (int64_t start = ts / 1000 * 1000; start > ts - 2000; start -= 1000) ++expected[{key, start}];
    }
    text += fmt::format("{{\"k\":\"{}\",\"ts\":{}}}\n", key, ts);
  }
  const std::string events_file = dir_.Sub("events.txt");
  ASSERT_TRUE(testing::WriteFile(events_file, text).ok());
  const std::string flush_file = dir_.Sub("flush.txt");
  ASSERT_TRUE(
      testing::WriteFile(flush_file, fmt::format("{{\"k\":\"flush\",\"ts\":{}}}\n", kBase + 10'000'000)).ok());
  const std::string out = dir_.Sub("windows");
  ASSERT_NO_FATAL_FAILURE(Submit("windows", fmt::format(R"(batch_interval: 500ms
reduce_partitions: 3
sources:
  - {{name: events, kind: kafka, brokers: {}, topic: events, start: earliest}}
operators:
  - parse: {{format: json}}
  - key_by: k
  - window: {{type: sliding, length: 2s, slide: 1s, event_time: ts, max_delay: 10s, allowed_lateness: 1s}}
  - aggregate: [{{fn: count}}]
sink:
  file: {{path: {}}}
)",
                                                        cluster_->kafka()->bootstrap(), out)));
  ASSERT_NO_FATAL_FAILURE(Produce("events", events_file, kEvents, 2'000));
  Result<int> produced = producer_->Wait(seconds(120));
  ASSERT_TRUE(produced.ok() && *produced == 0) << testing::ReadFile(dir_.Sub("producer-events.log")).value_or("");
  ASSERT_NO_FATAL_FAILURE(WaitForInput("windows", kEvents));
  ASSERT_NO_FATAL_FAILURE(Produce("events", flush_file, 1, 1'000));
  produced = producer_->Wait(seconds(30));
  ASSERT_TRUE(produced.ok() && *produced == 0) << testing::ReadFile(dir_.Sub("producer-events.log")).value_or("");
  ASSERT_NO_FATAL_FAILURE(WaitForInput("windows", kEvents + 1));
  // The windows close in the batch after the one that read the last event.
  const int64_t read_by = Describe("windows")->last_committed_batch();
  ASSERT_TRUE(testing::WaitUntil([&] { return Describe("windows")->last_committed_batch() >= read_by + 3; },
                                 milliseconds(30'000), milliseconds(200)));
  std::optional<proto::JobInfo> info = Describe("windows");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->total_late_events(), late);
  EXPECT_EQ(info->total_dead_letters(), late);

  std::map<std::tuple<std::string, int64_t>, int64_t> emitted;
  int64_t twice = 0;
  for (const auto& [batch, line] : OutputLines(out)) {
    const std::string key = KeyOf(line);
    const int64_t start = NumberOf(FieldOf(line, "window_start"));
    EXPECT_EQ(NumberOf(FieldOf(line, "window_end")), start + 2000) << line;
    if (emitted.contains({key, start}) && twice++ < 3) ADD_FAILURE() << "window emitted twice: " << line;
    emitted[{key, start}] = NumberOf(FieldOf(line, "count"));
  }
  EXPECT_EQ(twice, 0);
  EXPECT_FALSE(emitted.contains({"flush", kBase + 10'000'000})) << "the flush event's windows are still open";
  EXPECT_EQ(emitted.size(), expected.size());
  int64_t wrong = 0;
  for (const auto& [window, n] : expected) {
    if (emitted[window] != n && wrong++ < 5) {
      ADD_FAILURE() << "window " << std::get<0>(window) << " @" << std::get<1>(window) << ": " << emitted[window]
                    << ", expected " << n;
    }
  }
  EXPECT_EQ(wrong, 0);

  // The late events, in the dead letters with their reason.
  int64_t dead = 0;
  for (const auto& f : std::filesystem::directory_iterator(out + "/dead-letters")) {
    Result<std::string> lines = testing::ReadFile(f.path().string());
    ASSERT_TRUE(lines.ok());
    std::istringstream in(*lines);
    for (std::string line; std::getline(in, line);) {
      EXPECT_THAT(line, ::testing::HasSubstr("late: event time"));
      ++dead;
    }
  }
  EXPECT_EQ(dead, late);
}

}  // namespace
}  // namespace sluice
