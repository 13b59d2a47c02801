// The daemons' HTTP endpoint (--http-address) as an operator meets it: bad
// addresses refused at start with a one-line error; on a running cluster of
// real processes, /metrics in Prometheus's text format, /healthz on every
// daemon, /readyz true on the serving leader, a caught-up standby and a
// registered worker; the address published where others find it (the
// driver's status, the leader's election znode as a standby sees it).
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/harness/http_get.h"
#include "test/harness/local_cluster.h"
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

TEST(HttpEndpoint, BadAddressesAreOneLineStartupErrors) {
  TempDir dir;
  RunResult r = RunBinary(dir, {kDriverdPath, "--id", "d", "--http-address", "localhost", "--tls", "off"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("http-address: 'localhost' is not host:port"));
  r = RunBinary(dir, {kWorkerdPath, "--id", "w", "--http-address", "127.0.0.1:99999", "--tls", "off"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("http-address"));
  r = RunBinary(dir, {kDriverdPath, "--id", "d", "--rpc-address", "127.0.0.1:7300", "--http-address",
                      "127.0.0.1:7300", "--tls", "off"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("is the same port as rpc-address"));

  // A port another process holds: exit 1, naming the address.
  const int port = FreePort();
  auto first = Subprocess::Start({kDriverdPath, "--id", "a", "--rpc-address", "127.0.0.1:0", "--http-address",
                                  "127.0.0.1:" + std::to_string(port), "--data-dir", dir.Sub("a"), "--tls", "off"},
                                 {.log_path = dir.Sub("a.log")});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(WaitUntil(
      [&] { return ReadFile(dir.Sub("a.log")).value_or("").find("HTTP endpoint on") != std::string::npos; },
      std::chrono::seconds(10)));
  r = RunBinary(dir, {kDriverdPath, "--id", "b", "--rpc-address", "127.0.0.1:0", "--http-address",
                      "127.0.0.1:" + std::to_string(port), "--data-dir", dir.Sub("b"), "--tls", "off"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr("http-address: cannot bind 127.0.0.1:" + std::to_string(port)));
}

TEST(HttpEndpoint, EveryDaemonAnswersHealthReadyAndMetrics) {
  TempDir dir;
  auto cluster = LocalCluster::Start({.dir = dir.path(), .drivers = 2, .workers = 1, .http = true});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster& c = **cluster;
  const int leader = c.LeaderIndex();
  ASSERT_GE(leader, 0);
  const int standby = 1 - leader;

  std::vector<std::pair<std::string, std::string>> daemons = {{c.driver_id(0), c.driver_http_address(0)},
                                                              {c.driver_id(1), c.driver_http_address(1)},
                                                              {c.worker_id(0), c.worker_http_address(0)}};
  for (const auto& [id, address] : daemons) {
    SCOPED_TRACE(id);
    Result<HttpReply> health = HttpGet(address, "/healthz");
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(health->status, 200) << health->body;
    EXPECT_THAT(health->body, StartsWith("ok: "));
    // Ready: the leader at once; the standby once its WAL has caught up; the
    // worker once registered with the leader.
    EXPECT_TRUE(WaitUntil([&] {
      Result<HttpReply> ready = HttpGet(address, "/readyz");
      return ready.ok() && ready->status == 200;
    }, std::chrono::seconds(20)));
    Result<HttpReply> metrics = HttpGet(address, "/metrics");
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    EXPECT_EQ(metrics->status, 200);
    EXPECT_THAT(metrics->content_type, StartsWith("text/plain; version=0.0.4"));
    EXPECT_THAT(metrics->body, HasSubstr("# TYPE sluice_process_resident_memory_bytes gauge\n"));
    EXPECT_THAT(metrics->body, HasSubstr(id.rfind("driver", 0) == 0 ? "sluice_build_info{kind=\"driver\""
                                                                    : "sluice_build_info{kind=\"worker\""));
    Result<HttpReply> missing = HttpGet(address, "/no-such-page");
    ASSERT_TRUE(missing.ok());
    EXPECT_EQ(missing->status, 404);
  }

  // Published: each driver's status names its HTTP address, and a standby
  // learns the leader's from the election.
  Result<proto::DriverStatus> st = GetDriverStatus(c.driver_address(standby));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->process().http_address(), c.driver_http_address(standby));
  EXPECT_EQ(st->leader().http_address(), c.driver_http_address(leader));
  Result<proto::WorkerStatus> w = GetWorkerStatus(c.worker_address(0));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->process().http_address(), c.worker_http_address(0));

  // The leader stops. The standby is elected but, alone of a WAL group of
  // two, cannot commit: not ready, and /readyz says why; healthy all along.
  // Once the other driver is back, it serves.
  c.StopDriver(leader);
  std::string last;
  auto ready_says = [&](int status, const std::string& text) {
    return WaitUntil([&] {
      Result<HttpReply> r = HttpGet(c.driver_http_address(standby), "/readyz");
      if (r.ok()) last = std::to_string(r->status) + " " + r->body;
      return r.ok() && r->status == status && r->body.find(text) != std::string::npos;
    }, std::chrono::seconds(30));
  };
  EXPECT_TRUE(ready_says(503, "catching up the WAL")) << last;
  Result<HttpReply> health = HttpGet(c.driver_http_address(standby), "/healthz");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
  ASSERT_TRUE(c.StartDriver(leader).ok());
  EXPECT_TRUE(ready_says(200, "leader epoch")) << last;
}

}  // namespace
}  // namespace sluice::testing
