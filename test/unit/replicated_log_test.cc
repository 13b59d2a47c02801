// Unit tests of ReplicatedLog: three logs (real RocksDB each) joined by an
// in-memory network whose links a test can cut. Commit needs a quorum;
// followers catch up from zero, from the middle and across a snapshot; a new
// leader adopts committed records it lacks and drops an old leader's
// uncommitted tail; a lower epoch is fenced.
#include "lib/wal/replicated_log.h"

#include <filesystem>
#include <future>
#include <set>
#include <shared_mutex>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::wal {
namespace {

// Nodes by id; links "a->b" can be cut. A call over a cut link is UNAVAILABLE.
class Network {
 public:
  void Add(const std::string& id, ReplicatedLog* log) {
    std::lock_guard<std::mutex> lock(mu_);
    nodes_[id] = log;
  }
  void Cut(const std::string& a, const std::string& b) {
    std::lock_guard<std::mutex> lock(mu_);
    cut_.insert({a, b});
    cut_.insert({b, a});
  }
  void Isolate(const std::string& a) {
    for (const char* b : {"a", "b", "c"}) {
      if (a != b) Cut(a, b);
    }
  }
  void Heal() {
    std::lock_guard<std::mutex> lock(mu_);
    cut_.clear();
  }
  // Takes a node out; waits for calls into it to finish.
  void Remove(const std::string& id) {
    std::unique_lock<std::shared_mutex> calls(calls_mu_);
    std::lock_guard<std::mutex> lock(mu_);
    nodes_.erase(id);
  }
  // Runs `call` on the node `to` unless the link is cut or the node is gone.
  Status Call(const std::string& from, const std::string& to,
              const std::function<Status(ReplicatedLog*)>& call) {
    std::shared_lock<std::shared_mutex> calls(calls_mu_);
    ReplicatedLog* log = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = nodes_.find(to);
      if (!cut_.contains({from, to}) && it != nodes_.end()) log = it->second;
    }
    if (log != nullptr) return call(log);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return absl::UnavailableError(from + "->" + to + " is cut");
  }

 private:
  std::shared_mutex calls_mu_;
  std::mutex mu_;
  std::map<std::string, ReplicatedLog*> nodes_;
  std::set<std::pair<std::string, std::string>> cut_;
};

class LocalPeer final : public WalPeer {
 public:
  LocalPeer(Network* net, std::string from, std::string to)
      : net_(net), from_(std::move(from)), to_(std::move(to)) {}
  Status Append(const proto::WalAppendRequest& q, proto::WalAppendResponse* r) override {
    return net_->Call(from_, to_, [&](ReplicatedLog* log) { return log->HandleAppend(q, r); });
  }
  Status Fetch(const proto::WalFetchRequest& q, proto::WalFetchResponse* r) override {
    return net_->Call(from_, to_, [&](ReplicatedLog* log) { return log->HandleFetch(q, r); });
  }
  Status InstallSnapshot(const proto::WalInstallSnapshotRequest& q,
                         proto::WalInstallSnapshotResponse* r) override {
    return net_->Call(from_, to_, [&](ReplicatedLog* log) { return log->HandleInstallSnapshot(q, r); });
  }

 private:
  Network* net_;
  std::string from_, to_;
};

proto::WalRecord Mark(int64_t n) {
  proto::WalRecord r;
  r.mutable_marker()->set_client_seq(n);
  return r;
}

class ReplicatedLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/sluice-rlog-XXXXXX";
    dir_ = ::mkdtemp(templ);
    for (const char* id : {"a", "b", "c"}) Open(id);
  }
  void TearDown() override {
    for (auto& [id, log] : logs_) log->StepDown();
    for (auto& [id, log] : logs_) net_.Remove(id);
    logs_.clear();
    std::filesystem::remove_all(dir_);
  }

  void Open(const std::string& id, int64_t compact_every = 1'000'000) {
    net_.Remove(id);  // no call is inside the old log when it goes
    logs_.erase(id);
    auto store = WalStore::Open({.path = dir_ + "/" + id});
    ASSERT_TRUE(store.ok()) << store.status();
    Network* net = &net_;
    auto log = std::make_unique<ReplicatedLog>(
        std::move(*store),
        ReplicatedLogOptions{.id = id, .group_size = 3, .compact_every = compact_every, .max_batch = 50,
                             .heartbeat = std::chrono::milliseconds(20)},
        [net, id](const std::string& to) { return std::make_unique<LocalPeer>(net, id, to); });
    ASSERT_TRUE(log->Init().ok());
    std::vector<proto::MemberInfo> peers;
    for (const char* p : {"a", "b", "c"}) {
      proto::MemberInfo m;
      m.set_id(p);
      m.set_rpc_address(p);
      peers.push_back(m);
    }
    log->SetPeers(peers);
    net_.Add(id, log.get());
    logs_[id] = std::move(log);
  }
  ReplicatedLog& L(const std::string& id) { return *logs_.at(id); }
  Status Lead(const std::string& id, int64_t epoch) {
    return L(id).BecomeLeader(epoch, L(id).abort_generation());
  }

  // Appends n markers through `leader`, all expected to commit.
  void AppendN(const std::string& leader, int from, int n) {
    for (int i = from; i < from + n; ++i) {
      auto seq = L(leader).Append(Mark(i));
      ASSERT_TRUE(seq.ok()) << seq.status();
    }
  }
  std::vector<int64_t> MarkersOf(const std::string& id) {
    std::vector<int64_t> out;
    int64_t from = L(id).Stats().snapshot_seq + 1;
    auto records = L(id).ReadCommitted(from, 1'000'000);
    EXPECT_TRUE(records.ok()) << records.status();
    for (const auto& r : *records) {
      if (r.has_marker()) out.push_back(r.marker().client_seq());
    }
    return out;
  }
  bool WaitCommit(const std::string& id, int64_t seq) {
    for (int i = 0; i < 500; ++i) {
      if (L(id).Stats().commit_seq >= seq) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::string dir_;
  Network net_;
  std::map<std::string, std::unique_ptr<ReplicatedLog>> logs_;
};

TEST_F(ReplicatedLogTest, LeaderCommitsOnQuorumAndFollowersApply) {
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 100);
  const int64_t last = L("a").Stats().last_seq;
  EXPECT_EQ(last, 101);  // LeaderChange + 100 markers
  for (const char* id : {"b", "c"}) {
    ASSERT_TRUE(WaitCommit(id, last)) << id;
    EXPECT_EQ(L(id).State().markers(), 100) << id;
    EXPECT_EQ(L(id).State().last_leader_epoch(), 1);
  }
  EXPECT_EQ(MarkersOf("b").size(), 100u);
  EXPECT_EQ(L("b").Append(Mark(0)).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ReplicatedLogTest, NoCommitWithoutAQuorum) {
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 5);
  net_.Isolate("a");
  auto pending = std::async(std::launch::async, [&] { return L("a").Append(Mark(99)); });
  EXPECT_EQ(pending.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  // With one standby back, the record commits.
  net_.Heal();
  auto seq = pending.get();
  ASSERT_TRUE(seq.ok()) << seq.status();
  EXPECT_EQ(*seq, 7);
}

TEST_F(ReplicatedLogTest, StandbyCatchesUpFromZeroAndFromTheMiddle) {
  net_.Isolate("c");
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 120);  // c has nothing (catch-up from zero)
  net_.Heal();
  ASSERT_TRUE(WaitCommit("c", 121));
  EXPECT_EQ(MarkersOf("c").size(), 120u);
  net_.Isolate("c");
  AppendN("a", 120, 80);  // c stops in the middle
  net_.Heal();
  ASSERT_TRUE(WaitCommit("c", 201));
  std::vector<int64_t> want;
  for (int i = 0; i < 200; ++i) want.push_back(i);
  EXPECT_EQ(MarkersOf("c"), want);
}

TEST_F(ReplicatedLogTest, StandbyCatchesUpAcrossASnapshot) {
  for (const char* id : {"a", "b", "c"}) Open(id, /*compact_every=*/100);
  net_.Isolate("c");
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 350);
  EXPECT_GE(L("a").Stats().snapshot_seq, 300);  // compaction ran on the leader
  net_.Heal();
  ASSERT_TRUE(WaitCommit("c", 351));
  EXPECT_EQ(L("c").State().markers(), 350);
  EXPECT_GE(L("c").Stats().snapshot_seq, 300);
  // c survives a restart with the same view.
  L("c").StepDown();
  Open("c", 100);
  EXPECT_EQ(L("c").State().markers(), 350);
}

