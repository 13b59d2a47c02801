// Unit tests of the worker's BlockStore: memory budget, spill to RocksDB,
// backpressure when full, drop on commit, holdings.
#include "lib/worker/block_store.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

format::Block MakeBlock(const std::string& src, int32_t p, int64_t start, int records, int size) {
  format::BlockBuilder b(src, p, start);
  for (int i = 0; i < records; ++i) b.Add(std::string(size, static_cast<char>('a' + (start + i) % 26)));
  return b.Cut();
}

Status Put(BlockStore& store, format::Block block) { return store.Put(&block); }

class BlockStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/sluice-blocks-XXXXXX";
    dir_ = ::mkdtemp(templ);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<BlockStore> Open(size_t memory, size_t disk) {
    auto s = BlockStore::Open({.memory_budget_bytes = memory, .disk_budget_bytes = disk,
                               .spill_path = dir_ + "/spill", .log_path = dir_ + "/log"});
    EXPECT_TRUE(s.ok()) << s.status();
    return std::move(*s);
  }
  std::string dir_;
};

TEST_F(BlockStoreTest, KeepsInMemoryThenSpillsThenRefuses) {
  // Each block: 10 records of 100 bytes = 1,040 bytes encoded.
  auto store = Open(/*memory=*/2100, /*disk=*/2100);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Put(*store, MakeBlock("s", 0, i * 10, 10, 100)).ok()) << i;
  BlockStoreStats st = store->Stats();
  EXPECT_EQ(st.blocks_in_memory, 2u);
  EXPECT_EQ(st.blocks_on_disk, 2u);
  EXPECT_LE(st.memory_bytes, 2100u);
  EXPECT_FALSE(store->HasRoom(1040));
  format::Block refused = MakeBlock("s", 0, 40, 10, 100);
  Status full = store->Put(&refused);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);  // the receiver must pause
  EXPECT_EQ(refused.records(), 10);  // and still holds its block
  // Spilled and in-memory blocks come back byte for byte.
  for (int i = 0; i < 4; ++i) {
    auto b = store->Get({"s", 0, i * 10});
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->data(), MakeBlock("s", 0, i * 10, 10, 100).data());
    EXPECT_EQ(b->lineage().end_offset, i * 10 + 10);
  }
  EXPECT_EQ(Put(*store, MakeBlock("s", 0, 0, 10, 100)).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(BlockStoreTest, GetSharesTheBytesOfABlockInMemoryAndTheyOutliveItsDrop) {
  auto store = Open(/*memory=*/1 << 20, /*disk=*/1 << 20);
  ASSERT_TRUE(Put(*store, MakeBlock("s", 0, 0, 10, 100)).ok());
  auto a = store->Get({"s", 0, 0});
  auto b = store->Get({"s", 0, 0});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->data().data(), b->data().data());  // no copy per task
  EXPECT_TRUE(store->Drop({"s", 0, 0}));
  EXPECT_EQ(a->data(), MakeBlock("s", 0, 0, 10, 100).data());  // a task's copy stays whole
}

TEST(BufferPoolTest, KeepsLargeBuffersEmptiedAndBoundedAndGivesTheSmallestLargeEnough) {
  format::BufferPool& pool = format::BufferPool::Shared();
  while (pool.kept_bytes() > 0) pool.Take(0);  // other tests' buffers
  pool.Give(std::string(100, 'x'));  // small: freed
  EXPECT_EQ(pool.kept_bytes(), 0u);
  std::string big(2 << 20, 'x'), bigger(3 << 20, 'y');
  const size_t big_capacity = big.capacity(), bigger_capacity = bigger.capacity();
  pool.Give(std::move(big));
  pool.Give(std::move(bigger));
  EXPECT_EQ(pool.kept_bytes(), big_capacity + bigger_capacity);
  EXPECT_EQ(pool.Take(bigger_capacity + 1).capacity(), std::string().capacity());  // none large enough
  std::string taken = pool.Take(big_capacity + 1);
  EXPECT_TRUE(taken.empty());
  EXPECT_EQ(taken.capacity(), bigger_capacity);
  EXPECT_EQ(pool.Take(0).capacity(), big_capacity);
  EXPECT_EQ(pool.Take(0).capacity(), std::string().capacity());  // none kept: a new one
  for (size_t i = 0; i <= format::BufferPool::kMaxBuffers; ++i) pool.Give(std::string(1 << 20, 'z'));
  EXPECT_LE(pool.kept_bytes(), format::BufferPool::kMaxBuffers * ((1 << 20) + 64));
  while (pool.kept_bytes() > 0) pool.Take(0);
}

