// ReduceState's receiving side (ReplicateState's Apply): a delta on top of
// the base it names, a snapshot first when the base is missing, and never a
// roll-back of a copy that is already past the base (a stale attempt).
#include "lib/worker/reduce_state.h"

#include <stdlib.h>

#include <filesystem>
#include <map>

#include "fmt/format.h"
#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

proto::StateChunk Chunk(int64_t base, int64_t batch, bool snapshot, bool last,
                        std::vector<std::pair<std::string, std::string>> entries) {
  proto::StateChunk c;
  c.set_job_id("j");
  c.set_partition(0);
  c.set_base_batch(base);
  c.set_batch(batch);
  c.set_snapshot(snapshot);
  c.set_last(last);
  for (auto& [k, v] : entries) {
    proto::StateEntry* e = c.add_entries();
    e->set_key(k);
    e->set_value(v);
  }
  return c;
}

class ReduceStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "/sluice-reduce-state-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    auto s = ReduceState::Open(dir_ + "/state", "worker-2", /*channels=*/nullptr);  // receiving side only
    ASSERT_TRUE(s.ok()) << s.status();
    state_ = std::move(*s);
  }
  void TearDown() override {
    state_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::optional<std::string> ValueAsOf(int64_t base, const std::string& key) {
    auto all = state_->store()->ReadAsOf("j", 0, base);
    EXPECT_TRUE(all.ok() && all->has_value());
    for (const state::Change& c : **all) {
      if (c.key == key) return c.value;
    }
    return std::nullopt;
  }

  std::string dir_;
  std::unique_ptr<ReduceState> state_;
};

TEST_F(ReduceStateTest, ADeltaNeedsItsBaseAndAStaleStreamNeverRollsBack) {
  // No copy yet: a delta alone is refused with NOT_FOUND (the sender then
  // sends the whole state), a snapshot + delta is taken.
  Status lacking = state_->Apply({Chunk(4, 5, false, true, {{"k", "5"}})});
  EXPECT_TRUE(absl::IsNotFound(lacking)) << lacking;
  ASSERT_TRUE(state_->Apply({Chunk(4, 5, true, false, {{"k", "4"}}), Chunk(4, 5, false, true, {{"k", "5"}})}).ok());
  EXPECT_EQ(ValueAsOf(5, "k"), "5");
  // Batches 6 and 7 commit on top; the copy is folded to 6.
  ASSERT_TRUE(state_->Apply({Chunk(5, 6, false, true, {{"k", "6"}})}).ok());
  ASSERT_TRUE(state_->Apply({Chunk(6, 7, false, true, {{"k", "7"}})}).ok());
  EXPECT_EQ(state_->store()->FoldedBatch("j", 0).value(), 6);
  // A paused owner wakes up and sends its attempt at batch 5 with a snapshot
  // as of 4: refused, nothing rolled back.
  Status stale = state_->Apply({Chunk(4, 5, true, false, {{"k", "4"}}), Chunk(4, 5, false, true, {{"k", "5"}})});
  EXPECT_TRUE(absl::IsAborted(stale)) << stale;
  EXPECT_EQ(ValueAsOf(7, "k"), "7");
  // A stream that ends without its last chunk is not applied.
  Status cut = state_->Apply({Chunk(7, 8, false, false, {{"k", "8"}})});
  EXPECT_TRUE(absl::IsInvalidArgument(cut)) << cut;
  EXPECT_EQ(ValueAsOf(7, "k"), "7");
}

TEST_F(ReduceStateTest, ASnapshotIsReadOnly) {
  ASSERT_TRUE(state_->Apply({Chunk(0, 1, true, false, {{"a", "0"}}), Chunk(0, 1, false, true, {{"a", "1"}})}).ok());
  ASSERT_TRUE(state_->Apply({Chunk(1, 2, false, true, {{"a", "2"}})}).ok());
  std::vector<proto::StateChunk> sent;
  ASSERT_TRUE(state_->Snapshot("j", 0, 1, /*keep_changes=*/false, [&](const proto::StateChunk& c) {
    sent.push_back(c);
    return true;
  }).ok());
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_TRUE(sent[0].last());
  ASSERT_EQ(sent[0].entries_size(), 1);
  EXPECT_EQ(sent[0].entries(0).value(), "1");
  // The delta of batch 2 was not dropped by the snapshot as of 1.
  EXPECT_EQ(ValueAsOf(2, "a"), "2");
  Status missing = state_->Snapshot("j", 0, 5, /*keep_changes=*/false, [](const proto::StateChunk&) { return true; });
  EXPECT_TRUE(absl::IsNotFound(missing)) << missing;
}

