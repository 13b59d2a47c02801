// Unit tests of ReplicatedLog as a generic log: three logs (real RocksDB
// each), each over a toy key-value state machine that knows nothing of
// Sluice, joined by an in-memory network whose links a test can cut. Commit
// needs a quorum; followers catch up from zero, from the middle and across a
// snapshot; compaction folds records into the state machine's snapshot; a
// new leader adopts committed records it lacks and drops an old leader's
// uncommitted tail; a lower epoch is fenced; every committed record survives
// a crash of all three machines that loses their unsynced writes; a standby
// or a leader whose disk fills catches up by itself once it is freed.
#include "lib/wal/replicated_log.h"
#include "lib/common/version.h"

#include <filesystem>
#include <future>
#include <iostream>
#include <set>
#include <shared_mutex>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/env.h"
#include "test/harness/fault_injection_fs.h"
#include "test/harness/util.h"

namespace sluice::wal {
namespace {

// The toy state machine: payloads "key=value" set a key; LeaderChange
// records set the last leader's epoch. Its snapshot is its text form.
class KeyValueMachine final : public StateMachine {
 public:
  Status Apply(const proto::WalRecord& r) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (r.has_leader_change()) {
      last_leader_epoch_ = r.leader_change().epoch();
      return absl::OkStatus();
    }
    const size_t eq = r.payload().find('=');
    if (eq == std::string::npos) return absl::InvalidArgumentError("not key=value: " + r.payload());
    kv_[r.payload().substr(0, eq)] = r.payload().substr(eq + 1);
    return absl::OkStatus();
  }
  std::string Snapshot() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out = "epoch=" + std::to_string(last_leader_epoch_) + "\n";
    for (const auto& [k, v] : kv_) out += k + "=" + v + "\n";
    return out;
  }
  Status Restore(std::string_view snapshot) override {
    std::lock_guard<std::mutex> lock(mu_);
    kv_.clear();
    last_leader_epoch_ = 0;
    std::istringstream in{std::string(snapshot)};
    std::string line;
    while (std::getline(in, line)) {
      const size_t eq = line.find('=');
      if (eq == std::string::npos) return absl::DataLossError("bad snapshot line: " + line);
      if (line.starts_with("epoch=")) {
        last_leader_epoch_ = std::stoll(line.substr(eq + 1));
      } else {
        kv_[line.substr(0, eq)] = line.substr(eq + 1);
      }
    }
    return absl::OkStatus();
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return kv_.size();
  }
  int64_t last_leader_epoch() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_leader_epoch_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::string> kv_;
  int64_t last_leader_epoch_ = 0;
};

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

// The payload that sets key k<n> to n.
std::string Mark(int64_t n) { return "k" + std::to_string(n) + "=" + std::to_string(n); }

class ReplicatedLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/sluice-rlog-XXXXXX";
    dir_ = ::mkdtemp(templ);
    for (const char* id : {"a", "b", "c"}) Open(id);
  }
  void TearDown() override {
    for (auto& [id, log] : logs_) log->StepDown();
    node_env_.clear();
    for (auto& [id, log] : logs_) net_.Remove(id);
    logs_.clear();
    machines_.clear();
    owned_envs_.clear();
    std::filesystem::remove_all(dir_);
  }

  void Open(const std::string& id, int64_t compact_every = 1'000'000) {
    net_.Remove(id);  // no call is inside the old log when it goes
    logs_.erase(id);
    auto store = WalStore::Open({.path = dir_ + "/" + id,
                                 .env = node_env_.contains(id) ? node_env_.at(id) : env_,
                                 .resume_interval = std::chrono::milliseconds(100)});
    ASSERT_TRUE(store.ok()) << store.status();
    Network* net = &net_;
    machines_[id] = std::make_unique<KeyValueMachine>();  // a restart starts from nothing
    auto log = std::make_unique<ReplicatedLog>(
        std::move(*store), machines_[id].get(),
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
  const KeyValueMachine& State(const std::string& id) { return *machines_.at(id); }
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
      if (!r.has_leader_change()) out.push_back(std::stoll(r.payload().substr(r.payload().find('=') + 1)));
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
  rocksdb::Env* env_ = nullptr;  // null: the real one
  std::map<std::string, rocksdb::Env*> node_env_;  // one node's own, over env_
  // Envs a test made for node_env_: they outlive the logs over them.
  std::vector<std::unique_ptr<rocksdb::Env>> owned_envs_;
  Network net_;
  std::map<std::string, std::unique_ptr<KeyValueMachine>> machines_;
  std::map<std::string, std::unique_ptr<ReplicatedLog>> logs_;
};

TEST_F(ReplicatedLogTest, LeaderCommitsOnQuorumAndFollowersApply) {
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 100);
  const int64_t last = L("a").Stats().last_seq;
  EXPECT_EQ(last, 101);  // LeaderChange + 100 markers
  for (const char* id : {"b", "c"}) {
    ASSERT_TRUE(WaitCommit(id, last)) << id;
    EXPECT_EQ(State(id).size(), 100u) << id;
    EXPECT_EQ(State(id).last_leader_epoch(), 1);
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
  EXPECT_EQ(State("c").size(), 350u);
  EXPECT_GE(L("c").Stats().snapshot_seq, 300);
  // c survives a restart with the same view.
  L("c").StepDown();
  Open("c", 100);
  EXPECT_EQ(State("c").size(), 350u);
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
  EXPECT_EQ(State("c").last_leader_epoch(), 2);
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
  EXPECT_EQ(State("c").size(), 120u);
}

TEST_F(ReplicatedLogTest, ASnapshotOfAnUnknownFormatIsRefusedBeforeAnythingIsWritten) {
  for (const char* id : {"a", "b", "c"}) Open(id, /*compact_every=*/50);
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 60);
  ASSERT_TRUE(WaitCommit("c", 61));
  auto snap = L("a").Snapshot();
  ASSERT_TRUE(snap.has_value());
  proto::WalInstallSnapshotRequest newer;
  newer.set_epoch(1);
  *newer.mutable_snapshot() = *snap;
  newer.mutable_snapshot()->set_last_seq(500);
  newer.mutable_snapshot()->set_format(static_cast<proto::WalFormat>(version::kWalFormat + 1));
  proto::WalInstallSnapshotResponse resp;
  Status st = L("c").HandleInstallSnapshot(newer, &resp);
  // Not FAILED_PRECONDITION: that would tell the leader it is fenced.
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("format " + std::to_string(version::kWalFormat + 1)));
  EXPECT_EQ(L("c").Stats().last_seq, 61);
  EXPECT_EQ(State("c").size(), 60u);
}

TEST_F(ReplicatedLogTest, CompactionFoldsRecordsIntoTheStateMachinesSnapshot) {
  for (const char* id : {"a", "b", "c"}) Open(id, /*compact_every=*/100);
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 250);
  ASSERT_TRUE(WaitCommit("b", 251));
  for (const char* id : {"a", "b"}) {
    EXPECT_GE(L(id).Stats().snapshot_seq, 200) << id;
    auto snap = L(id).Snapshot();
    ASSERT_TRUE(snap.has_value()) << id;
    EXPECT_EQ(static_cast<int>(snap->format()), version::kWalFormat);
    // The snapshot is the state machine's own text, as of its last record.
    EXPECT_THAT(snap->state(), ::testing::StartsWith("epoch=1\n"));
    EXPECT_EQ(L(id).ReadCommitted(50, 10).status().code(), absl::StatusCode::kOutOfRange) << id;
  }
  // A restart rebuilds the state from the snapshot and the records after it.
  L("b").StepDown();
  Open("b", 100);
  EXPECT_EQ(State("b").size(), 250u);
  EXPECT_EQ(State("b").last_leader_epoch(), 1);
}

TEST_F(ReplicatedLogTest, EveryCommittedRecordSurvivesACrashThatLosesUnsyncedWrites) {
  // All three machines share one file system that can lose what was not
  // synced; the whole group crashes at once, then restarts.
  for (auto& [id, log] : logs_) log->StepDown();
  for (const char* id : {"a", "b", "c"}) {
    net_.Remove(id);
    logs_.erase(id);
  }
  auto fs = std::make_shared<testing::FaultInjectionFS>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  env_ = env.get();
  for (const char* id : {"a", "b", "c"}) Open(id, /*compact_every=*/64);
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 200);  // each returned: committed on a quorum
  const int64_t committed = L("a").Stats().commit_seq;
  fs->Deactivate();  // the machines die here
  for (auto& [id, log] : logs_) log->StepDown();
  for (const char* id : {"a", "b", "c"}) {
    net_.Remove(id);
    logs_.erase(id);
  }
  EXPECT_GT(fs->DropUnsyncedData(), 0u);
  env_ = nullptr;
  const auto restart = std::chrono::steady_clock::now();
  for (const char* id : {"a", "b", "c"}) Open(id, 64);
  // Any quorum's new leader has every committed record.
  net_.Isolate("a");
  ASSERT_TRUE(Lead("b", 2).ok());
  EXPECT_GE(L("b").Stats().commit_seq, committed);
  EXPECT_EQ(State("b").size(), 200u);
  AppendN("b", 200, 1);
  // Liveness: from the restart to the next committed record (reopen, catch
  // up from a quorum, LeaderChange, one append) well within a second here.
  const auto next_commit = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - restart);
  std::printf("restart -> next committed record: %lld ms\n", static_cast<long long>(next_commit.count()));
  EXPECT_LT(next_commit, std::chrono::seconds(5));
  ASSERT_TRUE(WaitCommit("c", L("b").Stats().last_seq));
  EXPECT_EQ(State("c").size(), 201u);
}


