// Rescaling keyed jobs end to end (docs/state.md "Rescaling"): ZooKeeper,
// 3 driverd, 3 workerd, the Kafka mock. A running word count (update_state:
// state re-split at each rescale) and a per-batch word count (a stateless
// keyed stage) read the same lines while `sluicectl rescale` takes them from
// 4 to 8 to 2 reduce partitions, then the running one to 3 with the leader
// killed (-9) right after the command. Checked:
// - safety: each word's last running total, and its per-batch counts summed,
//   equal the counts computed here; within a batch no word is written twice
//   (whatever the number of output partitions); totals only grow;
// - liveness: the time from each rescale to the first committed batch with
//   the new count, printed and bounded;
// - the batches after each rescale wrote as many output partitions as the
//   new count allows, and the workers dropped the old layouts.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
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
using testing::FieldOf;
using testing::KeyOf;
using testing::LocalCluster;
using testing::OutputLines;
using testing::TempDir;

constexpr int64_t kLines = 200'000;
constexpr int64_t kRate = 5'000;  // lines/s: the input flows for 40 s
constexpr int kDistinctLines = 1'000;

std::string LineOf(int i) {
  std::string line = fmt::format("w{} v{} u{}", (i * 7) % 503, (i * 13) % 97, i % 11);
  if (i % 3 == 0) line += fmt::format(" w{}", (i * 31) % 503);
  return line;
}

int64_t NumberOf(std::string_view s) { return std::strtoll(std::string(s).c_str(), nullptr, 10); }

// The output partition of a sink file, <job>-batch-00000012-part-0003.jsonl -> 3.
int PartOfFile(const std::string& name) {
  const size_t at = name.find("-part-");
  return at == std::string::npos ? -1 : static_cast<int>(std::strtol(name.c_str() + at + 6, nullptr, 10));
}

class RescaleTest : public ::testing::Test {
 protected:
  int Ctl(const std::vector<std::string>& args) {
    return cluster_->Sluicectl(args, dir_.Sub("ctl" + std::to_string(runs_++) + ".log"));
  }
  std::string LastCtlLog() {
    return testing::ReadFile(dir_.Sub("ctl" + std::to_string(runs_ - 1) + ".log")).value_or("");
  }
  std::optional<proto::JobInfo> Describe(const std::string& job) { return cluster_->DescribeJob(job); }

  void Submit(const std::string& name, const std::string& body) {
    const std::string path = dir_.Sub(name + ".yaml");
    ASSERT_TRUE(testing::WriteFile(path, "name: " + name + "\n" + body).ok());
    ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"list"}) == 0; }, milliseconds(20'000), milliseconds(200)));
    ASSERT_EQ(Ctl({"submit", path}), 0) << LastCtlLog();
  }

  // sluicectl rescale JOB N; the first batch that runs with N.
  int64_t Rescale(const std::string& job, int n) {
    EXPECT_EQ(Ctl({"rescale", job, std::to_string(n)}), 0) << LastCtlLog();
    const std::string out = LastCtlLog();
    std::smatch m;
    const bool found = std::regex_search(out, m, std::regex("rescaled from \\d+ to \\d+ reduce partitions from batch (\\d+); state (\\w+)"));
    EXPECT_TRUE(found) << out;
    return found ? std::stoll(m[1]) : -1;
  }

  // Waits for the first committed batch of `job` at `n` partitions (at or
  // after `from`); returns the time it took since `since`, in ms.
  int64_t WaitForCount(const std::string& job, int n, int64_t from, std::chrono::steady_clock::time_point since,
                       milliseconds bound) {
    const bool done = testing::WaitUntil(
        [&] {
          std::optional<proto::JobInfo> info = Describe(job);
          return info && info->last_committed_batch() >= from && info->state_partitions() == n;
        },
        bound + milliseconds(30'000), milliseconds(50));
    const int64_t ms =
        std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - since).count();
    std::optional<proto::JobInfo> info = Describe(job);
    EXPECT_TRUE(done) << job << ": no batch committed with " << n << " partitions; "
                      << (info ? info->ShortDebugString() : "no leader");
    EXPECT_EQ(info ? info->state() : "", "running") << (info ? info->stop_reason() : "");
    EXPECT_LT(ms, bound.count()) << job << ": the first batch with " << n << " reduce partitions took too long";
    std::printf("[rescale] %s -> %d partitions: first batch with the new count (>= %lld) committed %lld ms after "
                "the command returned\n",
                job.c_str(), n, static_cast<long long>(from), static_cast<long long>(ms));
    return ms;
  }

  // Per batch of `job`, the highest output partition written.
  std::map<int64_t, int> HighestPartByBatch(const std::string& dir) {
    std::map<int64_t, int> out;
    for (const auto& f : std::filesystem::directory_iterator(dir)) {
      const std::string name = f.path().filename().string();
      if (name.starts_with(".")) continue;
      int& p = out[testing::BatchOfFile(name)];
      p = std::max(p, PartOfFile(name));
    }
    return out;
  }

  TempDir dir_{"rescale"};
  std::unique_ptr<LocalCluster> cluster_;
  int runs_ = 0;
};

