// The replicated WAL across real driverd processes and real ZooKeeper: a
// client appends markers through whoever leads while the leader is killed
// (kill -9) again and again; every append that returned success is on the
// final leader, in order, with no gap and no duplicate; every restarted old
// leader catches up and becomes a standby with the same log. And the log
// survives a restart of the whole driver group.
#include <signal.h>

#include <atomic>
#include <iostream>
#include <thread>

#include "gtest/gtest.h"
#include "lib/rpc/driver_client.h"
#include "test/harness/local_cluster.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;

constexpr int kSessionTimeoutMs = 3000;

// The index of the driver whose WAL serves, or -1.
int ServingLeader(LocalCluster& c, int not_this = -1) {
  for (int i = 0; i < c.num_drivers(); ++i) {
    if (i == not_this || c.driver(i) == nullptr || !c.driver(i)->Running()) continue;
    auto st = GetDriverStatus(c.driver_address(i), milliseconds(300));
    if (st.ok() && st->role() == proto::DRIVER_ROLE_LEADER && st->wal().serving()) return i;
  }
  return -1;
}

int WaitServingLeader(LocalCluster& c, milliseconds timeout, int not_this = -1) {
  int leader = -1;
  WaitUntil([&] { return (leader = ServingLeader(c, not_this)) >= 0; }, timeout, milliseconds(50));
  return leader;
}

Status AppendMarker(const std::string& address, int64_t client_seq) {
  proto::AppendMarkerRequest req;
  req.set_client_id("wal-failover-test");
  req.set_client_seq(client_seq);
  req.set_payload(std::string(200, 'p'));
  return rpc::DriverClient(Channels(), address).AppendMarker(req, milliseconds(2000)).status();
}

// Every committed record of the driver at `address`, in order.
Result<std::vector<proto::DriverLogEntry>> ReadAll(const std::string& address) {
  rpc::DriverClient driver(Channels(), address);
  std::vector<proto::DriverLogEntry> out;
  int64_t from = 1;
  while (true) {
    proto::ReadWalRequest req;
    req.set_from_seq(from);
    req.set_max_records(5000);
    ASSIGN_OR_RETURN(proto::ReadWalResponse resp, driver.ReadWal(req, milliseconds(5000)));
    if (resp.has_snapshot()) return absl::FailedPreconditionError("log was compacted");
    if (resp.records().empty()) return out;
    for (const auto& r : resp.records()) out.push_back(r);
    from = out.back().seq() + 1;
  }
}

std::vector<int64_t> MarkerSeqs(const std::vector<proto::DriverLogEntry>& records) {
  std::vector<int64_t> out;
  for (const auto& r : records) {
    if (r.record().has_marker()) out.push_back(r.record().marker().client_seq());
  }
  return out;
}

