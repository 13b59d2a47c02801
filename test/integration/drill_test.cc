// sluicectl drill against a cluster of real processes: a leader kill, a
// worker kill and a leader SIGTERM pass their targets with nothing lost or
// doubled; the leader's ZooKeeper server, paused, is ridden out by an
// ensemble; and the Drill RPC is refused unless the daemon allows drills.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/worker_client.h"
#include "test/harness/certs.h"
#include "test/harness/local_cluster.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// Starts every daemon that exits again, as a service manager would: the
// drill never restarts what it killed.
class Restarter {
 public:
  explicit Restarter(LocalCluster& c) : thread_([this, &c] {
    while (!stop_.load()) {
      for (int i = 0; i < c.num_drivers(); ++i) {
        if (c.driver(i) != nullptr && !c.driver(i)->Running()) {
          EXPECT_TRUE(c.StartDriver(i).ok()) << c.driver_id(i);
          ++restarts_;
        }
      }
      for (int i = 0; i < c.num_workers(); ++i) {
        if (c.worker(i) != nullptr && !c.worker(i)->Running()) {
          EXPECT_TRUE(c.StartWorker(i).ok()) << c.worker_id(i);
          ++restarts_;
        }
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
  }) {}
  ~Restarter() { Stop(); }
  int Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return restarts_.load();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> restarts_{0};
  std::thread thread_;
};

// The short version of the soak run (scripts/soak.sh: a fault every 10 s for
// 5 minutes): every kind of fault once, 8 s apart, at 20,000 events/s, each
// held to its liveness target by the drill's verdict, and exactly-once.
TEST(Drill, EveryFaultInTurnPassesItsTargetWithExactlyOnce) {
  TempDir dir;
  auto c = LocalCluster::Start({.dir = dir.path(), .drivers = 3, .workers = 3, .zk_session_timeout_ms = 4000});
  ASSERT_TRUE(c.ok()) << c.status();
  Restarter restarter(**c);
  const std::string log = dir.Sub("drill.log");
  const int code = (*c)->Sluicectl({"drill", "--fault", "leader-kill,worker-kill,leader-term,worker-pause,leader-pause",
                                    "--interval", "8s", "--rate", "20000", "--output", dir.Sub("probe"), "--json"},
                                   log, std::chrono::seconds(120));
  const int restarts = restarter.Stop();
  const std::string out = ReadFile(log).value_or("");
  EXPECT_EQ(code, 0) << out;
  EXPECT_GE(restarts, 3) << "each fault takes one daemon down";
  // The report is one JSON line on stdout; progress went to stderr.
  EXPECT_THAT(out, HasSubstr(R"("verdict":"PASS")"));
  EXPECT_THAT(out, HasSubstr(R"("session_timeout_ms":4000,"batch_interval_ms":1000)"));
  EXPECT_THAT(out, HasSubstr(R"("fault":"leader-kill","at_ms":)"));
  EXPECT_THAT(out, HasSubstr(R"("fault":"worker-kill","at_ms":)"));
  EXPECT_THAT(out, HasSubstr(R"("fault":"leader-term","at_ms":)"));
  EXPECT_THAT(out, HasSubstr(R"("fault":"worker-pause","at_ms":)"));
  EXPECT_THAT(out, HasSubstr(R"("fault":"leader-pause","at_ms":)"));
  EXPECT_THAT(out, ::testing::ContainsRegex(R"("ids":\{"expected":[1-9][0-9]*,"lost":0,"duplicated":0,)"));
  EXPECT_THAT(out, ::testing::ContainsRegex(R"("counts":\{"keys":100,"events":[1-9][0-9]*,"wrong":0,)"));
  EXPECT_THAT(out, HasSubstr(R"("problems":[])"));
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("probe"))) << "removed without --keep";
}