// A snapshot streamed to another worker (FetchState: a warm, a new owner)
// holds the partition's lock only to freeze it: while the reader takes the
// first chunks, the partition's next batch takes the lock and folds a delta
// that rewrites every key, and the rest of the stream still carries the
// state as of its batch. 3 MB of state: several 1 MiB chunks.
TEST_F(ReduceStateTest, ASnapshotStreamsOutsideThePartitionsLock) {
  std::vector<std::pair<std::string, std::string>> at0, at2;
  for (int i = 0; i < 3000; ++i) {
    const std::string key = fmt::format("k{:04}", i);
    at0.emplace_back(key, std::string(1000, '0'));
    at2.emplace_back(key, std::string(1000, '2'));
  }
  ASSERT_TRUE(state_->Apply({Chunk(0, 1, true, false, at0), Chunk(0, 1, false, true, {{"k0000", "1"}})}).ok());
  ASSERT_TRUE(state_->Apply({Chunk(1, 2, false, true, at2)}).ok());
  bool locked_while_streaming = false;
  int chunks = 0;
  std::map<std::string, std::string> sent;
  ASSERT_TRUE(state_->Snapshot("j", 0, 1, /*keep_changes=*/false, [&](const proto::StateChunk& c) {
    if (chunks++ == 0) {
      std::unique_lock<std::mutex> lock(state_->LockOf("j", 0), std::try_to_lock);
      locked_while_streaming = lock.owns_lock();
      if (locked_while_streaming) {  // the next batch, folded meanwhile
        EXPECT_TRUE(*state_->store()->Prepare("j", 0, 2));
      }
    }
    for (const proto::StateEntry& e : c.entries()) sent[e.key()] = e.value();
    return true;
  }).ok());
  EXPECT_TRUE(locked_while_streaming) << "the stream held the partition's lock";
  EXPECT_GE(chunks, 3);
  ASSERT_EQ(sent.size(), 3000u);
  int as_of_1 = 0;
  for (const auto& [k, v] : sent) as_of_1 += v == (k == "k0000" ? std::string("1") : std::string(1000, '0'));
  EXPECT_EQ(as_of_1, 3000) << "entries streamed after the fold are not as of the stream's batch";
  EXPECT_EQ(ValueAsOf(2, "k0001"), std::string(1000, '2'));
}

TEST_F(ReduceStateTest, AStoppedJobsStateIsDropped) {
  ASSERT_TRUE(state_->Apply({Chunk(0, 1, true, false, {{"a", "0"}}), Chunk(0, 1, false, true, {{"a", "1"}})}).ok());
  ASSERT_EQ(state_->store()->Partitions().value().size(), 1u);
  ASSERT_TRUE(state_->DropJob("other").ok());
  EXPECT_EQ(state_->store()->Partitions().value().size(), 1u);
  ASSERT_TRUE(state_->DropJob("j").ok());
  EXPECT_TRUE(state_->store()->Partitions().value().empty());
  EXPECT_EQ(state_->store()->Stats("j").keys, 0);
}

TEST_F(ReduceStateTest, ASnapshotAloneInstallsTheStateAsOfItsBase) {
  // A savepoint's restore: snapshot chunks only (batch unset), as of 41; the
  // next batch's delta then applies on top of 41.
  ASSERT_TRUE(state_->Apply({Chunk(41, 0, true, false, {{"a", "1"}}), Chunk(41, 0, true, true, {{"b", "2"}})}).ok());
  EXPECT_EQ(state_->store()->FoldedBatch("j", 0).value(), 41);
  EXPECT_EQ(ValueAsOf(41, "a"), "1");
  EXPECT_EQ(ValueAsOf(41, "b"), "2");
  ASSERT_TRUE(state_->Apply({Chunk(41, 42, false, true, {{"a", "3"}})}).ok());
  EXPECT_EQ(ValueAsOf(42, "a"), "3");
  // Once past 41, the same snapshot again is a stale stream: refused.
  ASSERT_TRUE(state_->Apply({Chunk(42, 43, false, true, {{"b", "4"}})}).ok());
  Status stale = state_->Apply({Chunk(41, 0, true, true, {{"a", "1"}})});
  EXPECT_TRUE(absl::IsAborted(stale)) << stale;
}


