// Leadership of real driverd processes over real ZooKeeper: one
// leader at a time with strictly increasing epochs through kill -9, SIGTERM
// and SIGSTOP of the leader; workers fence a stale epoch; the leader's view
// of the workers follows their deaths; an ensemble that loses a server keeps
// its leader.
#include <signal.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/worker_client.h"
#include "test/harness/local_cluster.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kSessionTimeoutMs = 4000;

// One observation of a driver claiming to lead.
struct Claim {
  Clock::time_point at;
  int driver;
  int64_t epoch;
};

// Polls every driver's GetStatus; remembers every leadership claim in order.
class LeaderSampler {
 public:
  explicit LeaderSampler(LocalCluster& c) : c_(c) {}

  // One round over all drivers; returns the indexes claiming to lead.
  std::vector<int> Sample() {
    std::vector<int> leaders;
    for (int i = 0; i < c_.num_drivers(); ++i) {
      Result<proto::DriverStatus> st = GetDriverStatus(c_.driver_address(i), milliseconds(300));
      if (st.ok() && st->role() == proto::DRIVER_ROLE_LEADER) {
        leaders.push_back(i);
        claims_.push_back({Clock::now(), i, st->epoch()});
      }
    }
    return leaders;
  }

  // Waits for a round with exactly one leader; returns it, or -1.
  int WaitForLeader(milliseconds timeout, int not_this = -1) {
    int leader = -1;
    WaitUntil([&] {
      std::vector<int> l = Sample();
      leader = l.size() == 1 && l[0] != not_this ? l[0] : -1;
      return leader >= 0;
    }, timeout, milliseconds(20));
    return leader;
  }

  // Once a driver has been seen leading with epoch E, no claim seen later
  // has a lower epoch, and one epoch belongs to one driver.
  void ExpectClaimsConsistent() const {
    int64_t highest = 0;
    std::map<int64_t, int> owner;
    for (const Claim& c : claims_) {
      EXPECT_GE(c.epoch, highest) << "driver " << c.driver << " claimed epoch " << c.epoch
                                  << " after epoch " << highest << " was seen";
      highest = std::max(highest, c.epoch);
      auto [it, inserted] = owner.emplace(c.epoch, c.driver);
      EXPECT_EQ(it->second, c.driver) << "epoch " << c.epoch << " claimed by two drivers";
    }
  }

  const std::vector<Claim>& claims() const { return claims_; }
  int64_t LastEpoch() const { return claims_.empty() ? 0 : claims_.back().epoch; }

 private:
  LocalCluster& c_;
  std::vector<Claim> claims_;
};

