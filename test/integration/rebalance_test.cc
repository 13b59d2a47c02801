// Reduce partitions follow the workers as they join and leave, on a cluster
// of real processes (ZooKeeper, driverd, workerd, the Kafka mock):
//
// A running word count (update_state running totals, reduce_partitions 8)
// runs on 2 workers under continuous input. A 3rd and then a 4th worker are
// started: the leader moves partitions to each by itself (warm copy, then
// replica, then owner) and each owns some within a few batches. Then worker-2
// is drained (sluicectl worker drain worker-2 --wait) and stopped. The last
// running total of every word equals its count computed here, and every
// word's totals increase from batch to batch: nothing lost or applied twice.
// The time from each change to the next committed batch, and until a new
// worker owns partitions, is printed and bounded. A move copies the state to
// its target before it takes effect, so that the target, once replica,
// catches up on the changes since that copy: the workers' counts of copies
// to a replica by kind show, from the 3rd worker's start, at most one whole
// copy (the rest: the delta alone, or the changes since the warm when a batch
// committed in between).
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "lib/rpc/driver_client.h"
#include "test/harness/http_get.h"
#include "test/harness/local_cluster.h"
#include "test/harness/metrics_text.h"
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

constexpr int64_t kLines = 240'000;
constexpr int64_t kRate = 4'000;  // lines/s: a minute of input
constexpr int kDistinctLines = 1'000;
constexpr int kPartitions = 8;

std::string LineOf(int i) {
  std::string line = fmt::format("w{} v{} u{}", (i * 7) % 503, (i * 13) % 97, i % 11);
  if (i % 3 == 0) line += fmt::format(" w{}", (i * 31) % 503);
  return line;
}

int64_t NumberOf(std::string_view s) { return std::strtoll(std::string(s).c_str(), nullptr, 10); }

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

