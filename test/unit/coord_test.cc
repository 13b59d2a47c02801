// Unit tests of lib/coord without ZooKeeper: the coordinator spec, and the
// standalone (in-process) election, detection and membership.
#include <condition_variable>
#include <mutex>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/coord/coordinator.h"
#include "lib/coord/standalone_coordinator.h"
#include "lib/coord/zk_leader_elector.h"

namespace sluice::coord {
namespace {

using ::testing::HasSubstr;

TEST(CoordinatorSpec, ParsesTheThreeForms) {
  auto zk = CoordinatorSpec::Parse("zookeeper://127.0.0.1:2181,10.0.0.2:2182/sluice/prod");
  ASSERT_TRUE(zk.ok()) << zk.status();
  EXPECT_EQ(zk->kind, CoordinatorSpec::Kind::kZooKeeper);
  EXPECT_EQ(zk->hosts, "127.0.0.1:2181,10.0.0.2:2182");
  EXPECT_EQ(zk->root, "/sluice/prod");
  auto sa = CoordinatorSpec::Parse("standalone");
  ASSERT_TRUE(sa.ok());
  EXPECT_EQ(sa->kind, CoordinatorSpec::Kind::kStandalone);
  EXPECT_TRUE(sa->leader_address.empty());
  auto follow = CoordinatorSpec::Parse("standalone://127.0.0.1:7100");
  ASSERT_TRUE(follow.ok());
  EXPECT_EQ(follow->leader_address, "127.0.0.1:7100");
}

TEST(CoordinatorSpec, RejectsMalformedWithAClearError) {
  struct Case {
    const char* spec;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {"zk://h:1/x", "is not a known coordinator"},
           {"zookeeper://127.0.0.1:2181", "names no root path"},
           {"zookeeper:///sluice", "names no ZooKeeper server"},
           {"zookeeper://host/sluice", "bad server 'host'"},
           {"zookeeper://h:1,,h:2/sluice", "bad server ''"},
           {"zookeeper://h:1/", "bad root path '/'"},
           {"zookeeper://h:1/a//b", "bad root path"},
           {"zookeeper://h:1/a/", "bad root path"},
           {"standalone://nowhere", "no valid HOST:PORT"},
           {"", "is not a known coordinator"}}) {
    auto r = CoordinatorSpec::Parse(c.spec);
    ASSERT_FALSE(r.ok()) << c.spec;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.says)) << c.spec;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("coordinator: '")) << c.spec;
  }
}

TEST(CandidateSequence, ParsesElectionNodeNames) {
  EXPECT_EQ(CandidateSequence("n_00ff00ff00ff00ff_0000000042"), 42);
  EXPECT_EQ(CandidateSequence("n_x_0000000000"), 0);
  EXPECT_EQ(CandidateSequence("lock_0000000001"), -1);
  EXPECT_EQ(CandidateSequence("n_abc_00000000x1"), -1);
}

// Records elector events in order, for waiting on them.
struct Events {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> log;
  LeaderElector::Callbacks For(const std::string& who) {
    return {.elected = [this, who](int64_t e) { Add(who + " elected " + std::to_string(e)); },
            .lost = [this, who] { Add(who + " lost"); }};
  }
  void Add(std::string s) {
    std::lock_guard<std::mutex> lock(mu);
    log.push_back(std::move(s));
    cv.notify_all();
  }
  bool WaitFor(const std::string& s) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(5), [&] {
      return std::find(log.begin(), log.end(), s) != log.end();
    });
  }
};

proto::LeaderInfo Info(const std::string& id) {
  proto::LeaderInfo info;
  info.set_id(id);
  info.set_rpc_address(id + ":1");
  return info;
}

TEST(Standalone, FirstCandidateLeadsNextTakesOverWithHigherEpoch) {
  // Callback targets first: they must outlive the coordinator's thread.
  Events events;
  std::mutex mu;
  std::vector<std::string> seen;
  auto coordinator = Coordinator::Create("standalone", {});
  ASSERT_TRUE(coordinator.ok());
  auto a = (*coordinator)->NewElector(Info("a"));
  auto b = (*coordinator)->NewElector(Info("b"));
  auto detector = (*coordinator)->NewDetector();
  detector->Watch([&](const std::optional<proto::LeaderInfo>& l) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(l ? l->id() + "@" + std::to_string(l->epoch()) : "none");
  });
  ASSERT_TRUE(a->Start(events.For("a")).ok());
  ASSERT_TRUE(b->Start(events.For("b")).ok());
  ASSERT_TRUE(events.WaitFor("a elected 1"));
  EXPECT_TRUE(a->IsLeader());
  EXPECT_FALSE(b->IsLeader());
  a->Stop();
  ASSERT_TRUE(events.WaitFor("a lost"));
  ASSERT_TRUE(events.WaitFor("b elected 2"));
  EXPECT_FALSE(a->IsLeader());
  EXPECT_TRUE(b->IsLeader());
  EXPECT_EQ(b->epoch(), 2);
  auto current = detector->Current();
  ASSERT_TRUE(current.ok());
  ASSERT_TRUE(current->has_value());
  EXPECT_EQ((*current)->id(), "b");
  b->Stop();
  EXPECT_FALSE(detector->Current()->has_value());
}