TEST_F(RescaleTest, RunningWordCountRescaled4To8To2AndWithALeaderKillKeepsExactTotals) {
  auto cluster = LocalCluster::Start(
      {.dir = dir_.path(), .drivers = 3, .workers = 3, .kafka_topics = {{"lines", 4}}});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  cluster_ = std::move(*cluster);

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
  - {{name: lines, kind: kafka, brokers: {}, topic: lines, start: earliest}}
operators:
  - parse: {{format: raw}}
  - flat_map: {{split: line, separator: " ", as: word}}
  - key_by: word
)",
                                         cluster_->kafka()->bootstrap());
  ASSERT_NO_FATAL_FAILURE(Submit("totals", "batch_interval: 500ms\n" + source +
                                               "  - update_state: {running: [{fn: count, as: total}]}\n"
                                               "sink:\n  file: {path: " + dir_.Sub("totals") + "}\n"));
  ASSERT_NO_FATAL_FAILURE(Submit("counts", "batch_interval: 1s\n" + source + "  - aggregate: [{fn: count}]\n"
                                               "sink:\n  file: {path: " + dir_.Sub("counts") + "}\n"));
  auto producer = testing::Subprocess::Start(
      {testing::kKafkaToolPath, "produce", "--brokers", cluster_->kafka()->bootstrap(), "--topic", "lines",
       "--count", std::to_string(kLines), "--rate", std::to_string(kRate), "--lines", lines_file},
      {.log_path = dir_.Sub("producer.log")});
  ASSERT_TRUE(producer.ok()) << producer.status();
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        std::optional<proto::JobInfo> t = Describe("totals");
        return t && t->state_keys() > 100 && t->last_committed_batch() >= 4;
      },
      milliseconds(60'000), milliseconds(200)))
      << "the running count never got going";

  // Mistakes, and a dry run, change nothing.
  EXPECT_EQ(Ctl({"rescale", "totals", "0"}), 2);
  EXPECT_THAT(LastCtlLog(), ::testing::HasSubstr("rescale totals 0: reduce_partitions must be in 1..1024"));
  EXPECT_EQ(Ctl({"rescale", "totals", "1025"}), 2);
  EXPECT_NE(Ctl({"rescale", "totals", "4"}), 0);
  EXPECT_THAT(LastCtlLog(), ::testing::HasSubstr("nothing to update"));
  EXPECT_EQ(Ctl({"rescale", "totals", "16", "--dry-run"}), 0) << LastCtlLog();
  EXPECT_THAT(LastCtlLog(), ::testing::HasSubstr("would be rescaled from 4 to 16 reduce partitions"));
  ASSERT_TRUE(Describe("totals"));
  EXPECT_EQ(Describe("totals")->spec().reduce_partitions(), 4) << "a dry run changed the job";

  // Each step while the input flows: both jobs rescaled, the first batch of
  // each with its new count committed within the bound.
  std::map<std::string, std::vector<std::pair<int64_t, int>>> steps;  // job -> (first batch, count)
  for (int n : {8, 2}) {
    for (const std::string job : {"totals", "counts"}) {
      const auto since = std::chrono::steady_clock::now();
      const int64_t from = Rescale(job, n);
      ASSERT_GT(from, 0);
      steps[job].emplace_back(from, n);
      WaitForCount(job, n, from, since, milliseconds(10'000));
    }
    std::this_thread::sleep_for(seconds(4));
  }
  // 2 -> 3 with the leader killed at once: the re-split happens under the
  // new leader (or again, if the old one had started it).
  {
    const int leader = cluster_->LeaderIndex();
    ASSERT_GE(leader, 0);
    const auto since = std::chrono::steady_clock::now();
    const int64_t from = Rescale("totals", 3);
    ASSERT_GT(from, 0);
    cluster_->KillDriver(leader);
    steps["totals"].emplace_back(from, 3);
    WaitForCount("totals", 3, from, since, milliseconds(30'000));
    ASSERT_TRUE(cluster_->StartDriver(leader).ok());
  }

  Result<int> produced = (*producer)->Wait(seconds(120));
  ASSERT_TRUE(produced.ok() && *produced == 0) << testing::ReadFile(dir_.Sub("producer.log")).value_or("");
  for (const std::string job : {"totals", "counts"}) {
    // One answer is checked: a standby answers too, from its replicated
    // state, which may be a batch behind the leader's.
    std::optional<proto::JobInfo> info;
    ASSERT_TRUE(testing::WaitUntil(
        [&] {
          info = Describe(job);
          return info && (info->total_input() >= kLines || info->state() != "running");
        },
        milliseconds(90'000), milliseconds(250)));
    ASSERT_TRUE(info);
    ASSERT_EQ(info->state(), "running") << info->stop_reason();
    EXPECT_EQ(info->total_input(), kLines) << job;
    ASSERT_EQ(Ctl({"stop", job}), 0) << LastCtlLog();
  }

  // Running totals: per word, growing from batch to batch, one line per
  // batch at most, the last one the word's count.
  std::map<std::string, int64_t> last;
  std::map<std::string, int64_t> last_batch;
  int64_t bad = 0;
  for (const auto& [batch, line] : OutputLines(dir_.Sub("totals"))) {
    const std::string word = KeyOf(line);
    const int64_t total = NumberOf(FieldOf(line, "total"));
    if (last.contains(word) && (total <= last[word] || batch <= last_batch[word]) && bad++ < 5) {
      ADD_FAILURE() << word << ": total " << total << " in batch " << batch << " after " << last[word]
                    << " in batch " << last_batch[word] << " (counted twice, or written twice in one batch)";
    }
    last[word] = total;
    last_batch[word] = batch;
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(last.size(), expected.size());
  int64_t wrong = 0;
  for (const auto& [word, n] : expected) {
    if (last[word] != n && wrong++ < 5) ADD_FAILURE() << "running total of " << word << ": " << last[word] << ", expected " << n;
  }
  EXPECT_EQ(wrong, 0) << "words whose running total is not their count (lost or counted twice)";

  // Per-batch counts: summed, each word's count; a word at most once a batch.
  std::map<std::string, int64_t> counted;
  std::set<std::pair<int64_t, std::string>> seen;
  int64_t doubled = 0;
  for (const auto& [batch, line] : OutputLines(dir_.Sub("counts"))) {
    counted[KeyOf(line)] += NumberOf(FieldOf(line, "count"));
    if (!seen.emplace(batch, KeyOf(line)).second && doubled++ < 5) {
      ADD_FAILURE() << KeyOf(line) << " written twice in batch " << batch;
    }
  }
  EXPECT_EQ(doubled, 0);
  wrong = 0;
  for (const auto& [word, n] : expected) {
    if (counted[word] != n && wrong++ < 5) ADD_FAILURE() << "count of " << word << ": " << counted[word] << ", expected " << n;
  }
  EXPECT_EQ(wrong, 0);

  // Each batch wrote only the output partitions of its count, and the
  // batches after a rescale to 8 used more than the first 4.
  for (const std::string job : {"totals", "counts"}) {
    const std::map<int64_t, int> parts = HighestPartByBatch(dir_.Sub(job));
    const std::vector<std::pair<int64_t, int>>& s = steps[job];
    int used_beyond_4 = 0;
    for (const auto& [batch, part] : parts) {
      int count = 4;
      for (const auto& [from, n] : s) {
        if (batch >= from) count = n;
      }
      EXPECT_LT(part, count) << job << " batch " << batch << " wrote output partition " << part;
      if (count == 8 && part >= 4) ++used_beyond_4;
    }
    EXPECT_GT(used_beyond_4, 0) << job << ": no batch at 8 partitions wrote past partition 3";
  }

  std::optional<proto::JobInfo> totals = Describe("totals");
  ASSERT_TRUE(totals);
  EXPECT_EQ(totals->state_keys(), static_cast<int64_t>(expected.size())) << "state size in describe";
  EXPECT_EQ(totals->state_partitions(), 3);
  EXPECT_EQ(totals->state_layout(), 3) << "three rescales of a stateful job: three new layouts";
  // The old layouts went from the workers once their successor committed.
  int dropped = 0;
  for (int w = 0; w < 3; ++w) {
    const std::string log = testing::ReadFile(cluster_->worker_log(w)).value_or("");
    for (size_t at = log.find("job totals: dropped state layout"); at != std::string::npos;
         at = log.find("job totals: dropped state layout", at + 1)) {
      ++dropped;
    }
  }
  EXPECT_GE(dropped, 3) << "each of the three old layouts is dropped on at least one worker";

  // A savepoint reads the state of the job's layout: its 3 partitions.
  const std::string sp = dir_.Sub("sp");
  ASSERT_EQ(Ctl({"savepoint", "totals", sp}), 0) << LastCtlLog();
  Result<std::string> manifest = testing::ReadFile(sp + "/MANIFEST.json");
  ASSERT_TRUE(manifest.ok());
  proto::SavepointManifest m;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*manifest, &m).ok()) << *manifest;
  EXPECT_EQ(m.state_files_size(), 3) << *manifest;
  EXPECT_EQ(m.state_keys(), static_cast<int64_t>(expected.size())) << *manifest;
  // Deleting the job drops its current layout from every worker too.
  ASSERT_EQ(Ctl({"delete", "totals"}), 0) << LastCtlLog();
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        for (int w = 0; w < 3; ++w) {
          if (testing::ReadFile(cluster_->worker_log(w)).value_or("").find("job totals: dropped state layout 3") !=
              std::string::npos) {
            return true;
          }
        }
        return false;
      },
      milliseconds(10'000), milliseconds(200)))
      << "the deleted job's layout 3 stayed on the workers";
}

}  // namespace
}  // namespace sluice