TEST_F(ReplicatedLogTest, NewLeaderAdoptsCommittedRecordsItLacks) {
  net_.Isolate("c");
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 40);  // committed on a and b only
  L("a").StepDown();
  net_.Heal();
  net_.Isolate("a");  // a is gone; c leads with b
  ASSERT_TRUE(Lead("c", 2).ok());
  std::vector<int64_t> want;
  for (int i = 0; i < 40; ++i) want.push_back(i);
  EXPECT_EQ(MarkersOf("c"), want);
  AppendN("c", 40, 10);
  EXPECT_EQ(L("c").State().last_leader_epoch(), 2);
}

TEST_F(ReplicatedLogTest, OldLeadersUncommittedTailIsDropped) {
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 10);
  net_.Isolate("a");
  // a writes record 12 locally; it can never commit.
  auto lost = std::async(std::launch::async, [&] { return L("a").Append(Mark(1000)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(L("a").Stats().last_seq, 12);
  ASSERT_TRUE(Lead("b", 2).ok());  // with c
  AppendN("b", 10, 5);
  L("a").Abort();
  EXPECT_EQ(lost.get().status().code(), absl::StatusCode::kUnavailable);
  L("a").StepDown();
  net_.Heal();
  ASSERT_TRUE(WaitCommit("a", L("b").Stats().last_seq));
  std::vector<int64_t> want;
  for (int i = 0; i < 15; ++i) want.push_back(i);
  EXPECT_EQ(MarkersOf("a"), want);  // 1000 is gone
}

TEST_F(ReplicatedLogTest, LowerEpochIsFencedAndTheOldLeaderIsTold) {
  std::promise<int64_t> fenced;
  L("a").SetOnFenced([&](int64_t e) { fenced.set_value(e); });
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 3);
  net_.Cut("a", "b");
  net_.Cut("a", "c");
  ASSERT_TRUE(Lead("b", 2).ok());  // raises c's fence to 2
  net_.Heal();
  // a's next append reaches standbys that refuse epoch 1.
  auto r = L("a").Append(Mark(7));
  EXPECT_FALSE(r.ok());
  auto f = fenced.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  proto::WalAppendRequest stale;
  stale.set_epoch(1);
  proto::WalAppendResponse resp;
  EXPECT_EQ(L("c").HandleAppend(stale, &resp).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Lead("a", 1).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ReplicatedLogTest, AnAbortBeforeTheTermBeginsIsNotLost) {
  const int64_t generation = L("a").abort_generation();
  L("a").Abort();  // e.g. "lost" arrived right after "elected"
  EXPECT_EQ(L("a").BecomeLeader(1, generation).code(), absl::StatusCode::kUnavailable);
  L("b").Close();
  EXPECT_EQ(Lead("b", 2).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Lead("c", 3).ok());
}

TEST_F(ReplicatedLogTest, StaleSnapshotDoesNotThrowAwayRecords) {
  for (const char* id : {"a", "b", "c"}) Open(id, /*compact_every=*/50);
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 120);
  ASSERT_TRUE(WaitCommit("c", 121));
  auto snap = L("a").Snapshot();
  ASSERT_TRUE(snap.has_value());
  // A retried, late InstallSnapshot for a point c has long passed.
  proto::WalInstallSnapshotRequest late;
  late.set_epoch(1);
  *late.mutable_snapshot() = *snap;
  late.mutable_snapshot()->set_last_seq(40);
  proto::WalInstallSnapshotResponse resp;
  ASSERT_TRUE(L("c").HandleInstallSnapshot(late, &resp).ok());
  EXPECT_EQ(L("c").Stats().last_seq, 121);
  EXPECT_EQ(L("c").Stats().commit_seq, 121);
  EXPECT_EQ(L("c").State().markers(), 120);
}

}  // namespace
}  // namespace sluice::wal
