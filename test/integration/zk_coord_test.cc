// lib/coord's ZooKeeper backend in-process against a real ZooKeeper server:
// election order and epochs, predecessor hand-over, the leader's lease under
// a silent partition (docs/design.md, rule 5), session expiry and re-entry,
// membership that follows joins, deaths and expiries.
#include <condition_variable>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "lib/coord/coordinator.h"
#include "lib/coord/zk_leader_detector.h"
#include "lib/coord/zk_leader_elector.h"
#include "lib/coord/zk_membership.h"
#include "lib/coord/zk_session.h"
#include "test/harness/tcp_proxy.h"
#include "test/harness/util.h"
#include "test/harness/zk_cluster.h"

namespace sluice::coord {
namespace {

using testing::TcpProxy;
using testing::TempDir;
using testing::WaitUntil;
using testing::ZkCluster;

constexpr int kTimeoutMs = 2000;

class ZkCoordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto zk = ZkCluster::Start({.base_dir = dir_.path()});
    ASSERT_TRUE(zk.ok()) << zk.status();
    zk_ = std::move(*zk);
  }

  std::unique_ptr<ZkSession> Connect(const std::string& hosts) {
    auto s = ZkSession::Connect({.hosts = hosts, .session_timeout_ms = kTimeoutMs,
                                 .connect_timeout = std::chrono::seconds(10)},
                                Clock::Real());
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return nullptr;
    for (const char* d : {"/t/election", "/t/workers", "/t/drivers"}) {
      EXPECT_TRUE((*s)->EnsurePath(d).ok());
    }
    return std::move(*s);
  }
  std::string hosts() const { return zk_->connect_string(); }

  TempDir dir_;
  std::unique_ptr<ZkCluster> zk_;
};

// Elector events, thread-safe.
struct Recorder {
  std::mutex mu;
  std::vector<std::string> log;
  std::atomic<int64_t> last_epoch{0};
  LeaderElector::Callbacks Callbacks() {
    return {.elected =
                [this](int64_t e) {
                  last_epoch = e;
                  std::lock_guard<std::mutex> lock(mu);
                  log.push_back("elected " + std::to_string(e));
                },
            .lost =
                [this] {
                  std::lock_guard<std::mutex> lock(mu);
                  log.push_back("lost");
                }};
  }
  bool Has(const std::string& s) {
    std::lock_guard<std::mutex> lock(mu);
    return std::find(log.begin(), log.end(), s) != log.end();
  }
};

proto::LeaderInfo Self(const std::string& id) {
  proto::LeaderInfo info;
  info.set_id(id);
  info.set_rpc_address("127.0.0.1:1");
  return info;
}