// Watches processes' states in /proc: how long each was seen stopped (state
// T), so a test checks that a pause was really done, and to whom.
class StopWatcher {
 public:
  explicit StopWatcher(std::vector<int> pids) : pids_(std::move(pids)), thread_([this] {
    std::map<int, std::chrono::steady_clock::time_point> since;
    while (!stop_.load()) {
      const auto now = std::chrono::steady_clock::now();
      for (int pid : pids_) {
        std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
        std::string stat;
        std::getline(in, stat);
        const size_t paren = stat.rfind(')');
        const bool stopped = paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'T';
        std::lock_guard<std::mutex> lock(mu_);
        if (stopped && since.count(pid) == 0) since[pid] = now;
        if (stopped) longest_ms_[pid] = std::max<int64_t>(
            longest_ms_[pid], std::chrono::duration_cast<milliseconds>(now - since[pid]).count());
        if (!stopped) since.erase(pid);
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }) {}
  ~StopWatcher() { Stop(); }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  // pid -> the longest it was seen stopped (only pids seen stopped at all).
  std::map<int, int64_t> Stopped() {
    std::lock_guard<std::mutex> lock(mu_);
    return longest_ms_;
  }

 private:
  const std::vector<int> pids_;
  std::mutex mu_;
  std::map<int, int64_t> longest_ms_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// zk-server-loss on a 3-server ensemble: the server the leader's session is
// on is paused for 3 s. A follower's pause leaves a quorum, so every job's
// next batch must commit within T + 2 s + 2B = 8 s; the ensemble leader's
// stops every session's clock, an outage: 3 s more. Exactly once either way.
// The watcher checks independently that the drill did pause that server's
// process, and no other. (A pause of the ensemble's leader longer than T
// expires every session; docs/drills.md has such a run.)
TEST(Drill, ZkServerLossOnAnEnsembleIsRiddenOutExactlyOnce) {
  TempDir dir;
  auto c = LocalCluster::Start(
      {.dir = dir.path(), .zk_servers = 3, .drivers = 2, .workers = 2, .zk_session_timeout_ms = 4000});
  ASSERT_TRUE(c.ok()) << c.status();
  LocalCluster& cluster = **c;
  std::vector<int> zk_pids;
  std::map<int, std::string> zk_address;  // pid -> its client address
  for (int i = 0; i < cluster.zk().size(); ++i) {
    zk_pids.push_back(cluster.zk().server_pid(i));
    zk_address[zk_pids.back()] = "127.0.0.1:" + std::to_string(cluster.zk().client_port(i));
  }
  // Every driver says which server its session is on.
  for (int i = 0; i < cluster.num_drivers(); ++i) {
    Result<proto::DriverStatus> st = GetDriverStatus(cluster.driver_address(i));
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_THAT(cluster.zk().connect_string(), HasSubstr(st->zk_server())) << cluster.driver_id(i);
    EXPECT_FALSE(st->zk_server().empty()) << cluster.driver_id(i);
  }

  StopWatcher watcher(zk_pids);
  const std::string log = dir.Sub("drill.log");
  const int code = cluster.Sluicectl({"drill", "--fault", "zk-server-loss:3s", "--interval", "6s", "--rate", "4000",
                                      "--output", dir.Sub("probe"), "--json"},
                                     log, std::chrono::seconds(90));
  watcher.Stop();
  const std::string out = ReadFile(log).value_or("");
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr(R"("verdict":"PASS")"));
  EXPECT_THAT(out, HasSubstr(R"("skipped":0,"zk_servers":3})"));
  // Liveness: the target is T + 2 s + 2B (the ensemble keeps its quorum), and
  // each job's next batch came within it.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      out, m,
      std::regex(R"re("fault":"zk-server-loss:3s","at_ms":\d+,"target_ms":(\d+),"victim":"([0-9.:]+)","delivery":"SIGSTOP to pid (\d+), SIGCONT after 3000 ms)re")))
      << out;
  const int target = std::stoi(m[1].str());
  const std::string victim = m[2].str();
  const int paused_pid = std::stoi(m[3].str());
  std::smatch mode;
  ASSERT_TRUE(std::regex_search(out, mode, std::regex(R"re("verdict":"PASS","skipped":"","zk_server":"([0-9.:]+)","zk_mode":"(leader|follower)")re")))
      << out;
  EXPECT_EQ(mode[1].str(), victim);
  EXPECT_EQ(target, mode[2].str() == "leader" ? 3000 + 8000 : 8000) << "as the server's mode says";
  std::smatch commits;
  ASSERT_TRUE(std::regex_search(out, commits, std::regex(R"re("next_commit_ms":\{"[^"]+-ids":(\d+),"[^"]+-counts":(\d+)\})re")))
      << out;
  EXPECT_LE(std::stoi(commits[1].str()), target);
  EXPECT_LE(std::stoi(commits[2].str()), target);
  // The pause was done, to the server the drill names, for about its duration.
  ASSERT_EQ(zk_address.count(paused_pid), 1u) << "pid " << paused_pid << " is not a ZooKeeper server of the cluster";
  EXPECT_EQ(zk_address[paused_pid], victim);
  const std::map<int, int64_t> stopped = watcher.Stopped();
  ASSERT_EQ(stopped.size(), 1u) << "exactly one ZooKeeper server was seen stopped";
  EXPECT_EQ(stopped.begin()->first, paused_pid);
  EXPECT_GE(stopped.begin()->second, 2500);
  EXPECT_LE(stopped.begin()->second, 4000);
  // Safety: exactly once.
  EXPECT_THAT(out, ::testing::ContainsRegex(R"("ids":\{"expected":[1-9][0-9]*,"lost":0,"duplicated":0,)"));
  EXPECT_THAT(out, ::testing::ContainsRegex(R"("counts":\{"keys":100,"events":[1-9][0-9]*,"wrong":0,)"));
  EXPECT_THAT(out, HasSubstr(R"("problems":[])"));
  // Continued: none is left stopped.
  for (int pid : zk_pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    std::getline(in, stat);
    EXPECT_NE(stat.substr(stat.rfind(')') + 2, 1), "T") << "pid " << pid << " still stopped";
  }
}

// With every daemon on a host of its own (a network namespace), the leader's
// ZooKeeper server is not on the drill's host: zk-server-loss is SKIPPED with
// the reason, pauses nothing, and does not fail the drill.
TEST(Drill, ZkServerLossElsewhereIsSkippedNotFailed) {
  if (Status why = NetnsHosts::Available(); !why.ok()) {
    GTEST_SKIP() << "cannot simulate hosts with network namespaces: " << why.message();
  }
  TempDir dir;
  auto c = LocalCluster::Start({.dir = dir.path(), .drivers = 1, .workers = 1, .zk_session_timeout_ms = 4000,
                                .separate_hosts = true});
  ASSERT_TRUE(c.ok()) << c.status();
  StopWatcher watcher({(*c)->zk().server_pid(0)});
  const std::string log = dir.Sub("drill.log");
  const int code = (*c)->Sluicectl(
      {"drill", "--fault", "zk-server-loss", "--interval", "2s", "--output", dir.Sub("probe")}, log,
      std::chrono::seconds(60));
  watcher.Stop();
  const std::string out = ReadFile(log).value_or("");
  EXPECT_EQ(code, 0) << out;
  EXPECT_TRUE(std::regex_search(
      out, std::regex(R"re(SKIPPED\n     skipped: ZooKeeper server [0-9.]+:[0-9]+ \(driver-1's session is on it\) )re"
                      R"re(does not run on this host \([0-9.]+ is not an address of this host\))re")))
      << out;
  EXPECT_THAT(out, HasSubstr("verdict: PASS, 1 of 1 fault SKIPPED (not applied, see above)"));
  EXPECT_THAT(out, HasSubstr(" 0 lost, 0 duplicated"));
  EXPECT_TRUE(watcher.Stopped().empty()) << "nothing paused";
}

TEST(Drill, TheDrillRpcIsRefusedUnlessTheDaemonAllowsDrills) {
  TempDir dir;
  auto c = LocalCluster::Start(
      {.dir = dir.path(), .drivers = 1, .workers = 1, .worker_flags = {"--allow-drills"}, .zk_session_timeout_ms = 4000});
  ASSERT_TRUE(c.ok()) << c.status();
  LocalCluster& cluster = **c;
  rpc::RpcOptions transport = TestRpcOptions();
  transport.own_connections = true;
  rpc::ChannelCache channels(transport);

  proto::DrillRequest kill;
  kill.set_fault(proto::DRILL_FAULT_KILL);
  Result<proto::DrillResponse> refused = rpc::DriverClient(channels, cluster.driver_address(0)).Drill(kill);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("drills are off on this daemon: set allow-drills = true in its config"));
  EXPECT_TRUE(cluster.driver(0)->Running());

  // A pause: the worker stops answering, then answers again by itself.
  proto::DrillRequest pause;
  pause.set_fault(proto::DRILL_FAULT_PAUSE);
  pause.set_pause_ms(1500);
  ASSERT_TRUE(rpc::WorkerClient(channels, cluster.worker_address(0)).Drill(pause).ok());
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_FALSE(GetWorkerStatus(cluster.worker_address(0), milliseconds(300)).ok()) << "paused";
  EXPECT_TRUE(WaitUntil([&] { return GetWorkerStatus(cluster.worker_address(0), milliseconds(300)).ok(); },
                        milliseconds(5000)))
      << "continued";

  Result<proto::DrillResponse> obeyed = rpc::WorkerClient(channels, cluster.worker_address(0)).Drill(kill);
  ASSERT_TRUE(obeyed.ok()) << obeyed.status();
  EXPECT_EQ(obeyed->pid(), cluster.worker(0)->pid());
  Result<int> exit = cluster.worker(0)->Wait(milliseconds(3000));
  ASSERT_TRUE(exit.ok()) << "the worker did not die";
  EXPECT_EQ(*exit, 128 + 9);  // SIGKILL
  const std::string worker_log = ReadFile(cluster.worker_log(0)).value_or("");
  EXPECT_THAT(worker_log, HasSubstr("failover drill: SIGKILL"));
  EXPECT_THAT(worker_log, HasSubstr("failover drill: paused (SIGSTOP) for 1500 ms"));
}

}  // namespace
}  // namespace sluice::testing