// The leader's view of standby `id`.
WalPeerStats PeerOf(const WalStats& leader, const std::string& id) {
  for (const WalPeerStats& p : leader.peers) {
    if (p.id == id) return p;
  }
  return {};
}

TEST_F(ReplicatedLogTest, AStandbyWhoseDiskFillsCatchesUpOnceFreedWithoutARestart) {
  auto fs = std::make_shared<testing::FaultInjectionFS>(rocksdb::FileSystem::Default());
  owned_envs_.push_back(rocksdb::NewCompositeEnv(fs));
  node_env_["c"] = owned_envs_.back().get();
  Open("c");
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 20);
  ASSERT_TRUE(WaitCommit("c", 21));

  fs->SetDiskFull(true);
  AppendN("a", 20, 50);  // a and b are a quorum: the log goes on
  // The leader says how far c lags and why; c says its store is degraded.
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        WalPeerStats c = PeerOf(L("a").Stats(), "c");
        return c.lag > 0 && c.last_error.find("No space left on device") != std::string::npos;
      },
      std::chrono::seconds(5)))
      << PeerOf(L("a").Stats(), "c").last_error;
  EXPECT_EQ(PeerOf(L("a").Stats(), "b").last_error, "");
  EXPECT_TRUE(L("c").Stats().store.degraded);
  EXPECT_THAT(L("c").Stats().store.error, ::testing::HasSubstr("No space left on device"));
  EXPECT_LT(L("c").Stats().last_seq, L("a").Stats().last_seq);

  // Freed: c resumes its store and catches up by itself, no restart.
  const auto freed = std::chrono::steady_clock::now();
  fs->SetDiskFull(false);
  ASSERT_TRUE(WaitCommit("c", L("a").Stats().last_seq));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - freed);
  std::cout << "standby back in sync " << took.count() << " ms after its disk was freed\n";
  EXPECT_LT(took, std::chrono::seconds(10));
  EXPECT_TRUE(testing::WaitUntil([&] { return !L("c").Stats().store.degraded; }, std::chrono::seconds(2)));
  EXPECT_EQ(MarkersOf("c").size(), 70u);
  AppendN("a", 70, 5);
  ASSERT_TRUE(WaitCommit("c", L("a").Stats().last_seq));
  EXPECT_EQ(PeerOf(L("a").Stats(), "c").last_error, "");
  EXPECT_EQ(PeerOf(L("a").Stats(), "c").lag, 0);
}

TEST_F(ReplicatedLogTest, ALeaderWhoseDiskFillsStepsDownAndCatchesUpAsAStandby) {
  auto fs = std::make_shared<testing::FaultInjectionFS>(rocksdb::FileSystem::Default());
  owned_envs_.push_back(rocksdb::NewCompositeEnv(fs));
  node_env_["a"] = owned_envs_.back().get();
  Open("a");
  std::atomic<bool> told{false};
  L("a").SetOnFenced([&](int64_t) { told = true; });
  ASSERT_TRUE(Lead("a", 1).ok());
  AppendN("a", 0, 20);

  fs->SetDiskFull(true);
  auto failed = L("a").Append(Mark(99));
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_TRUE(testing::WaitUntil([&] { return told.load(); }, std::chrono::seconds(2)));  // the driver steps down
  L("a").StepDown();
  ASSERT_TRUE(Lead("b", 2).ok());
  AppendN("b", 20, 30);
  EXPECT_TRUE(testing::WaitUntil(
      [&] { return PeerOf(L("b").Stats(), "a").last_error.find("No space left") != std::string::npos; },
      std::chrono::seconds(5)));

  const auto freed = std::chrono::steady_clock::now();
  fs->SetDiskFull(false);
  ASSERT_TRUE(WaitCommit("a", L("b").Stats().last_seq));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - freed);
  std::cout << "old leader back in sync " << took.count() << " ms after its disk was freed\n";
  EXPECT_LT(took, std::chrono::seconds(10));
  EXPECT_EQ(MarkersOf("a").size(), 50u);
}

}  // namespace
}  // namespace sluice::wal
