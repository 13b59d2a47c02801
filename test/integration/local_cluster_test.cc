// LocalCluster, the helper every cluster test and the demo use: it brings up
// ZooKeeper, 3 drivers and 2 workers as real processes, and restarts a killed
// daemon with the same identity and address.
#include "test/harness/certs.h"
#include "test/harness/local_cluster.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/harness/paths.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

TEST(LocalCluster, StartsKillsAndRestartsDaemons) {
  TempDir dir;
  auto cluster = LocalCluster::Start({.dir = dir.path(), .drivers = 3, .workers = 2});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster& c = **cluster;
  ASSERT_TRUE(c.zk().Serving(0));
  auto status = [&] {
    return RunCommand({kSluicectlPath, "--tls-cert", TestTls("admin").cert, "--tls-key", TestTls("admin").key,
                       "--tls-ca", TestTls("admin").ca, "--timeout-ms", "1000", "status", "--driver",
                       c.driver_addresses(), "--worker", c.worker_addresses()},
                      dir.Sub("status.log"), std::chrono::seconds(20))
        .value_or(-1);
  };
  EXPECT_EQ(status(), 0);
  std::string out = *ReadFile(dir.Sub("status.log"));
  for (const char* id : {"driver-1", "driver-2", "driver-3", "worker-1", "worker-2"}) {
    EXPECT_THAT(out, HasSubstr(id));
  }

  const pid_t old_pid = c.worker(0)->pid();
  c.KillWorker(0);
  EXPECT_FALSE(DaemonServing(c.worker_address(0), false));
  EXPECT_EQ(status(), 1);
  ASSERT_TRUE(c.StartWorker(0).ok());
  EXPECT_NE(c.worker(0)->pid(), old_pid);
  EXPECT_EQ(status(), 0);
  EXPECT_EQ(c.StopDriver(2), 0);  // a clean SIGTERM stop exits 0
}

}  // namespace
}  // namespace sluice::testing