std::unique_ptr<LocalCluster> StartCluster(const TempDir& dir, int drivers, int workers,
                                           int zk_servers = 1) {
  auto c = LocalCluster::Start({.dir = dir.path(), .zk_servers = zk_servers, .drivers = drivers,
                                .workers = workers, .zk_session_timeout_ms = kSessionTimeoutMs});
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

TEST(Failover, OneLeaderAtATimeWithIncreasingEpochsThroughKillAndSigterm) {
  TempDir dir;
  auto c = StartCluster(dir, 3, 1);
  ASSERT_NE(c, nullptr);
  LeaderSampler sampler(*c);
  int leader = sampler.WaitForLeader(milliseconds(10'000));
  ASSERT_GE(leader, 0);

  // 30 s of sampling every 50 ms. Outside the failover windows there is
  // exactly one leader in every round; inside them at most one.
  const auto start = Clock::now();
  auto phase = [&](int seconds) { return start + std::chrono::seconds(seconds); };
  bool killed = false, termed = false, restarted = false;
  Clock::time_point window_end = start;
  int rounds = 0, rounds_without_leader_outside_windows = 0;
  std::optional<milliseconds> kill_failover, term_failover;
  Clock::time_point fault_at;
  int faulted = -1;
  while (Clock::now() < phase(30)) {
    if (!killed && Clock::now() >= phase(5)) {
      killed = true;
      faulted = leader;
      c->KillDriver(leader);
      fault_at = Clock::now();
      window_end = fault_at + milliseconds(kSessionTimeoutMs + 1000);
    } else if (killed && !termed && Clock::now() >= phase(14)) {
      termed = true;
      faulted = leader;
      ASSERT_TRUE(c->driver(leader)->Signal(SIGTERM).ok());
      fault_at = Clock::now();
      window_end = fault_at + milliseconds(1000);
    } else if (termed && !restarted && Clock::now() >= phase(20)) {
      restarted = true;
      for (int i = 0; i < c->num_drivers(); ++i) {
        if (!c->driver(i)->Running()) {
          ASSERT_TRUE(c->StartDriver(i).ok());
        }
      }
    }
    std::vector<int> leaders = sampler.Sample();
    ++rounds;
    ASSERT_LE(leaders.size(), 1u) << "two drivers claim to lead at once";
    if (leaders.size() == 1 && leaders[0] != leader) {
      EXPECT_NE(leaders[0], faulted);
      auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - fault_at);
      if (!term_failover && termed) term_failover = took;
      if (!kill_failover && !termed) kill_failover = took;
      leader = leaders[0];
    }
    if (leaders.empty() && Clock::now() > window_end) ++rounds_without_leader_outside_windows;
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_GT(rounds, 200);
  EXPECT_EQ(rounds_without_leader_outside_windows, 0);
  ASSERT_TRUE(kill_failover.has_value());
  ASSERT_TRUE(term_failover.has_value());
  EXPECT_LE(kill_failover->count(), kSessionTimeoutMs + 1000) << "kill -9 failover too slow";
  EXPECT_LE(term_failover->count(), 1000) << "SIGTERM handover too slow";
  sampler.ExpectClaimsConsistent();
  // Three terms were seen, with strictly increasing epochs.
  std::set<int64_t> epochs;
  for (const Claim& cl : sampler.claims()) epochs.insert(cl.epoch);
  EXPECT_GE(epochs.size(), 3u);
}

TEST(Failover, PausedLeaderIsFencedAndStepsDown) {
  TempDir dir;
  auto c = StartCluster(dir, 3, 1);
  ASSERT_NE(c, nullptr);
  LeaderSampler sampler(*c);
  const int old = sampler.WaitForLeader(milliseconds(10'000));
  ASSERT_GE(old, 0);
  const int64_t old_epoch = sampler.LastEpoch();
  // The worker has accepted the old leader's epoch.
  ASSERT_TRUE(WaitUntil([&] {
    auto w = GetWorkerStatus(c->worker_address(0));
    return w.ok() && w->highest_epoch() == old_epoch;
  }, milliseconds(5000)));

  ASSERT_TRUE(c->driver(old)->Signal(SIGSTOP).ok());
  const auto stopped = Clock::now();
  const int successor = sampler.WaitForLeader(milliseconds(kSessionTimeoutMs + 5000), old);
  ASSERT_GE(successor, 0);
  const int64_t new_epoch = sampler.LastEpoch();
  EXPECT_GT(new_epoch, old_epoch);
  ASSERT_TRUE(WaitUntil([&] {
    auto w = GetWorkerStatus(c->worker_address(0));
    return w.ok() && w->highest_epoch() == new_epoch;
  }, milliseconds(5000)));
  // Stay paused well past the session timeout, then resume.
  std::this_thread::sleep_until(stopped + milliseconds(kSessionTimeoutMs + 2000));
  ASSERT_TRUE(c->driver(old)->Signal(SIGCONT).ok());
  for (int i = 0; i < 60; ++i) {  // 3 s of rounds right after the resume
    std::vector<int> leaders = sampler.Sample();
    ASSERT_LE(leaders.size(), 1u);
    EXPECT_TRUE(leaders.empty() || leaders[0] == successor);
    std::this_thread::sleep_for(milliseconds(50));
  }
  auto old_status = GetDriverStatus(c->driver_address(old));
  ASSERT_TRUE(old_status.ok());
  EXPECT_EQ(old_status->role(), proto::DRIVER_ROLE_STANDBY);
  EXPECT_EQ(old_status->leader().id(), c->driver_id(successor));
  sampler.ExpectClaimsConsistent();

  // Anything still stamped with the old epoch is refused by the worker.
  proto::LeaderHeartbeatRequest stale;
  stale.set_epoch(old_epoch);
  stale.set_leader_id(c->driver_id(old));
  Status st = rpc::WorkerClient(Channels(), c->worker_address(0)).LeaderHeartbeat(stale).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("stale leader epoch"));
}

std::vector<std::string> WorkerIds(const proto::DriverStatus& s) {
  std::vector<std::string> ids;
  for (const auto& w : s.workers()) ids.push_back(w.id());
  return ids;
}

TEST(Failover, LeadersViewOfWorkersFollowsMembership) {
  TempDir dir;
  auto c = StartCluster(dir, 1, 3);
  ASSERT_NE(c, nullptr);
  LeaderSampler sampler(*c);
  ASSERT_EQ(sampler.WaitForLeader(milliseconds(10'000)), 0);
  auto view_is = [&](std::vector<std::string> want, milliseconds within) {
    return WaitUntil([&] {
      auto s = GetDriverStatus(c->driver_address(0));
      return s.ok() && WorkerIds(*s) == want;
    }, within);
  };
  ASSERT_TRUE(view_is({"worker-1", "worker-2", "worker-3"}, milliseconds(5000)));
  c->KillWorker(1);
  const auto killed = Clock::now();
  ASSERT_TRUE(view_is({"worker-1", "worker-3"}, milliseconds(kSessionTimeoutMs + 3000)));
  EXPECT_LE(Clock::now() - killed, milliseconds(kSessionTimeoutMs + 1500));
  c->KillWorker(2);
  ASSERT_TRUE(view_is({"worker-1"}, milliseconds(kSessionTimeoutMs + 3000)));
  // A restarted worker (same id) registers again once its old session is gone.
  ASSERT_TRUE(c->StartWorker(1).ok());
  ASSERT_TRUE(view_is({"worker-1", "worker-2"}, milliseconds(kSessionTimeoutMs + 5000)));
  // A clean stop leaves the group at once.
  EXPECT_EQ(c->StopWorker(0), 0);
  ASSERT_TRUE(view_is({"worker-2"}, milliseconds(1500)));
}

TEST(Failover, EnsembleLosingAServerKeepsTheLeader) {
  TempDir dir;
  auto c = StartCluster(dir, 3, 0, /*zk_servers=*/3);
  ASSERT_NE(c, nullptr);
  LeaderSampler sampler(*c);
  const int leader = sampler.WaitForLeader(milliseconds(10'000));
  ASSERT_GE(leader, 0);
  const int64_t epoch = sampler.LastEpoch();
  // Whichever server the leader's session is on, one of these stops it.
  for (int s = 0; s < c->zk().size(); ++s) {
    c->zk().StopServer(s);
    const auto until = Clock::now() + milliseconds(3000);
    while (Clock::now() < until) {
      for (int i : sampler.Sample()) EXPECT_EQ(i, leader) << "after stopping server " << s;
      std::this_thread::sleep_for(milliseconds(50));
    }
    ASSERT_TRUE(c->zk().RestartServer(s).ok());
    // The same driver leads, in the same term.
    EXPECT_EQ(sampler.WaitForLeader(milliseconds(10'000)), leader);
    EXPECT_EQ(sampler.LastEpoch(), epoch) << "after stopping server " << s;
  }
  sampler.ExpectClaimsConsistent();
}

TEST(Failover, AZooKeeperOutageIsSurvivedByReconnecting) {
  TempDir dir;
  auto c = StartCluster(dir, 3, 1);
  ASSERT_NE(c, nullptr);
  LeaderSampler sampler(*c);
  const int first = sampler.WaitForLeader(milliseconds(10'000));
  ASSERT_GE(first, 0);
  // Everyone has registered before ZooKeeper goes away.
  ASSERT_TRUE(WaitUntil([&] {
    auto s = GetDriverStatus(c->driver_address(first));
    return s.ok() && s->workers_size() == 1 && s->drivers_size() == 3;
  }, milliseconds(10'000)));
  // Twice: a short outage (sessions survive) and one longer than the session
  // timeout (sessions expire; everyone registers again in new sessions).
  for (int outage_ms : {1500, kSessionTimeoutMs + 4000}) {
    c->zk().StopServer(0);
    const auto until = Clock::now() + milliseconds(outage_ms);
    while (Clock::now() < until) {
      ASSERT_LE(sampler.Sample().size(), 1u);
      std::this_thread::sleep_for(milliseconds(100));
    }
    ASSERT_TRUE(c->zk().RestartServer(0).ok());
    // Nobody crashed, and the cluster comes back: one leader, the worker
    // registered and following it.
    for (int i = 0; i < c->num_drivers(); ++i) {
      EXPECT_TRUE(c->driver(i)->Running()) << c->driver_id(i) << " died in the outage";
    }
    EXPECT_TRUE(c->worker(0)->Running());
    const int leader = sampler.WaitForLeader(milliseconds(kSessionTimeoutMs + 10'000));
    ASSERT_GE(leader, 0) << "no leader after an outage of " << outage_ms << " ms";
    EXPECT_TRUE(WaitUntil([&] {
      auto s = GetDriverStatus(c->driver_address(leader));
      return s.ok() && WorkerIds(*s) == std::vector<std::string>{"worker-1"} && s->drivers_size() == 3;
    }, milliseconds(10'000)));
  }
  sampler.ExpectClaimsConsistent();
}

}  // namespace
}  // namespace sluice::testing