// The sending side (ReplicateVia) against a second ReduceState: an owner
// that runs every batch, a replica that takes only some of them.
class ReplicateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "/sluice-replicate-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    owner_ = std::move(ReduceState::Open(dir_ + "/owner", "worker-1", nullptr).value());
    replica_ = std::move(ReduceState::Open(dir_ + "/replica", "worker-2", nullptr).value());
  }
  void TearDown() override {
    owner_.reset();
    replica_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Batch `b` on the owner (100 keys, 10 of them changed per batch), copied
  // to the replica if `copy`; what went over the wire in `sent`.
  void Run(int64_t b, bool copy, ReduceState::Sent* sent = nullptr) {
    ASSERT_TRUE(owner_->store()->Prepare("j", 0, b - 1).value());
    std::vector<state::Change> changes;
    for (int k = 0; k < 100; ++k) {
      if (b == 0 || k % 10 == b % 10) changes.push_back({"key" + std::to_string(k), std::to_string(b)});
    }
    ASSERT_TRUE(owner_->store()->WriteDelta("j", 0, b, changes).ok());
    if (!copy) return;
    Status st = owner_->ReplicateVia(
        1, "j", 0, b - 1, b, "worker-2",
        [&](const rpc::ChunkProducer<proto::StateChunk>& produce, int64_t,
            bool) -> Result<proto::ReplicateStateResponse> {
          std::vector<proto::StateChunk> chunks;
          RETURN_IF_ERROR(produce([&](const proto::StateChunk& c) {
            chunks.push_back(c);
            return true;
          }));
          return replica_->ApplyAnswering(chunks);
        },
        sent);
    ASSERT_TRUE(st.ok()) << st;
  }
  void ExpectSame(int64_t as_of) {
    auto want = owner_->store()->ReadAsOf("j", 0, as_of).value();
    auto got = replica_->store()->ReadAsOf("j", 0, as_of).value();
    ASSERT_TRUE(want.has_value());
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, *want);
  }

  std::string dir_;
  std::unique_ptr<ReduceState> owner_, replica_;
};

TEST_F(ReplicateTest, AReplicaAFewBatchesBehindGetsOnlyTheChanges) {
  ReduceState::Sent sent;
  Run(0, true, &sent);  // the first batch: the replica starts from empty
  EXPECT_EQ(sent.streams, 1);
  EXPECT_EQ(sent.snapshot_entries, 0);
  EXPECT_EQ(sent.delta_entries, 100);
  for (int64_t b = 1; b <= 2; ++b) {
    Run(b, true, &sent);
    EXPECT_EQ(sent.streams, 1);
    EXPECT_EQ(sent.delta_entries, 10);
    EXPECT_EQ(sent.catch_up_entries + sent.snapshot_entries, 0);
  }
  // Batches 3..5 commit without this replica (it was away, or is new here
  // or new here and warmed): batch 6 sends the changes since its copy's
  // folded batch 1 (its delta of 2 is never trusted: no later batch named 2
  // committed to it) — 2..5, 40 keys, not the 100 of the whole state.
  for (int64_t b = 3; b <= 5; ++b) Run(b, false);
  Run(6, true, &sent);
  EXPECT_EQ(sent.streams, 2);
  EXPECT_EQ(sent.catch_up_entries, 40);
  EXPECT_EQ(sent.snapshot_entries, 0);
  EXPECT_EQ(sent.delta_entries, 20);
  ASSERT_TRUE(replica_->store()->Prepare("j", 0, 6).value());
  ASSERT_TRUE(owner_->store()->Prepare("j", 0, 6).value());
  ExpectSame(6);
  // In step again: the delta alone.
  Run(7, true, &sent);
  EXPECT_EQ(sent.streams, 1);
  EXPECT_EQ(sent.catch_up_entries + sent.snapshot_entries, 0);
}

TEST_F(ReplicateTest, TheWholeStateWhenTheDeltasSinceTheCopyAreGone) {
  ReduceState::Sent sent;
  Run(0, true);
  Run(1, true);
  // 30 batches without the replica: the owner snapshots (every 10 folds)
  // and deletes the deltas the replica would need.
  for (int64_t b = 2; b <= 31; ++b) Run(b, false);
  Run(32, true, &sent);
  EXPECT_EQ(sent.streams, 2);
  EXPECT_EQ(sent.catch_up_entries, 0);
  EXPECT_EQ(sent.snapshot_entries, 100);
  ASSERT_TRUE(replica_->store()->Prepare("j", 0, 32).value());
  ASSERT_TRUE(owner_->store()->Prepare("j", 0, 32).value());
  ExpectSame(32);
}

TEST_F(ReplicateTest, AnOlderSenderStillGetsNotFound) {
  // A stream without answer_lacking (a sender of the previous release): the
  // replica lacking the base answers NOT_FOUND, as before.
  proto::StateChunk c;
  c.set_job_id("j");
  c.set_base_batch(4);
  c.set_batch(5);
  c.set_last(true);
  EXPECT_TRUE(absl::IsNotFound(replica_->Apply({c})));
  c.set_answer_lacking(true);
  auto answer = replica_->ApplyAnswering({c});
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_TRUE(answer->lacks_base());
  EXPECT_FALSE(answer->has_has_batch());
}

}  // namespace
}  // namespace sluice::worker
