// The rolling-upgrade drill (docs/upgrade.md): a cluster of real processes
// (ZooKeeper, 3 driverd, 2 workerd) runs two jobs under load — ids (file
// sink, every event's id) and counts (keyed, state, file sink) — while every
// daemon is restarted, one at a time, with the "new" build: driverd_next and
// workerd_next, this source with every format and protocol number one higher
// (lib/common/version.h, SLUICE_VERSION_BUMP). The standbys first, then the
// leader, then each worker; each back and the jobs committing again before
// the next. So a new daemon reads the data directory the old one wrote (WAL,
// state store, block log: format N-1), and N and N+1 peers talk in both
// directions (protocol) while the cluster is mixed.
//
// Checked and printed: the longest time between two committed batches of
// each job during the whole drill, against the failover bound; exactly-once
// of both outputs (no id lost or doubled; each key's count equals the
// events committed); sluicectl status naming the mixed versions; and a
// caller of a protocol two ahead refused with FAILED_PRECONDITION.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "lib/common/version.h"
#include "lib/ctl/drill.h"
#include "lib/rpc/channel_cache.h"
#include "proto/driver.grpc.pb.h"
#include "test/harness/local_cluster.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;
using ::testing::HasSubstr;

constexpr int kSessionTimeoutMs = 4000;
constexpr int kBatchMs = 1000;
// How long a job may go without a commit: a failover's (the session
// timeout, 2 s to elect and catch up, two batches), which a planned restart
// must never exceed.
constexpr int64_t kBoundMs = kSessionTimeoutMs + 2000 + 2 * kBatchMs;
constexpr int kPartitions = 4;

const std::vector<std::string> kJobs = {"upgrade-ids", "upgrade-counts"};

std::string IdsJob(const std::string& out) {
  return fmt::format(R"(name: upgrade-ids
batch_interval: {}ms
sources:
  - name: ticks
    kind: generator
    partitions: {}
    rate: 2500
    keys: 40
operators:
  - parse: {{format: json}}
  - project: {{fields: [id]}}
sink:
  file: {{path: {}}}
)",
                     kBatchMs, kPartitions, out);
}

std::string CountsJob(const std::string& out) {
  return fmt::format(R"(name: upgrade-counts
batch_interval: {}ms
sources: [ticks]
operators:
  - parse: {{format: json}}
  - key_by: key
  - update_state: {{running: [{{fn: count, as: events}}]}}
reduce_partitions: 4
sink:
  file: {{path: {}}}
)",
                     kBatchMs, out);
}

// Polls both jobs every 100 ms; keeps, per job, the longest time between
// two observed advances of its last committed batch, overall and per step.
class CommitWatch {
 public:
  explicit CommitWatch(LocalCluster& c) : c_(c), thread_([this] { Run(); }) {}
  ~CommitWatch() { Stop(); }

  void Step(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    step_ = name;
    steps_.push_back(name);
  }
  int64_t Committed(const std::string& job) {
    std::lock_guard<std::mutex> lock(mu_);
    return last_[job].batch;
  }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [job, l] : last_) Gap(job, Steady::now() - l.at);  // a job still waiting
  }
  int64_t LongestGapMs(const std::string& job) {
    std::lock_guard<std::mutex> lock(mu_);
    return longest_[job];
  }
  void Print(std::ostream& out) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& step : steps_) {
      out << "  " << std::left << std::setw(34) << step;
      for (const std::string& job : kJobs) out << " " << job << " " << by_step_[step][job] << " ms";
      out << "\n";
    }
  }

 private:
  struct Last {
    int64_t batch = -1;
    Steady::time_point at;
  };
  void Gap(const std::string& job, Steady::duration d) {
    const int64_t ms = std::chrono::duration_cast<milliseconds>(d).count();
    longest_[job] = std::max(longest_[job], ms);
    by_step_[step_][job] = std::max(by_step_[step_][job], ms);
  }
  void Run() {
    while (!stop_.load()) {
      for (const std::string& job : kJobs) {
        std::optional<proto::JobInfo> info = c_.DescribeJob(job);
        if (!info) continue;
        const auto now = Steady::now();
        std::lock_guard<std::mutex> lock(mu_);
        Last& l = last_[job];
        if (info->last_committed_batch() > l.batch) {
          if (l.batch >= 0) Gap(job, now - l.at);
          l = {info->last_committed_batch(), now};
        }
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
  }

  LocalCluster& c_;
  std::mutex mu_;
  std::string step_ = "start";
  std::vector<std::string> steps_ = {"start"};
  std::map<std::string, Last> last_;
  std::map<std::string, int64_t> longest_;
  std::map<std::string, std::map<std::string, int64_t>> by_step_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

void ForEachLine(const std::string& dir, const std::function<void(const std::string&, std::string_view)>& f) {
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || !e.is_regular_file()) continue;
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) f(name, line);
  }
}

class UpgradeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = LocalCluster::Start({.dir = dir_.path(), .drivers = 3, .workers = 2,
                                        .zk_session_timeout_ms = kSessionTimeoutMs});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    c_ = std::move(*cluster);
    ASSERT_TRUE(WaitUntil([&] { return c_->Sluicectl({"list"}, dir_.Sub("list.log")) == 0; }, milliseconds(20'000),
                          milliseconds(200)));
    ASSERT_TRUE(WriteFile(dir_.Sub("ids.yaml"), IdsJob(dir_.Sub("ids"))).ok());
    ASSERT_TRUE(WriteFile(dir_.Sub("counts.yaml"), CountsJob(dir_.Sub("counts"))).ok());
    for (const char* job : {"ids.yaml", "counts.yaml"}) {
      ASSERT_EQ(c_->Sluicectl({"submit", dir_.Sub(job)}, dir_.Sub("submit.log")), 0)
          << ReadFile(dir_.Sub("submit.log")).value_or("");
    }
  }

  // Until every job has committed `batches` more batches than now.
  bool Progress(CommitWatch& watch, int batches, milliseconds timeout) {
    std::map<std::string, int64_t> from;
    for (const std::string& job : kJobs) from[job] = watch.Committed(job);
    return WaitUntil(
        [&] {
          for (const std::string& job : kJobs) {
            if (watch.Committed(job) < from[job] + batches) return false;
          }
          return true;
        },
        timeout, milliseconds(100));
  }

  std::string Status() {
    const std::string log = dir_.Sub("status.log");
    std::filesystem::remove(log);
    c_->Sluicectl({"status"}, log);
    return ReadFile(log).value_or("");
  }

  TempDir dir_{"upgrade"};
  std::unique_ptr<LocalCluster> c_;
};