TEST(BufferPoolTest, ABuilderReservingALargeBlockTakesAKeptBuffer) {
  format::BufferPool& pool = format::BufferPool::Shared();
  while (pool.kept_bytes() > 0) pool.Take(0);
  std::string kept;
  kept.reserve(4 << 20);
  const char* storage = kept.data();
  pool.Give(std::move(kept));
  format::BlockBuilder builder("s", 0, 0);
  builder.Reserve(3 << 20);
  builder.Add("x");
  EXPECT_EQ(pool.kept_bytes(), 0u);
  EXPECT_EQ(builder.Cut().data().data(), storage);  // the block is gone again at the ;
  const size_t back = pool.kept_bytes();
  EXPECT_GE(back, size_t{4} << 20);  // its buffer went back
  format::BlockBuilder small("s", 0, 0);
  small.Reserve(1000);  // a small block takes nothing from the pool
  EXPECT_EQ(pool.kept_bytes(), back);
  while (pool.kept_bytes() > 0) pool.Take(0);
}

TEST(BlockTest, CopiesShareTheBytesAndACutBlockReadsTheSame) {
  format::BlockBuilder builder("s", 0, 0);
  builder.Add("one");
  builder.Add("two");
  const format::Block block = builder.Cut();
  const format::Block copy = block;
  EXPECT_EQ(copy.data().data(), block.data().data());
  std::vector<std::string> records;
  ASSERT_TRUE(copy.ForEach([&](std::string_view r) { records.emplace_back(r); }).ok());
  EXPECT_THAT(records, ::testing::ElementsAre("one", "two"));
  builder.Add("three");
  const format::Block next = builder.Cut();
  EXPECT_EQ(next.lineage().start_offset, 2);
  EXPECT_EQ(next.records(), 1);
  EXPECT_EQ(format::Block().bytes(), 0u);
}

TEST_F(BlockStoreTest, DropBeforeFreesCommittedBlocksOfOnePartition) {
  auto store = Open(2100, 1 << 20);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Put(*store, MakeBlock("s", 0, i * 10, 10, 100)).ok());
  ASSERT_TRUE(Put(*store, MakeBlock("s", 1, 0, 10, 100)).ok());
  EXPECT_EQ(store->DropBefore("s", 0, 25), 2);  // blocks [0,10) and [10,20); [20,30) ends after 25
  EXPECT_EQ(store->Get({"s", 0, 0}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store->Get({"s", 0, 20}).ok());
  EXPECT_TRUE(store->Get({"s", 1, 0}).ok());  // another partition is untouched
  auto holdings = store->Holdings();
  ASSERT_EQ(holdings.size(), 3u);
  EXPECT_EQ(store->DropBefore("s", 0, 1000), 2);
  BlockStoreStats st = store->Stats();
  EXPECT_EQ(st.blocks_in_memory + st.blocks_on_disk, 1u);
  EXPECT_TRUE(store->HasRoom(1040));  // room again: the receiver resumes
}

