// The three binaries as a user runs them: --help, --version, bad flags and bad
// config files (one-line error, exit 2), and driverd + workerd serving
// GetStatus to sluicectl until SIGTERM.
#include <signal.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/harness/certs.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct RunResult {
  int code = -1;
  std::string output;
};

RunResult RunBinary(const TempDir& dir, std::vector<std::string> argv) {
  static int n = 0;
  std::string log = dir.Sub("run" + std::to_string(n++) + ".log");
  Result<int> code = RunCommand(argv, log, std::chrono::seconds(20));
  return {code.ok() ? *code : -1, ReadFile(log).value_or("")};
}

class BinariesTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BinariesTest, HelpAndVersion) {
  TempDir dir;
  RunResult help = RunBinary(dir, {GetParam(), "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_THAT(help.output, HasSubstr("Usage:"));
  EXPECT_THAT(help.output, HasSubstr("--config"));
  RunResult version = RunBinary(dir, {GetParam(), "--version"});
  EXPECT_EQ(version.code, 0);
  EXPECT_THAT(version.output, HasSubstr("0."));
}

TEST_P(BinariesTest, UnknownOptionIsOneLineExitTwo) {
  TempDir dir;
  RunResult r = RunBinary(dir, {GetParam(), "--no-such-option"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("error: "));
  EXPECT_THAT(r.output, HasSubstr("--no-such-option"));
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

INSTANTIATE_TEST_SUITE_P(All, BinariesTest,
                         ::testing::Values(kDriverdPath, kWorkerdPath, kSluicectlPath),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param.substr(info.param.rfind('/') + 1);
                         });

TEST(Sluicectl, NoCommandIsAnError) {
  TempDir dir;
  RunResult r = RunBinary(dir, {kSluicectlPath});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.output, "sluicectl: error: no command given (see --help)\n");
}

TEST(Driverd, ConfigFileErrorsNameFileLineAndKey) {
  TempDir dir;
  std::string conf = dir.Sub("driverd.conf");
  ASSERT_TRUE(WriteFile(conf, "id = d1\n# comment\nrpc-adress = 127.0.0.1:1\n").ok());
  RunResult r = RunBinary(dir, {kDriverdPath, "--config", conf});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.output, "driverd: error: " + conf + ":3: unknown key 'rpc-adress'\n");

  ASSERT_TRUE(WriteFile(conf, "id = d1\nrpc-address = nowhere\n").ok());
  r = RunBinary(dir, {kDriverdPath, "--config", conf});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("rpc-address: 'nowhere' is not host:port"));

  ASSERT_TRUE(WriteFile(conf, "id = d1\nthis is not a setting\n").ok());
  r = RunBinary(dir, {kDriverdPath, "--config", conf});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr(conf + ":2: expected 'key = value'"));
}

