// ReduceState's receiving side (ReplicateState's Apply): a delta on top of
// the base it names, a snapshot first when the base is missing, and never a
// roll-back of a copy that is already past the base (a stale attempt).
#include "lib/worker/reduce_state.h"

#include <stdlib.h>

#include <filesystem>

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
  ASSERT_TRUE(state_->Snapshot("j", 0, 1, [&](const proto::StateChunk& c) {
    sent.push_back(c);
    return true;
  }).ok());
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_TRUE(sent[0].last());
  ASSERT_EQ(sent[0].entries_size(), 1);
  EXPECT_EQ(sent[0].entries(0).value(), "1");
  // The delta of batch 2 was not dropped by the snapshot as of 1.
  EXPECT_EQ(ValueAsOf(2, "a"), "2");
  Status missing = state_->Snapshot("j", 0, 5, [](const proto::StateChunk&) { return true; });
  EXPECT_TRUE(absl::IsNotFound(missing)) << missing;
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

}  // namespace
}  // namespace sluice::worker
