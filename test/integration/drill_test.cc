// sluicectl drill against a cluster of real processes: a leader kill, a
// worker kill and a leader SIGTERM pass their targets with nothing lost or
// doubled; and the Drill RPC is refused unless the daemon allows drills.
#include <atomic>
#include <filesystem>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/worker_client.h"
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

TEST(Drill, TheDrillRpcIsRefusedUnlessTheDaemonAllowsDrills) {
  TempDir dir;
  auto c = LocalCluster::Start(
      {.dir = dir.path(), .drivers = 1, .workers = 1, .worker_flags = {"--allow-drills"}, .zk_session_timeout_ms = 4000});
  ASSERT_TRUE(c.ok()) << c.status();
  LocalCluster& cluster = **c;
  rpc::ChannelCache channels({.own_connections = true});

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