TEST(Driverd, BadCoordinatorAndAddressesExitTwo) {
  TempDir dir;
  RunResult r = RunBinary(dir, {kDriverdPath, "--id", "d", "--coordinator", "zookeeper://127.0.0.1:2181"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("names no root path"));
  r = RunBinary(dir, {kDriverdPath, "--id", "d", "--rpc-address", "0.0.0.0:7100"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("advertise-address: must be set"));
  r = RunBinary(dir, {kDriverdPath, "--id", "d", "--zk-session-timeout-ms", "10"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("zk-session-timeout-ms: 10 is not in"));
  r = RunBinary(dir, {kDriverdPath, "--id", "d", "--workers-unreachable-give-up-ms", "-1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("workers-unreachable-give-up-ms: -1 is negative"));
}

TEST(Driverd, UnreachableZooKeeperExitsOneWithAClearError) {
  TempDir dir;
  const int nobody = FreePort();
  RunResult r = RunBinary(dir, {kDriverdPath, "--id", "d", "--rpc-address", "127.0.0.1:0",
                                "--data-dir", dir.Sub("d"), "--zk-connect-timeout-ms", "1000",
                                "--coordinator",
                                "zookeeper://127.0.0.1:" + std::to_string(nobody) + "/sluice/x", "--tls", "off"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr("cannot reach ZooKeeper at 127.0.0.1:" + std::to_string(nobody)));
}

TEST(Sluicectl, SourceAddRefusesBadArgumentsBeforeCallingAnyone) {
  TempDir dir;
  RunResult r = RunBinary(dir, {kSluicectlPath, "source", "add", "s1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("--kind is required"));
  r = RunBinary(dir, {kSluicectlPath, "source", "add", "s1", "--kind", "carrier-pigeon"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("carrier-pigeon"));
  r = RunBinary(dir, {kSluicectlPath, "source", "add", "s1", "--kind", "kafka", "--property", "no-equals-sign",
                      "--driver", "127.0.0.1:1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("--property no-equals-sign: expected KEY=VALUE"));
}

TEST(Workerd, MalformedValuesExitTwo) {
  TempDir dir;
  RunResult r = RunBinary(dir, {kWorkerdPath, "--id", "w1", "--slots", "lots"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, StartsWith("workerd: error: "));
  r = RunBinary(dir, {kWorkerdPath, "--id", "w1", "--slots", "0", "--data-dir", dir.Sub("w")});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("slots: 0 is not in 1..1024"));
  r = RunBinary(dir, {kWorkerdPath, "--id", "bad/id"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("id: 'bad/id' is not a valid id"));
  r = RunBinary(dir, {kWorkerdPath, "--id", "w1", "--block-interval-ms", "5", "--data-dir", dir.Sub("w")});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("block-interval-ms: 5 is not in 10..60000"));
  r = RunBinary(dir, {kWorkerdPath, "--id", "w1", "--log-level", "loud"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("log-level: unknown level 'loud'"));
}

TEST(Daemons, ServeStatusToSluicectlAndStopOnSigterm) {
  TempDir dir;
  const int dport = FreePort(), wport = FreePort();
  std::string conf = dir.Sub("driverd.conf");
  const TlsOptions d = TestTls("driver");
  ASSERT_TRUE(WriteFile(conf, "id = driver-1\nrpc-address = 127.0.0.1:" + std::to_string(dport) +
                                  "\ndata-dir = " + dir.Sub("d1") + "\ntls-cert = " + d.cert + "\ntls-key = " + d.key +
                                  "\ntls-ca = " + d.ca + "\n")
                  .ok());
  const std::vector<std::string> worker_tls = TlsFlags("worker"), ctl_tls = TlsFlags("admin");
  auto driver = Subprocess::Start({kDriverdPath, "--config", conf}, {.log_path = dir.Sub("d.log")});
  ASSERT_TRUE(driver.ok());
  auto worker = Subprocess::Start({kWorkerdPath, "--id", "worker-1", "--rpc-address",
                                   "127.0.0.1:" + std::to_string(wport), "--data-dir",
                                   dir.Sub("w1"), "--slots", "3", worker_tls[0], worker_tls[1], worker_tls[2],
                                   worker_tls[3], worker_tls[4], worker_tls[5]},
                                  {.log_path = dir.Sub("w.log")});
  ASSERT_TRUE(worker.ok());
  RunResult status;
  EXPECT_TRUE(WaitUntil(
      [&] {
        status = RunBinary(dir, {kSluicectlPath, ctl_tls[0], ctl_tls[1], ctl_tls[2], ctl_tls[3], ctl_tls[4],
                                 ctl_tls[5], "status", "--driver",
                                 "127.0.0.1:" + std::to_string(dport), "--worker",
                                 "127.0.0.1:" + std::to_string(wport)});
        return status.code == 0;
      },
      std::chrono::seconds(10), std::chrono::milliseconds(100)))
      << status.output;
  EXPECT_THAT(status.output, HasSubstr("driver-1"));
  EXPECT_THAT(status.output, HasSubstr("worker-1"));
  EXPECT_THAT(status.output, HasSubstr("slots=3"));
  EXPECT_THAT(status.output, HasSubstr(std::to_string((*driver)->pid())));

  ASSERT_TRUE((*driver)->Signal(SIGTERM).ok());
  ASSERT_TRUE((*worker)->Signal(SIGTERM).ok());
  EXPECT_EQ((*driver)->Wait(std::chrono::seconds(5)).value_or(-1), 0);
  EXPECT_EQ((*worker)->Wait(std::chrono::seconds(5)).value_or(-1), 0);

  // With the driver gone, status fails with exit 1 and says which address.
  RunResult down = RunBinary(dir, {kSluicectlPath, "--tls", "off", "--timeout-ms", "500", "status", "--driver",
                             "127.0.0.1:" + std::to_string(dport)});
  EXPECT_EQ(down.code, 1);
  EXPECT_THAT(down.output, HasSubstr("driver at 127.0.0.1:" + std::to_string(dport)));
}

TEST(Daemons, BusyPortIsAClearStartupError) {
  TempDir dir;
  const int port = FreePort();
  auto first = Subprocess::Start({kDriverdPath, "--id", "a", "--rpc-address",
                                  "127.0.0.1:" + std::to_string(port), "--data-dir", dir.Sub("a"), "--tls", "off"},
                                 {.log_path = dir.Sub("a.log")});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(WaitUntil([&] { return ReadFile(dir.Sub("a.log")).value_or("").find("serving") != std::string::npos; },
                        std::chrono::seconds(10)));
  RunResult second = RunBinary(dir, {kDriverdPath, "--id", "b", "--rpc-address",
                               "127.0.0.1:" + std::to_string(port), "--data-dir", dir.Sub("b"), "--tls", "off"});
  EXPECT_EQ(second.code, 1);
  EXPECT_THAT(second.output, HasSubstr("cannot listen on 127.0.0.1:" + std::to_string(port)));
}

}  // namespace
}  // namespace sluice::testing