TEST_F(ZkCoordTest, CandidatesLeadInOrderWithIncreasingEpochs) {
  // Declared so that electors go first: they call into recorders and sessions.
  std::vector<std::unique_ptr<ZkSession>> sessions;
  std::vector<std::unique_ptr<Recorder>> recs;
  std::vector<std::unique_ptr<ZkLeaderElector>> electors;
  for (int i = 0; i < 3; ++i) {
    sessions.push_back(Connect(hosts()));
    recs.push_back(std::make_unique<Recorder>());
    electors.push_back(std::make_unique<ZkLeaderElector>(sessions[i].get(), "/t", Self("d" + std::to_string(i))));
    ASSERT_TRUE(electors[i]->Start(recs[i]->Callbacks()).ok());
    if (i == 0) {
      ASSERT_TRUE(WaitUntil([&] { return electors[0]->IsLeader(); }, std::chrono::seconds(5)));
    }
  }
  ZkLeaderDetector detector(sessions[2].get(), "/t");
  auto who = detector.Current();
  ASSERT_TRUE(who.ok() && who->has_value());
  EXPECT_EQ((*who)->id(), "d0");
  EXPECT_EQ((*who)->epoch(), 1);
  EXPECT_FALSE(electors[1]->IsLeader());
  EXPECT_FALSE(electors[2]->IsLeader());

  // A standby that is not next in line leaving changes nothing.
  electors[2]->Stop();
  sessions[2]->Close();
  // The leader leaving: its successor leads at once with the next epoch.
  auto t0 = std::chrono::steady_clock::now();
  electors[0]->Stop();
  sessions[0]->Close();
  ASSERT_TRUE(WaitUntil([&] { return electors[1]->IsLeader(); }, std::chrono::seconds(5)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_EQ(electors[1]->epoch(), 2);
  EXPECT_TRUE(recs[0]->Has("lost"));
  EXPECT_FALSE(recs[2]->Has("elected 2"));
}

// The epoch znode holds what fences older leaders: a candidate that finds
// something else there (forged, damaged) does not lead, and does not crash,
// until it holds a number again; then it leads with the next epoch.
TEST_F(ZkCoordTest, AnEpochZnodeThatIsNotANumberIsNotLedOver) {
  std::unique_ptr<ZkSession> admin = Connect(hosts());
  ASSERT_NE(admin, nullptr);
  ASSERT_TRUE(admin->Create("/t/epoch", "not-a-number", 0).ok());
  std::unique_ptr<ZkSession> session = Connect(hosts());
  ASSERT_NE(session, nullptr);
  Recorder rec;
  ZkLeaderElector elector(session.get(), "/t", Self("d0"));
  ASSERT_TRUE(elector.Start(rec.Callbacks()).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_FALSE(elector.IsLeader());
  EXPECT_FALSE(rec.Has("elected 1"));
  for (const char* bad : {"99999999999999999999999", "-3", "9223372036854775807"}) {
    Result<ZkSession::Node> node = admin->Get("/t/epoch");
    ASSERT_TRUE(node.ok());
    ASSERT_TRUE(admin->Set("/t/epoch", bad, node->version).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    EXPECT_FALSE(elector.IsLeader()) << "led over an epoch znode holding " << bad;
  }
  Result<ZkSession::Node> node = admin->Get("/t/epoch");
  ASSERT_TRUE(node.ok());
  ASSERT_TRUE(admin->Set("/t/epoch", "41", node->version).ok());
  ASSERT_TRUE(WaitUntil([&] { return elector.IsLeader(); }, std::chrono::seconds(5)));
  EXPECT_EQ(elector.epoch(), 42);
  elector.Stop();
}

TEST_F(ZkCoordTest, SilentPartitionEndsTheLeaseBeforeTheSessionExpires) {
  auto proxy = TcpProxy::Start("127.0.0.1", zk_->client_port(0));
  ASSERT_TRUE(proxy.ok());
  auto partitioned = Connect((*proxy)->address());
  auto other = Connect(hosts());
  Recorder ra, rb;
  ZkLeaderElector a(partitioned.get(), "/t", Self("a"));
  ZkLeaderElector b(other.get(), "/t", Self("b"));
  ASSERT_TRUE(a.Start(ra.Callbacks()).ok());
  ASSERT_TRUE(WaitUntil([&] { return a.IsLeader(); }, std::chrono::seconds(5)));
  ASSERT_TRUE(b.Start(rb.Callbacks()).ok());
  const int64_t first_epoch = a.epoch();

  (*proxy)->Stall();  // a hears nothing, and is heard by nothing
  const auto stalled = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitUntil([&] { return !a.IsLeader(); }, std::chrono::seconds(5)));
  const auto lease_gone = std::chrono::steady_clock::now();
  // b can only lead once the server expired a's session (a full timeout).
  ASSERT_TRUE(WaitUntil([&] { return b.IsLeader(); }, std::chrono::seconds(10)));
  const auto b_leads = std::chrono::steady_clock::now();
  EXPECT_LT(lease_gone, b_leads);
  EXPECT_LT(lease_gone - stalled, std::chrono::milliseconds(kTimeoutMs));
  EXPECT_GT(b.epoch(), first_epoch);
  EXPECT_FALSE(a.IsLeader());

  (*proxy)->Restore();
  // a learns its session expired, says so, and stands again as a candidate.
  ASSERT_TRUE(WaitUntil([&] { return ra.Has("lost"); }, std::chrono::seconds(10)));
  EXPECT_FALSE(a.IsLeader());
  EXPECT_TRUE(b.IsLeader());
  // Once b leaves, a (re-entered as a new candidate) leads with a new epoch.
  b.Stop();
  other->Close();
  ASSERT_TRUE(WaitUntil([&] { return a.IsLeader(); }, std::chrono::seconds(10)));
  EXPECT_GT(a.epoch(), b.epoch());
}

TEST_F(ZkCoordTest, MembershipFollowsJoinsDeathsAndRejoinsAfterExpiry) {
  auto proxy = TcpProxy::Start("127.0.0.1", zk_->client_port(0));
  ASSERT_TRUE(proxy.ok());
  std::mutex mu;                 // before the watcher, which calls into them
  std::vector<std::string> ids;  // guarded by mu
  auto watcher_session = Connect(hosts());
  ZkMembership watcher(watcher_session.get(), "/t", Group::kWorkers);
  watcher.Watch([&](const std::vector<proto::MemberInfo>& members) {
    std::lock_guard<std::mutex> lock(mu);
    ids.clear();
    for (const auto& m : members) ids.push_back(m.id());
  });
  auto ids_are = [&](std::vector<std::string> want) {
    return WaitUntil([&] {
      std::lock_guard<std::mutex> lock(mu);
      return ids == want;
    }, std::chrono::seconds(10));
  };

  auto s1 = Connect(hosts());
  auto s2 = Connect((*proxy)->address());
  ZkMembership m1(s1.get(), "/t", Group::kWorkers);
  ZkMembership m2(s2.get(), "/t", Group::kWorkers);
  proto::MemberInfo w1, w2;
  w1.set_id("w1");
  w1.set_slots(4);
  w2.set_id("w2");
  ASSERT_TRUE(m1.Join(w1).ok());
  ASSERT_TRUE(m2.Join(w2).ok());
  EXPECT_TRUE(ids_are({"w1", "w2"}));
  auto listed = watcher.Members();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ((*listed)[0].slots(), 4);

  // A second process claiming w1 while the first lives is refused.
  auto s3 = Connect(hosts());
  ZkMembership impostor(s3.get(), "/t", Group::kWorkers);
  EXPECT_EQ(impostor.Join(w1).code(), absl::StatusCode::kAlreadyExists);

  // w2's session expires behind a silent partition: it leaves the group...
  (*proxy)->Stall();
  EXPECT_TRUE(ids_are({"w1"}));
  // ...and comes back by itself in a new session once the network heals.
  (*proxy)->Restore();
  EXPECT_TRUE(ids_are({"w1", "w2"}));

  m1.Leave();
  EXPECT_TRUE(ids_are({"w2"}));
}

TEST(ZkCoordinator, UnreachableZooKeeperIsAClearError) {
  const int port = testing::FreePort();  // nobody listens there
  auto c = Coordinator::Create("zookeeper://127.0.0.1:" + std::to_string(port) + "/sluice/x",
                               {.session_timeout_ms = 2000,
                                .connect_timeout = std::chrono::milliseconds(1500)});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(c.status().message()).find("cannot reach ZooKeeper at 127.0.0.1:"),
            std::string::npos);
}

}  // namespace
}  // namespace sluice::coord