TEST_F(UpgradeTest, EveryDaemonRestartedOneByOneWithTheNextBuildWhileJobsCommitExactlyOnce) {
  CommitWatch watch(*c_);
  ASSERT_TRUE(Progress(watch, 3, milliseconds(60'000))) << "the jobs never committed";
  const std::string next = std::string(kVersion) + "+next";
  const int next_protocol = version::kProtocol + 1;

  // The plan: the standbys, then the leader, then each worker (docs/upgrade.md).
  const int leader = c_->LeaderIndex();
  ASSERT_GE(leader, 0);
  std::vector<int> drivers;
  for (int i = 0; i < c_->num_drivers(); ++i) {
    if (i != leader) drivers.push_back(i);
  }
  drivers.push_back(leader);
  bool saw_mixed = false;
  for (int i : drivers) {
    const std::string step = fmt::format("restart {}{}", c_->driver_id(i), i == leader ? " (leader)" : "");
    watch.Step(step);
    const auto t0 = Steady::now();
    EXPECT_EQ(c_->StopDriver(i), 0) << c_->driver_id(i);
    c_->SetDriverBinary(i, SLUICE_DRIVERD_NEXT);
    ASSERT_TRUE(c_->StartDriver(i).ok()) << c_->driver_id(i);
    Result<proto::DriverStatus> st = GetDriverStatus(c_->driver_address(i), milliseconds(2000));
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_EQ(st->process().version(), next);
    EXPECT_EQ(st->process().protocol(), next_protocol);
    // Ready: a serving leader, and both jobs committing again.
    ASSERT_TRUE(WaitUntil([&] { return c_->LeaderIndex() >= 0; }, milliseconds(30'000), milliseconds(100)));
    ASSERT_TRUE(Progress(watch, 2, milliseconds(60'000))) << "the jobs stopped after " << step;
    std::cout << step << ": back, jobs committing, after "
              << std::chrono::duration_cast<milliseconds>(Steady::now() - t0).count() << " ms\n";
    if (!saw_mixed) {
      const std::string status = Status();
      if (status.find("mixed versions:") != std::string::npos) {
        saw_mixed = true;
        std::cout << "sluicectl status, mixed:\n" << status;
        EXPECT_THAT(status, HasSubstr(fmt::format("protocol={}", next_protocol)));
        EXPECT_THAT(status, HasSubstr(fmt::format("protocol={}", version::kProtocol)));
      }
    }
  }
  EXPECT_TRUE(saw_mixed) << "sluicectl status never showed the mixed cluster";
  for (int i = 0; i < c_->num_workers(); ++i) {
    const std::string step = "restart " + c_->worker_id(i);
    watch.Step(step);
    const auto t0 = Steady::now();
    EXPECT_EQ(c_->StopWorker(i), 0) << c_->worker_id(i);
    c_->SetWorkerBinary(i, SLUICE_WORKERD_NEXT);
    ASSERT_TRUE(c_->StartWorker(i).ok()) << c_->worker_id(i);
    Result<proto::WorkerStatus> st = GetWorkerStatus(c_->worker_address(i), milliseconds(2000));
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_EQ(st->process().protocol(), next_protocol);
    ASSERT_TRUE(Progress(watch, 2, milliseconds(60'000))) << "the jobs stopped after " << step;
    std::cout << step << ": back, jobs committing, after "
              << std::chrono::duration_cast<milliseconds>(Steady::now() - t0).count() << " ms\n";
  }
  watch.Step("all on the next build");
  ASSERT_TRUE(Progress(watch, 3, milliseconds(30'000)));
  const std::string status = Status();
  std::cout << "sluicectl status, upgraded:\n" << status;
  EXPECT_THAT(status, ::testing::Not(HasSubstr("mixed versions")));

  // A caller two protocols ahead is refused, naming both.
  {
    std::shared_ptr<grpc::Channel> channel = Channels().Get(c_->driver_address(c_->LeaderIndex()));
    auto stub = proto::DriverService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(5000));
    ctx.AddMetadata(std::string(version::kProtocolHeader), std::to_string(next_protocol + 2));
    proto::ListJobsRequest request;
    proto::ListJobsResponse response;
    grpc::Status refused = stub->ListJobs(&ctx, request, &response);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << refused.error_message();
    EXPECT_THAT(refused.error_message(), HasSubstr(fmt::format("protocol {}", next_protocol + 2)));
    EXPECT_THAT(refused.error_message(), HasSubstr(fmt::format("speaks protocol {}", next_protocol)));
    std::cout << "a caller of protocol " << next_protocol + 2 << ": " << refused.error_message() << "\n";
  }
  watch.Stop();

  // Liveness: the longest time without a commit, against the bound.
  std::cout << "longest time between committed batches, per step (bound " << kBoundMs << " ms):\n";
  watch.Print(std::cout);
  for (const std::string& job : kJobs) {
    std::cout << job << ": longest gap " << watch.LongestGapMs(job) << " ms over the drill\n";
    EXPECT_LT(watch.LongestGapMs(job), kBoundMs) << job;
  }

  // Safety: exactly once. The positions and batch committed, then the files.
  std::optional<proto::JobInfo> ids = c_->DescribeJob(kJobs[0]);
  std::optional<proto::JobInfo> counts = c_->DescribeJob(kJobs[1]);
  ASSERT_TRUE(ids && counts);
  std::map<int32_t, int64_t> positions;
  for (const proto::SourceOffset& p : ids->positions()) positions[p.partition()] = p.offset();
  std::vector<std::pair<int32_t, int64_t>> seen;
  ForEachLine(dir_.Sub("ids"), [&](const std::string&, std::string_view line) {
    if (auto id = ctl::ParseIdLine(line)) seen.push_back(*id);
  });
  ctl::IdCheck check = ctl::CheckIds(positions, seen);
  std::cout << "ids: " << check.expected << " events committed, " << check.lost << " lost, " << check.duplicated
            << " doubled, " << check.beyond << " beyond the position\n";
  EXPECT_GT(check.expected, 0);
  EXPECT_EQ(check.lost, 0) << ::testing::PrintToString(check.examples);
  EXPECT_EQ(check.duplicated, 0) << ::testing::PrintToString(check.examples);

  // Each key's newest committed count; their sum is every event the
  // committed batches took in (the job may have started past offset 0).
  const int64_t events = counts->total_input() - counts->total_dead_letters();
  std::map<std::string, std::pair<int64_t, int64_t>> newest;  // key -> (batch, count)
  ForEachLine(dir_.Sub("counts"), [&](const std::string& file, std::string_view line) {
    std::optional<int64_t> batch = ctl::BatchOfFile(file);
    std::optional<std::pair<std::string, int64_t>> kv = ctl::ParseCountLine(line);
    if (!batch || !kv || *batch > counts->last_committed_batch()) return;
    auto& [b, n] = newest[kv->first];
    if (*batch >= b) b = *batch, n = kv->second;
  });
  int64_t counted = 0;
  for (const auto& [key, bn] : newest) counted += bn.second;
  std::cout << "counts: " << newest.size() << " keys, " << counted << " events counted of " << events
            << " committed (batch " << counts->last_committed_batch() << ")\n";
  EXPECT_GT(events, 0);
  EXPECT_EQ(counted, events) << "an event counted twice or not at all";
}

}  // namespace
}  // namespace sluice::testing