class RebalanceTest : public ::testing::Test {
 protected:
  int Ctl(std::vector<std::string> args, seconds timeout = seconds(30)) {
    return cluster_->Sluicectl(args, dir_.Sub("ctl" + std::to_string(runs_++) + ".log"), timeout);
  }
  std::string LastCtlLog() {
    return testing::ReadFile(dir_.Sub("ctl" + std::to_string(runs_ - 1) + ".log")).value_or("");
  }
  std::optional<proto::JobInfo> Describe() { return cluster_->DescribeJob("totals"); }
  int64_t Committed() {
    std::optional<proto::JobInfo> info = Describe();
    return info ? info->last_committed_batch() : -1;
  }
  // Owned reduce partitions per worker, as the WAL records them.
  std::map<std::string, int> Owners() {
    std::map<std::string, int> n;
    if (std::optional<proto::JobInfo> info = Describe()) {
      for (const proto::ReducePartitionInfo& p : info->reduce_partitions()) ++n[p.owner()];
    }
    return n;
  }
  std::string Placement() {
    std::string out;
    if (std::optional<proto::JobInfo> info = Describe()) {
      for (const proto::ReducePartitionInfo& p : info->reduce_partitions()) {
        out += fmt::format(" {}:{}(+{}){}", p.partition(), p.owner(), p.replica(),
                           p.moving_to().empty() ? "" : "->" + p.moving_to());
      }
    }
    return out;
  }
  // Seconds from `since` until a batch after `batch` commits; bounded.
  double NextCommit(int64_t batch, std::chrono::steady_clock::time_point since, const std::string& what) {
    bool ok = testing::WaitUntil([&] { return Committed() > batch; }, milliseconds(20'000), milliseconds(50));
    const double s = Since(since);
    EXPECT_TRUE(ok) << what << ": no batch committed after " << batch << " within 20 s";
    std::cout << what << ": next batch committed " << fmt::format("{:.2f}", s) << " s after the change\n";
    EXPECT_LT(s, 10.0) << what;
    return s;
  }
  // Seconds until `worker` owns at least one reduce partition; bounded.
  double UntilOwns(const std::string& worker, std::chrono::steady_clock::time_point since) {
    bool ok = testing::WaitUntil([&] { return Owners()[worker] > 0; }, milliseconds(40'000), milliseconds(100));
    const double s = Since(since);
    EXPECT_TRUE(ok) << worker << " owns no reduce partition 40 s after joining:" << Placement();
    std::cout << worker << " owns reduce partitions " << fmt::format("{:.2f}", s) << " s after it started:"
              << Placement() << "\n";
    return s;
  }

  // The sum over workers 0..n-1 of their copies to a replica of `kind`.
  double ReplicaCopies(int n, const std::string& kind) {
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      Result<testing::HttpReply> got = testing::HttpGet(cluster_->worker_http_address(i), "/metrics");
      EXPECT_TRUE(got.ok()) << got.status();
      if (got.ok()) sum += testing::ParseMetrics(got->body).Sum("sluice_state_replica_copies_total", {{"kind", kind}});
    }
    return sum;
  }

  TempDir dir_{"rebalance"};
  std::unique_ptr<LocalCluster> cluster_;
  int runs_ = 0;
};

TEST_F(RebalanceTest, PartitionsFollowJoiningAndDrainedWorkersWithExactTotals) {
  auto cluster = LocalCluster::Start(
      {.dir = dir_.path(), .drivers = 1, .workers = 2, .kafka_topics = {{"lines", 4}}, .http = true});
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
  const std::string job = dir_.Sub("totals.yaml");
  ASSERT_TRUE(testing::WriteFile(job, fmt::format(R"(name: totals
batch_interval: 500ms
max_task_failures: 6
reduce_partitions: {}
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
  - update_state: {{running: [{{fn: count, as: total}}]}}
sink:
  file: {{path: {}}}
)",
                                                  kPartitions, cluster_->kafka()->bootstrap(), dir_.Sub("totals")))
                  .ok());
  ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"list"}) == 0; }, milliseconds(20'000), milliseconds(200)));
  ASSERT_EQ(Ctl({"submit", job}), 0) << LastCtlLog();
  auto producer = testing::Subprocess::Start(
      {testing::kKafkaToolPath, "produce", "--brokers", cluster_->kafka()->bootstrap(), "--topic", "lines", "--count",
       std::to_string(kLines), "--rate", std::to_string(kRate), "--lines", lines_file},
      {.log_path = dir_.Sub("producer.log")});
  ASSERT_TRUE(producer.ok()) << producer.status();
  ASSERT_TRUE(testing::WaitUntil([&] { return Committed() >= 5 && Owners().size() == 2; }, milliseconds(30'000),
                                 milliseconds(100)))
      << Placement();
  std::cout << "2 workers:" << Placement() << "\n";
  // Each replica's first copy was whole (of an empty state): counted from here.
  const double whole_before = ReplicaCopies(2, "whole");

  // A 3rd and a 4th worker: each gets its share without any command.
  for (const std::string name : {"worker-3", "worker-4"}) {
    const int64_t before = Committed();
    const auto started = std::chrono::steady_clock::now();
    Result<int> added = cluster_->AddWorker();
    ASSERT_TRUE(added.ok()) << added.status();
    ASSERT_EQ(cluster_->worker_id(*added), name);
    NextCommit(before, started, name + " joined");
    const double owns = UntilOwns(name, started);
    EXPECT_LT(owns, 30.0) << name;
  }
  // Balanced within one: 8 owners over 4 workers is 2 each.
  const bool balanced = testing::WaitUntil(
      [&] {
        std::map<std::string, int> n = Owners();
        return n.size() == 4 && std::all_of(n.begin(), n.end(), [](const auto& e) { return e.second == 2; });
      },
      milliseconds(40'000), milliseconds(200));
  EXPECT_TRUE(balanced) << Placement();
  std::cout << "4 workers:" << Placement() << "\n";
  ASSERT_EQ(Ctl({"describe", "totals"}), 0) << LastCtlLog();
  EXPECT_NE(LastCtlLog().find("reduce partitions (owner (+replica)):"), std::string::npos) << LastCtlLog();
  EXPECT_NE(LastCtlLog().find(" 0: worker-"), std::string::npos) << LastCtlLog();

  // Drain worker-2, then stop it.
  const auto drain_started = std::chrono::steady_clock::now();
  ASSERT_EQ(Ctl({"worker", "drain", "worker-2", "--wait", "--wait-timeout", "60"}, seconds(90)), 0) << LastCtlLog();
  const double drained = Since(drain_started);
  std::cout << "worker-2 drained in " << fmt::format("{:.2f}", drained) << " s: " << LastCtlLog();
  EXPECT_LT(drained, 60.0);
  EXPECT_NE(LastCtlLog().find("holds nothing"), std::string::npos) << LastCtlLog();
  // Status marks it, and only it, until it leaves.
  ASSERT_EQ(Ctl({"status"}), 0) << LastCtlLog();
  {
    std::istringstream status(LastCtlLog());
    int marked = 0;
    for (std::string line; std::getline(status, line);) {
      if (line.find("DRAINING") == std::string::npos) continue;
      ++marked;
      EXPECT_NE(line.find("worker-2"), std::string::npos) << line;
    }
    EXPECT_EQ(marked, 1) << LastCtlLog();
  }
  std::optional<proto::JobInfo> after_drain = Describe();
  ASSERT_TRUE(after_drain);
  for (const proto::ReducePartitionInfo& p : after_drain->reduce_partitions()) {
    EXPECT_NE(p.owner(), "worker-2") << Placement();
    EXPECT_NE(p.replica(), "worker-2") << Placement();
  }
  // Every move so far warmed its target: its copy as a replica came as the
  // changes since the warm, not whole (one whole copy is allowed: a warm
  // that found the owner already past its batch copied from the replica).
  const double whole = ReplicaCopies(4, "whole") - whole_before, changes = ReplicaCopies(4, "changes");
  std::cout << "copies to a replica since the 3rd worker joined: " << changes << " with the changes since a warm, "
            << whole << " whole (" << ReplicaCopies(4, "delta") << " deltas alone in all)\n";
  EXPECT_LE(whole, 1);
  const auto stopped = std::chrono::steady_clock::now();
  {
    const int64_t before = Committed();
    cluster_->StopWorker(1);
    NextCommit(before, stopped, "worker-2 stopped after its drain");
  }
  // Its mark goes once it has been gone 10 s (not on one absent tick: a
  // worker whose session expired registers again, still drained); the same
  // id started again then takes work.
  const auto drained_mark = [&] {
    const int leader = cluster_->LeaderIndex();
    if (leader < 0) return std::optional<bool>();
    proto::DrainWorkerRequest request;
    request.set_worker_id("worker-2");
    request.set_status_only(true);
    Result<proto::DrainWorkerResponse> got =
        rpc::DriverClient(testing::Channels(), cluster_->driver_address(leader)).DrainWorker(request);
    return got.ok() && !got->live() ? std::optional<bool>(got->draining()) : std::optional<bool>();
  };
  std::this_thread::sleep_for(seconds(3));
  EXPECT_EQ(drained_mark(), std::optional<bool>(true)) << "the mark went 3 s after worker-2 left";
  const bool cleared = testing::WaitUntil([&] { return drained_mark() == std::optional<bool>(false); },
                                          milliseconds(20'000), milliseconds(200));
  EXPECT_TRUE(cleared) << "the drain mark of worker-2 stayed after it left";
  std::cout << "worker-2's drain mark cleared " << fmt::format("{:.1f}", Since(stopped)) << " s after it stopped\n";

  Result<int> produced = (*producer)->Wait(seconds(180));
  ASSERT_TRUE(produced.ok() && *produced == 0) << testing::ReadFile(dir_.Sub("producer.log")).value_or("");
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        std::optional<proto::JobInfo> info = Describe();
        return info && (info->total_input() >= kLines || info->state() != "running");
      },
      milliseconds(120'000), milliseconds(250)));
  std::optional<proto::JobInfo> info = Describe();
  ASSERT_TRUE(info);
  ASSERT_EQ(info->state(), "running") << info->stop_reason();
  EXPECT_EQ(info->total_input(), kLines);
  ASSERT_EQ(Ctl({"stop", "totals"}), 0) << LastCtlLog();

  std::map<std::string, int64_t> last, last_batch;
  int64_t not_increasing = 0;
  for (const auto& [batch, line] : OutputLines(dir_.Sub("totals"))) {
    const std::string word = KeyOf(line);
    const int64_t total = NumberOf(FieldOf(line, "total"));
    if (last.contains(word) && (total <= last[word] || batch <= last_batch[word]) && not_increasing++ < 5) {
      ADD_FAILURE() << word << ": total " << total << " in batch " << batch << " after " << last[word] << " in batch "
                    << last_batch[word];
    }
    last[word] = total;
    last_batch[word] = batch;
  }
  EXPECT_EQ(not_increasing, 0);
  int64_t wrong = 0;
  for (const auto& [word, n] : expected) {
    if (last[word] != n && wrong++ < 5) ADD_FAILURE() << "running total of " << word << ": " << last[word] << ", expected " << n;
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(last.size(), expected.size());
}

}  // namespace
}  // namespace sluice