TEST(Standalone, EpochSurvivesRestartThroughItsFile) {
  char dir[] = "/tmp/sluice-epoch-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string file = std::string(dir) + "/epoch";
  for (int64_t expected : {1, 2, 3}) {
    Events events;  // outlives the coordinator's thread
    auto coordinator = Coordinator::Create("standalone", {.standalone_epoch_file = file});
    ASSERT_TRUE(coordinator.ok());
    auto e = (*coordinator)->NewElector(Info("d"));
    ASSERT_TRUE(e->Start(events.For("d")).ok());
    ASSERT_TRUE(events.WaitFor("d elected " + std::to_string(expected)));
  }
  std::remove(file.c_str());
  ::rmdir(dir);
}

TEST(Standalone, FixedLeaderForFollowers) {
  auto coordinator = Coordinator::Create("standalone://10.1.2.3:7100", {});
  ASSERT_TRUE(coordinator.ok());
  auto leader = (*coordinator)->NewDetector()->Current();
  ASSERT_TRUE(leader.ok());
  ASSERT_TRUE(leader->has_value());
  EXPECT_EQ((*leader)->rpc_address(), "10.1.2.3:7100");
}

TEST(Standalone, MembershipJoinLeaveWatchAndDuplicates) {
  std::mutex mu;  // outlive the coordinator's thread
  std::condition_variable cv;
  std::vector<size_t> sizes;
  auto coordinator = Coordinator::Create("standalone", {});
  ASSERT_TRUE(coordinator.ok());
  auto w1 = (*coordinator)->NewMembership(Group::kWorkers);
  auto w1_again = (*coordinator)->NewMembership(Group::kWorkers);
  auto watcher = (*coordinator)->NewMembership(Group::kWorkers);
  watcher->Watch([&](const std::vector<proto::MemberInfo>& m) {
    std::lock_guard<std::mutex> lock(mu);
    sizes.push_back(m.size());
    cv.notify_all();
  });
  proto::MemberInfo me;
  me.set_id("w1");
  ASSERT_TRUE(w1->Join(me).ok());
  EXPECT_EQ(w1_again->Join(me).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ((*coordinator)->NewMembership(Group::kDrivers)->Members()->size(), 0u);
  EXPECT_EQ(watcher->Members()->size(), 1u);
  w1->Leave();
  EXPECT_EQ(watcher->Members()->size(), 0u);
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] {
    return sizes == std::vector<size_t>{0, 1, 0};
  }));
}

// Standalone mode across processes: a follower's membership joins through
// the call it is given (the driver's JoinGroup), renews within its lease, and
// leaves; the driver's group drops a member whose lease lapses.
TEST(Standalone, RemoteMembersJoinRenewAndLapse) {
  auto driver = Coordinator::Create("standalone", {});
  ASSERT_TRUE(driver.ok());
  auto workers = (*driver)->NewMembership(Group::kWorkers);
  proto::MemberInfo w;
  w.set_id("w1");
  w.set_rpc_address("127.0.0.1:1");
  using std::chrono::milliseconds;
  ASSERT_TRUE((*driver)->AcceptRemoteMember(Group::kWorkers, w, milliseconds(300)).ok());
  EXPECT_EQ(workers->Members()->size(), 1u);
  std::this_thread::sleep_for(milliseconds(200));
  ASSERT_TRUE((*driver)->AcceptRemoteMember(Group::kWorkers, w, milliseconds(300)).ok());  // renewed
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(workers->Members()->size(), 1u) << "a renewed lease lapsed";
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(workers->Members()->size(), 0u) << "a lapsed lease stayed";
  // A member of the driver's own process keeps its id.
  auto local = (*driver)->NewMembership(Group::kWorkers);
  ASSERT_TRUE(local->Join(w).ok());
  EXPECT_EQ((*driver)->AcceptRemoteMember(Group::kWorkers, w, milliseconds(300)).code(),
            absl::StatusCode::kAlreadyExists);
  local->Leave();

  // The follower's side: joins through the call, renews, leaves with lease 0.
  std::mutex mu;
  std::vector<int64_t> leases;
  auto follower = Coordinator::Create(
      "standalone://127.0.0.1:1",
      {.session_timeout_ms = 600,
       .standalone_join = [&](Group g, const proto::MemberInfo& m, milliseconds lease) {
         {
           std::lock_guard<std::mutex> lock(mu);
           leases.push_back(lease.count());
         }
         return (*driver)->AcceptRemoteMember(g, m, lease);
       }});
  ASSERT_TRUE(follower.ok());
  auto mine = (*follower)->NewMembership(Group::kWorkers);
  ASSERT_TRUE(mine->Join(w).ok());
  EXPECT_EQ(mine->Members().status().code(), absl::StatusCode::kFailedPrecondition);
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_EQ(workers->Members()->size(), 1u);
  mine->Leave();
  EXPECT_EQ(workers->Members()->size(), 0u);
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_GE(leases.size(), 4u);  // every 200 ms (a third of the lease), then the leave
  EXPECT_EQ(leases.front(), 600);
  EXPECT_EQ(leases.back(), 0);
  // A ZooKeeper-less driver is the only coordinator that accepts them.
  EXPECT_EQ((*follower)->AcceptRemoteMember(Group::kWorkers, w, milliseconds(1)).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace sluice::coord
