// sluicectl drill's pure parts (lib/ctl/drill.h): the --fault grammar, the
// targets and the verdict, the exactly-once counting, and the report; and
// how a listening socket is read from /proc/net/tcp (local_listener.h).
#include "lib/ctl/drill.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/ctl/local_listener.h"
#include "lib/ctl/zk_admin.h"

namespace sluice::ctl {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

TEST(DrillFaults, ParsesEveryKindWithItsArgument) {
  Result<std::vector<FaultSpec>> f =
      ParseFaults("leader-kill,leader-term,leader-pause,leader-pause:12s,worker-kill,worker-kill:worker-2,"
                  "worker-pause:500ms");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->size(), 7u);
  EXPECT_EQ((*f)[0].kind, FaultKind::kLeaderKill);
  EXPECT_EQ((*f)[1].kind, FaultKind::kLeaderTerm);
  EXPECT_EQ((*f)[2].kind, FaultKind::kLeaderPause);
  EXPECT_EQ((*f)[2].pause, kDefaultPause);
  EXPECT_EQ((*f)[3].pause, milliseconds(12'000));
  EXPECT_EQ((*f)[4].kind, FaultKind::kWorkerKill);
  EXPECT_EQ((*f)[4].worker_id, "");
  EXPECT_EQ((*f)[5].worker_id, "worker-2");
  EXPECT_EQ((*f)[6].kind, FaultKind::kWorkerPause);
  EXPECT_EQ((*f)[6].pause, milliseconds(500));
  EXPECT_EQ((*f)[6].text, "worker-pause:500ms");
  EXPECT_TRUE((*f)[3].on_leader());
  EXPECT_FALSE((*f)[6].on_leader());
}

TEST(DrillFaults, ZkServerLossTakesAPause) {
  Result<std::vector<FaultSpec>> f = ParseFaults("zk-server-loss,zk-server-loss:3s");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)[0].kind, FaultKind::kZkServerLoss);
  EXPECT_EQ((*f)[0].pause, kDefaultPause);
  EXPECT_EQ((*f)[1].pause, milliseconds(3000));
  EXPECT_FALSE((*f)[0].on_leader());
  EXPECT_TRUE((*f)[0].measures_leader());
  EXPECT_FALSE(ParseFaults("zk-server-loss:soon").ok());
}

TEST(DrillFaults, RefusesWhatItDoesNotKnowNamingTheItem) {
  EXPECT_THAT(std::string(ParseFaults("leader-kill,leader-nap").status().message()),
              HasSubstr("--fault leader-nap: unknown fault 'leader-nap'; the faults are leader-kill"));
  EXPECT_THAT(std::string(ParseFaults("leader-kill:now").status().message()), HasSubstr("takes no argument"));
  EXPECT_THAT(std::string(ParseFaults("worker-pause:soon").status().message()),
              HasSubstr("'soon' is not a duration"));
  EXPECT_THAT(std::string(ParseFaults("worker-kill:").status().message()), HasSubstr("nothing after ':'"));
  EXPECT_FALSE(ParseFaults("").ok());
  EXPECT_FALSE(ParseFaults(",").ok());
}