TEST_F(BlockStoreTest, DurableBlocksSurviveAReopenAndLeaveTheLogWhenDropped) {
  {
    auto store = Open(/*memory=*/2100, /*disk=*/1 << 20);
    format::Block a = MakeBlock("sock", 0, 0, 10, 100);
    format::Block b = MakeBlock("sock", 0, 10, 10, 100);
    format::Block c = MakeBlock("sock", 0, 20, 10, 100);
    format::Block plain = MakeBlock("gen", 0, 0, 10, 100);
    ASSERT_TRUE(store->Put(&a, /*durable=*/true).ok());
    ASSERT_TRUE(store->Put(&b, /*durable=*/true).ok());
    ASSERT_TRUE(store->Put(&c, /*durable=*/true).ok());  // over the memory budget: only in the log
    ASSERT_TRUE(store->Put(&plain).ok());
    EXPECT_EQ(store->Stats().blocks_in_log, 3u);
    ASSERT_TRUE(store->Get({"sock", 0, 20}).ok());
    EXPECT_EQ(store->DropBefore("sock", 0, 10), 1);
  }
  // A restart holds the logged blocks again, byte for byte; the rest is scratch.
  auto store = Open(2100, 1 << 20);
  std::vector<HeldBlock> held = store->Holdings();
  ASSERT_EQ(held.size(), 2u);
  EXPECT_EQ(held[0].lineage.start_offset, 10);
  EXPECT_EQ(held[0].lineage.end_offset, 20);
  EXPECT_EQ(held[0].records, 10);
  EXPECT_TRUE(held[0].durable);
  Result<format::Block> b = store->Get({"sock", 0, 10});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->data(), MakeBlock("sock", 0, 10, 10, 100).data());
  int n = 0;
  ASSERT_TRUE(b->ForEach([&](std::string_view) { ++n; }).ok());
  EXPECT_EQ(n, 10);
  EXPECT_EQ(store->Get({"gen", 0, 0}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->DropBefore("sock", 0, 1000), 2);
  store.reset();
  EXPECT_TRUE(Open(2100, 1 << 20)->Holdings().empty());
}

TEST_F(BlockStoreTest, ADifferentBlockAtTheSameStartReplacesALeftover) {
  auto store = Open(/*memory=*/2100, /*disk=*/1 << 20);
  format::Block first = MakeBlock("sock", 0, 0, 10, 100);
  ASSERT_TRUE(store->Put(&first, /*durable=*/true).ok());
  // The same block again (a retried replica) is a duplicate.
  format::Block again = MakeBlock("sock", 0, 0, 10, 100);
  EXPECT_EQ(store->Put(&again, true).code(), absl::StatusCode::kAlreadyExists);
  // A new receiver starting at the same offset cuts a different block: it
  // replaces the leftover, in memory and in the block log.
  format::Block other = MakeBlock("sock", 0, 0, 7, 50);
  ASSERT_TRUE(store->Put(&other, true).ok());
  Result<format::Block> got = store->Get({"sock", 0, 0});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->lineage().end_offset, 7);
  EXPECT_EQ(store->Stats().blocks_in_log, 1u);
  EXPECT_EQ(store->Stats().memory_bytes, got->bytes());
  store.reset();
  std::vector<HeldBlock> held = Open(2100, 1 << 20)->Holdings();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].lineage.end_offset, 7);
}

TEST(BlockBuilderTest, DeadLettersKeepTheRangeContiguousWithoutARecord) {
  format::BlockBuilder b("s", 0, 100);
  b.Add("one");
  b.AddDeadLetter("event of 2000000 bytes is over the 1048576-byte limit");
  b.Add("three");
  EXPECT_EQ(b.records(), 2);
  EXPECT_EQ(b.dead_letters(), 1);
  EXPECT_THAT(b.last_dead_letter(), ::testing::HasSubstr("offset 101"));
  format::Block block = b.Cut();
  EXPECT_EQ(block.lineage().start_offset, 100);
  EXPECT_EQ(block.lineage().end_offset, 103);
  std::vector<std::string> seen;
  ASSERT_TRUE(block.ForEach([&](std::string_view r) { seen.emplace_back(r); }).ok());
  EXPECT_THAT(seen, ::testing::ElementsAre("one", "three"));
  EXPECT_TRUE(b.empty());
}

}  // namespace
}  // namespace sluice::worker