std::unique_ptr<LocalCluster> StartDrivers(const TempDir& dir) {
  auto c = LocalCluster::Start({.dir = dir.path(), .drivers = 3, .workers = 0,
                                .driver_flags = {"--wal-compact-every", "1000000"},
                                .zk_session_timeout_ms = kSessionTimeoutMs});
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

TEST(WalFailover, AcknowledgedAppendsSurviveRepeatedLeaderKills) {
  TempDir dir;
  auto c = StartDrivers(dir);
  ASSERT_NE(c, nullptr);
  ASSERT_GE(WaitServingLeader(*c, milliseconds(15'000)), 0);

  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<int64_t> acked;  // guarded by mu
  std::atomic<int> target{-1};
  std::thread client([&] {
    int64_t next = 0;
    while (!stop) {
      int t = target.load();
      if (t < 0) {
        std::this_thread::sleep_for(milliseconds(20));
        continue;
      }
      const int64_t seq = next++;  // never reused: a retry is a new marker
      if (AppendMarker(c->driver_address(t), seq).ok()) {
        std::lock_guard<std::mutex> lock(mu);
        acked.push_back(seq);
      } else {
        target = -1;
      }
    }
  });
  // Keeps `target` pointed at the serving leader.
  std::thread finder([&] {
    while (!stop) {
      if (target.load() < 0) target = ServingLeader(*c);
      std::this_thread::sleep_for(milliseconds(50));
    }
  });

  auto acked_count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return acked.size();
  };
  constexpr int kKills = 4;
  size_t at_last_kill = 0;
  for (int k = 0; k < kKills; ++k) {
    // Appends flow again (through the new leader) before the next kill.
    ASSERT_TRUE(WaitUntil([&] { return acked_count() > at_last_kill + 20; }, milliseconds(15'000)))
        << "appends did not resume before kill " << k;
    std::this_thread::sleep_for(milliseconds(1000));
    const int leader = WaitServingLeader(*c, milliseconds(15'000));
    ASSERT_GE(leader, 0) << "no serving leader before kill " << k;
    at_last_kill = acked_count();
    c->KillDriver(leader);
    const int successor = WaitServingLeader(*c, milliseconds(kSessionTimeoutMs + 10'000), leader);
    ASSERT_GE(successor, 0) << "no new leader after kill " << k;
    ASSERT_TRUE(c->StartDriver(leader).ok());  // the old leader comes back as a standby
  }
  ASSERT_TRUE(WaitUntil([&] { return acked_count() > at_last_kill + 20; }, milliseconds(15'000)));
  std::this_thread::sleep_for(milliseconds(1000));
  stop = true;
  client.join();
  finder.join();

  const int leader = WaitServingLeader(*c, milliseconds(15'000));
  ASSERT_GE(leader, 0);
  auto records = ReadAll(c->driver_address(leader));
  ASSERT_TRUE(records.ok()) << records.status();
  // Contiguous sequence numbers from 1: no gap.
  for (size_t i = 0; i < records->size(); ++i) ASSERT_EQ((*records)[i].seq(), static_cast<int64_t>(i + 1));
  // The markers in log order: strictly increasing (in order, no duplicate),
  // and every acknowledged one is there.
  std::vector<int64_t> seqs = MarkerSeqs(*records);
  for (size_t i = 1; i < seqs.size(); ++i) ASSERT_LT(seqs[i - 1], seqs[i]) << "at " << i;
  std::set<int64_t> present(seqs.begin(), seqs.end());
  std::vector<int64_t> acked_copy;
  {
    std::lock_guard<std::mutex> lock(mu);
    acked_copy = acked;
  }
  ASSERT_GT(acked_copy.size(), 50u);
  std::cout << "acknowledged " << acked_copy.size() << " markers over " << kKills
            << " leader kills; the log holds " << seqs.size() << " markers in " << records->size()
            << " records" << std::endl;
  for (int64_t a : acked_copy) ASSERT_TRUE(present.contains(a)) << "acknowledged marker " << a << " lost";
  // At least kKills + 1 leader changes are in the log.
  int changes = 0;
  for (const auto& r : *records) changes += r.has_leader_change();
  EXPECT_GE(changes, kKills + 1);

  // Every driver, the restarted old leaders included, converges on this log.
  const int64_t commit = records->back().seq();
  for (int i = 0; i < c->num_drivers(); ++i) {
    if (i == leader) continue;
    ASSERT_TRUE(WaitUntil([&] {
      auto st = GetDriverStatus(c->driver_address(i));
      return st.ok() && st->wal().commit_seq() >= commit;
    }, milliseconds(10'000))) << c->driver_id(i) << " did not catch up";
    auto theirs = ReadAll(c->driver_address(i));
    ASSERT_TRUE(theirs.ok());
    ASSERT_GE(theirs->size(), records->size());
    for (size_t j = 0; j < records->size(); ++j) {
      ASSERT_EQ((*theirs)[j].SerializeAsString(), (*records)[j].SerializeAsString())
          << c->driver_id(i) << " differs at seq " << j + 1;
    }
    auto st = GetDriverStatus(c->driver_address(i));
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->role(), proto::DRIVER_ROLE_STANDBY);
  }
}

TEST(WalFailover, TheLogSurvivesARestartOfTheWholeGroup) {
  TempDir dir;
  auto c = StartDrivers(dir);
  ASSERT_NE(c, nullptr);
  int leader = WaitServingLeader(*c, milliseconds(15'000));
  ASSERT_GE(leader, 0);
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(AppendMarker(c->driver_address(leader), i).ok());
  for (int i = 0; i < c->num_drivers(); ++i) EXPECT_EQ(c->StopDriver(i), 0);
  for (int i = 0; i < c->num_drivers(); ++i) ASSERT_TRUE(c->StartDriver(i).ok());
  leader = WaitServingLeader(*c, milliseconds(20'000));
  ASSERT_GE(leader, 0);
  auto records = ReadAll(c->driver_address(leader));
  ASSERT_TRUE(records.ok()) << records.status();
  std::vector<int64_t> want;
  for (int i = 0; i < 200; ++i) want.push_back(i);
  EXPECT_EQ(MarkerSeqs(*records), want);
}

}  // namespace
}  // namespace sluice::testing