TEST(DrillFaults, Durations) {
  EXPECT_EQ(*ParseDuration("250", "x"), milliseconds(250));
  EXPECT_EQ(*ParseDuration("250ms", "x"), milliseconds(250));
  EXPECT_EQ(*ParseDuration("10s", "x"), milliseconds(10'000));
  EXPECT_EQ(*ParseDuration("2m", "x"), milliseconds(120'000));
  EXPECT_FALSE(ParseDuration("0s", "x").ok());
  EXPECT_FALSE(ParseDuration("2h", "x").ok());
  EXPECT_FALSE(ParseDuration("61m", "x").ok());
  EXPECT_FALSE(ParseDuration("s", "x").ok());
  EXPECT_FALSE(ParseDuration("-1s", "x").ok());
}

TEST(DrillFaults, FlagsAreCheckedBeforeTheClusterIsAsked) {
  DrillOptions o;
  o.faults = "leader-kill";
  Result<CheckedDrillOptions> c = CheckDrillOptions(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->interval, milliseconds(10'000));
  EXPECT_FALSE(c->session_timeout.has_value());
  o.interval = "soon";
  EXPECT_THAT(std::string(CheckDrillOptions(o).status().message()), HasSubstr("--interval: 'soon'"));
  o.interval = "8s";
  o.rate = 2;  // fewer than one event/s per partition
  EXPECT_THAT(std::string(CheckDrillOptions(o).status().message()), HasSubstr("--rate: 2 is not in 4..1000000"));
  o.rate = 100;
  o.session_timeout = "4s";
  EXPECT_EQ(CheckDrillOptions(o)->session_timeout, milliseconds(4000));
}

TEST(DrillVerdict, TargetsFollowTheSessionTimeoutAndTheBatchInterval) {
  const DrillTimes times{.session_timeout = milliseconds(4000), .batch_interval = milliseconds(1000)};
  auto target = [&](const char* spec) { return TargetFor((*ParseFaults(spec))[0], times); };
  EXPECT_EQ(target("leader-kill"), milliseconds(4000 + 2000 + 2000));
  EXPECT_EQ(target("leader-term"), milliseconds(1000 + 2000));
  EXPECT_EQ(target("leader-pause:5s"), target("leader-kill"));  // longer than T: as a kill
  EXPECT_EQ(target("leader-pause:3s"), milliseconds(3000 + 2000));
  EXPECT_EQ(target("worker-kill"), milliseconds(4000 + 2000));
  EXPECT_EQ(target("worker-pause:2s"), milliseconds(4000 + 2000));
}

TEST(DrillVerdict, ZkServerLossTargetDependsOnWhetherTheEnsembleKeepsAQuorum) {
  DrillTimes times{.session_timeout = milliseconds(4000), .batch_interval = milliseconds(1000), .zk_servers = 3};
  const FaultSpec loss = (*ParseFaults("zk-server-loss:5s"))[0];
  EXPECT_EQ(TargetFor(loss, times), milliseconds(4000 + 2000 + 2000));  // T + 2 s + 2B
  times.zk_servers = 1;  // the pause is an outage
  EXPECT_EQ(TargetFor(loss, times), milliseconds(5000 + 4000 + 2000 + 2000));
  times.zk_servers = 2;  // one of two down: no quorum either
  EXPECT_EQ(TargetFor(loss, times), milliseconds(5000 + 4000 + 2000 + 2000));
}

TEST(DrillVerdict, PausingTheEnsemblesLeaderIsAnOutage) {
  EXPECT_FALSE(ZkLossIsOutage(3, "follower"));
  EXPECT_FALSE(ZkLossIsOutage(3, ""));  // unknown: the connect string decides
  EXPECT_TRUE(ZkLossIsOutage(3, "leader"));
  EXPECT_TRUE(ZkLossIsOutage(1, "standalone"));
  EXPECT_TRUE(ZkLossIsOutage(1, ""));
  const DrillTimes times{.session_timeout = milliseconds(4000), .batch_interval = milliseconds(1000), .zk_servers = 3};
  const FaultSpec loss = (*ParseFaults("zk-server-loss:3s"))[0];
  EXPECT_EQ(ZkServerLossTarget(loss, times, true), milliseconds(3000 + 8000));
  EXPECT_EQ(ZkServerLossTarget(loss, times, false), milliseconds(8000));
}

TEST(DrillVerdict, ReadsTheModeOfAZooKeeperServer) {
  EXPECT_EQ(ParseZkMode("Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\nNode count: 5\n"),
            "follower");
  EXPECT_EQ(ParseZkMode("Mode: leader\r\n"), "leader");
  EXPECT_EQ(ParseZkMode("srvr is not executed because it is not in the whitelist.\n"), "");
}

TEST(DrillVerdict, ASkippedFaultFailsNothingAndSaysSo) {
  DrillReport r;
  r.name = "drill-1";
  FaultResult f;
  f.fault = (*ParseFaults("zk-server-loss"))[0];
  f.target_ms = 8000;
  f.victim = "10.0.0.7:2181";
  f.skipped = "ZooKeeper server 10.0.0.7:2181 does not run on this host";
  f.next_commit_ms = {{"drill-1-ids", std::nullopt}, {"drill-1-counts", std::nullopt}};
  r.faults.push_back(f);
  EXPECT_TRUE(FaultPasses(f));
  EXPECT_EQ(FaultVerdict(f), "SKIPPED");
  EXPECT_TRUE(r.Pass());
  EXPECT_EQ(r.Skipped(), 1);
  std::ostringstream table;
  PrintReport(r, table);
  EXPECT_THAT(table.str(), HasSubstr("10.0.0.7:2181"));
  EXPECT_THAT(table.str(), HasSubstr("SKIPPED\n     skipped: ZooKeeper server 10.0.0.7:2181 does not run on this host"));
  EXPECT_THAT(table.str(), HasSubstr("verdict: PASS, 1 of 1 fault SKIPPED (not applied, see above)"));
  EXPECT_THAT(ReportJson(r), HasSubstr(R"("verdict":"SKIPPED","skipped":"ZooKeeper server 10.0.0.7:2181)"));
  EXPECT_THAT(ReportJson(r), HasSubstr(R"("skipped":1,"zk_servers":1})"));
  // Applied but with an error is still a failure.
  f.skipped.clear();
  f.error = "signalling ZooKeeper server pid 7 on this host: Operation not permitted";
  EXPECT_EQ(FaultVerdict(f), "FAIL");
}

TEST(DrillVerdict, AFaultPassesWhenEveryJobCommitsWithinItsTarget) {
  FaultResult r;
  r.target_ms = 3000;
  r.next_commit_ms = {{"a", 1200}, {"b", 3000}};
  EXPECT_TRUE(FaultPasses(r));
  r.next_commit_ms[1].second = 3001;
  EXPECT_FALSE(FaultPasses(r));
  r.next_commit_ms[1].second = std::nullopt;  // never seen
  EXPECT_FALSE(FaultPasses(r));
  r.next_commit_ms[1].second = 10;
  r.error = "no live worker";
  EXPECT_FALSE(FaultPasses(r));
}

TEST(DrillExactlyOnce, CountsLostDuplicatedAndBeyond) {
  const std::map<int32_t, int64_t> positions = {{0, 3}, {1, 2}};
  // 0-0 twice, 0-1 missing, 0-3 past the position; partition 1 complete; 7-0 unknown.
  IdCheck c = CheckIds(positions, {{0, 0}, {0, 0}, {0, 2}, {0, 3}, {1, 1}, {1, 0}, {7, 0}});
  EXPECT_EQ(c.expected, 5);
  EXPECT_EQ(c.lost, 1);
  EXPECT_EQ(c.duplicated, 1);
  EXPECT_EQ(c.beyond, 2);
  EXPECT_FALSE(c.ok());
  EXPECT_THAT(c.examples, ::testing::UnorderedElementsAre("0-0 duplicated", "0-1 lost"));
  EXPECT_TRUE(CheckIds(positions, {{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}, {1, 2}}).ok());
}

TEST(DrillExactlyOnce, CountsAgainstExpected) {
  CountCheck ok = CheckCounts({{"k1", 3}, {"k2", 1}}, {{"k1", 3}, {"k2", 1}});
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.events, 4);
  CountCheck bad = CheckCounts({{"k1", 3}, {"k2", 1}}, {{"k1", 4}, {"k3", 1}});
  EXPECT_EQ(bad.wrong, 3);  // k1 differs, k2 missing, k3 unexpected
  EXPECT_FALSE(bad.ok());
}

TEST(DrillExactlyOnce, ParsesTheProbesOutput) {
  EXPECT_EQ(ParseIdLine(R"({"id":"0003-000000000042"})"), (std::pair<int32_t, int64_t>{3, 42}));
  EXPECT_FALSE(ParseIdLine(R"({"id":"x"})").has_value());
  EXPECT_EQ(ParseCountLine(R"({"key":["k00000007"],"events":12})"),
            (std::pair<std::string, int64_t>{"k00000007", 12}));
  EXPECT_FALSE(ParseCountLine(R"({"key":["k1"]})").has_value());
  EXPECT_EQ(BatchOfFile("drill-1-counts-batch-17-part-0.jsonl"), 17);
  EXPECT_EQ(BatchOfFile("drill-1-counts-batch-00000022-part-0002.jsonl"), 22);  // as the file sink names them
  EXPECT_FALSE(BatchOfFile("notes.txt").has_value());
}

TEST(DrillReport, VerdictTableAndJson) {
  DrillReport r;
  r.name = "drill-1";
  r.times = {.session_timeout = milliseconds(4000), .batch_interval = milliseconds(1000)};
  FaultResult f;
  f.fault = (*ParseFaults("leader-kill"))[0];
  f.target_ms = 8000;
  f.victim = "driver-1";
  f.new_leader_ms = 4300;
  f.next_commit_ms = {{"drill-1-ids", 5100}, {"drill-1-counts", 5200}};
  r.faults.push_back(f);
  r.ids.expected = 10;
  r.counts.keys = 2;
  EXPECT_TRUE(r.Pass());
  std::ostringstream table;
  PrintReport(r, table);
  EXPECT_THAT(table.str(), HasSubstr("leader-kill"));
  EXPECT_THAT(table.str(), HasSubstr("4.3s"));
  EXPECT_THAT(table.str(), HasSubstr("verdict: PASS"));
  EXPECT_THAT(ReportJson(r), HasSubstr(R"("verdict":"PASS")"));
  EXPECT_THAT(ReportJson(r), HasSubstr(R"("next_commit_ms":{"drill-1-ids":5100,"drill-1-counts":5200})"));

  r.ids.lost = 1;  // exactly once broken: FAIL whatever the times
  EXPECT_FALSE(r.Pass());
  EXPECT_THAT(ReportJson(r), HasSubstr(R"("verdict":"FAIL")"));
  r.ids.lost = 0;
  r.faults[0].next_commit_ms[0].second = 9000;
  EXPECT_FALSE(r.Pass());
  r.faults.clear();  // a drill that applied no fault proves nothing
  EXPECT_FALSE(r.Pass());
}

TEST(LocalListener, ReadsListeningSocketsFromProcNetTcp) {
  // As the kernel prints them (x86: each 32-bit word little-endian).
  const std::string tcp =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 0100007F:0885 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 43127 1 0 100 0 0 10 0\n"
      "   1: 0100007F:0885 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 43999 1 0 20 4 30 10 -1\n"
      "   2: garbage\n";
  std::vector<ProcNetSocket> v4 = ParseProcNetTcp(tcp, false);
  ASSERT_EQ(v4.size(), 2u);
  EXPECT_EQ(v4[0].port, 2181);
  EXPECT_EQ(v4[0].state, kTcpListen);
  EXPECT_EQ(v4[0].inode, 43127u);
  in_addr loopback;
  ASSERT_EQ(inet_pton(AF_INET, "127.0.0.1", &loopback), 1);
  EXPECT_EQ(std::memcmp(v4[0].address.data(), &loopback, 4), 0);
  EXPECT_EQ(v4[1].state, 1);  // ESTABLISHED

  const std::string tcp6 =
      "  sl  local_address                         remote_address                        st tx_queue rx_queue tr "
      "tm->when retrnsmt   uid  timeout inode\n"
      "   0: 00000000000000000000000000000000:0885 00000000000000000000000000000000:0000 0A 00000000:00000000 "
      "00:00000000 00000000  1000        0 51234 1 0 100 0 0 10 0\n"
      "   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 "
      "00:00000000 00000000  1000        0 51235 1 0 100 0 0 10 0\n";
  std::vector<ProcNetSocket> v6 = ParseProcNetTcp(tcp6, true);
  ASSERT_EQ(v6.size(), 2u);
  EXPECT_TRUE(v6[0].v6);
  EXPECT_EQ(v6[0].port, 2181);
  EXPECT_EQ(v6[0].inode, 51234u);
  EXPECT_EQ(v6[0].address, (std::array<uint8_t, 16>{}));  // the wildcard
  in6_addr loopback6;
  ASSERT_EQ(inet_pton(AF_INET6, "::1", &loopback6), 1);
  EXPECT_EQ(std::memcmp(v6[1].address.data(), &loopback6, 16), 0);
  EXPECT_EQ(v6[1].port, 8080);
}

TEST(LocalListener, AnAddressElsewhereOrUnusedIsNotFound) {
  EXPECT_TRUE(absl::IsInvalidArgument(FindLocalListener("no-port").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(FindLocalListener("127.0.0.1:http").status()));
  // TEST-NET-1 is nobody's address.
  EXPECT_TRUE(absl::IsNotFound(FindLocalListener("192.0.2.1:2181").status()));
}

TEST(LocalListener, FindsThisProcessListeningOnLoopback) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string where = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  EXPECT_TRUE(absl::IsNotFound(FindLocalListener(where).status())) << "bound, not listening";
  ASSERT_EQ(::listen(fd, 1), 0);
  Result<LocalListener> found = FindLocalListener(where);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->pid, ::getpid());
  EXPECT_EQ(found->address, where);
  EXPECT_THAT(found->cmdline, HasSubstr("ctl_test"));
  ::close(fd);
  EXPECT_TRUE(absl::IsNotFound(FindLocalListener(where).status()));
}

}  // namespace
}  // namespace sluice::ctl
