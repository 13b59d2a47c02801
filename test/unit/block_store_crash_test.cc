// Crash tests of the BlockStore's block log (docs/data-path.md, "The
// receiver WAL"), over FaultInjectionFS: a durable Put that returned is kept
// through a power failure, byte for byte, and held again on open; a Put cut
// off by the crash at any of its syncs leaves its block whole or absent;
// drops survive a process crash, and a dropped block a power failure brings
// back is whole (the leader has it dropped again at registration). And a
// full disk: spills and durable puts are refused clearly (the block stays
// with the caller) and taken again once the disk is freed, without reopening.
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "lib/worker/block_store.h"
#include "rocksdb/env.h"
#include "test/harness/fault_injection_fs.h"
#include "test/harness/util.h"

namespace sluice::worker {
namespace {

format::Block MakeBlock(int32_t p, int64_t start, int records, int size) {
  format::BlockBuilder b("sock", p, start);
  for (int i = 0; i < records; ++i) b.Add(std::string(size, static_cast<char>('a' + (start + i) % 26)));
  return b.Cut();
}

size_t Hash(const std::string& data) { return std::hash<std::string>()(data); }

class BlockStoreCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "/sluice-blocks-crash-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    fs_ = std::make_shared<testing::FaultInjectionFS>(rocksdb::FileSystem::Default());
    env_ = rocksdb::NewCompositeEnv(fs_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The store over the fault-injection FS, or (after a crash) the real one.
  std::unique_ptr<BlockStore> Open(bool faulty) {
    auto s = BlockStore::Open({.memory_budget_bytes = 1 << 20,
                               .disk_budget_bytes = 64 << 20,
                               .spill_path = dir_ + "/spill",
                               .log_path = dir_ + "/log",
                               .env = faulty ? env_.get() : nullptr});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Every block held, (partition, start offset) -> a hash of its data, after
  // checking it is a durable one.
  static std::map<std::pair<int32_t, int64_t>, size_t> Held(BlockStore& store) {
    std::map<std::pair<int32_t, int64_t>, size_t> out;
    for (const HeldBlock& h : store.Holdings()) {
      EXPECT_TRUE(h.durable) << h.lineage.start_offset;
      auto b = store.Get({h.lineage.source, h.lineage.partition, h.lineage.start_offset});
      EXPECT_TRUE(b.ok()) << b.status();
      if (!b.ok()) continue;
      EXPECT_EQ(b->records(), h.records);
      EXPECT_EQ(b->lineage().end_offset, h.lineage.end_offset);
      out[{h.lineage.partition, h.lineage.start_offset}] = Hash(b->data());
    }
    return out;
  }

  std::string dir_;
  std::shared_ptr<testing::FaultInjectionFS> fs_;
  std::unique_ptr<rocksdb::Env> env_;
};

TEST_F(BlockStoreCrashTest, EveryDurablePutThatReturnedSurvivesLosingUnsyncedData) {
  std::map<std::pair<int32_t, int64_t>, size_t> put;
  {
    auto store = Open(/*faulty=*/true);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 6; ++i) {
      // Small blocks stay in the table, big ones (>= 4 KiB) go to blob files.
      format::Block b = i % 2 == 0 ? MakeBlock(0, i * 100, 100, 3) : MakeBlock(0, i * 100, 100, 3000);
      put[{0, i * 100}] = Hash(b.data());
      ASSERT_TRUE(store->Put(&b, /*durable=*/true).ok()) << i;
    }
    format::Block scratch = MakeBlock(1, 0, 10, 100);  // not durable: memory, gone with the process
    ASSERT_TRUE(store->Put(&scratch).ok());
    fs_->Deactivate();
  }
  fs_->DropUnsyncedData();
  auto reopened = Open(/*faulty=*/false);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Stats().blocks_in_log, 6u);
  EXPECT_EQ(Held(*reopened), put);
}

TEST_F(BlockStoreCrashTest, APutCutOffAtAnyOfItsSyncsLeavesItsBlockWholeOrAbsent) {
  const format::Block first = MakeBlock(0, 0, 100, 3000);
  const format::Block second = MakeBlock(0, 100, 100, 3000);
  // How many syncs one durable Put makes (blob file, table, manifest, ...).
  int64_t syncs_per_put = 0;
  {
    auto store = Open(/*faulty=*/true);
    ASSERT_NE(store, nullptr);
    format::Block a = first, b = second;
    ASSERT_TRUE(store->Put(&a, true).ok());
    const int64_t before = fs_->syncs();
    ASSERT_TRUE(store->Put(&b, true).ok());
    syncs_per_put = fs_->syncs() - before;
  }
  ASSERT_GT(syncs_per_put, 0) << "a durable Put syncs nothing";
  int absent = 0, whole = 0;
  for (int64_t n = 1; n <= syncs_per_put + 1; ++n) {
    for (uint32_t seed : {1u, 2u}) {
      std::filesystem::remove_all(dir_);
      std::filesystem::create_directories(dir_);
      fs_ = std::make_shared<testing::FaultInjectionFS>(rocksdb::FileSystem::Default());
      env_ = rocksdb::NewCompositeEnv(fs_);
      {
        auto store = Open(/*faulty=*/true);
        ASSERT_NE(store, nullptr);
        format::Block a = first, b = second;
        ASSERT_TRUE(store->Put(&a, true).ok());
        fs_->DeactivateAtSync(n);  // n > syncs_per_put: the Put returns first
        Status put = store->Put(&b, true);
        if (n > syncs_per_put) {
          ASSERT_TRUE(put.ok()) << put;
        }
        fs_->Deactivate();
      }
      std::mt19937_64 rng(seed * 100 + n);
      fs_->DropUnsyncedData([&](uint64_t synced, uint64_t size) { return synced + rng() % (size - synced + 1); });
      auto reopened = Open(/*faulty=*/false);
      ASSERT_NE(reopened, nullptr) << "crash at sync " << n;
      auto held = Held(*reopened);
      const std::pair<int32_t, int64_t> first_key{0, 0}, second_key{0, 100};
      ASSERT_TRUE(held.contains(first_key)) << "crash at sync " << n << " lost a block whose Put had returned";
      EXPECT_EQ(held[first_key], Hash(first.data()));
      if (held.contains(second_key)) {
        ++whole;
        EXPECT_EQ(held[second_key], Hash(second.data())) << "crash at sync " << n;
      } else {
        ++absent;
        EXPECT_LE(n, syncs_per_put) << "the Put returned, then its block was lost";
      }
      EXPECT_EQ(held.size(), held.contains(second_key) ? 2u : 1u);
    }
  }
  EXPECT_GT(absent, 0);
  EXPECT_GT(whole, 0);
}

TEST_F(BlockStoreCrashTest, DropsSurviveAProcessCrashAndAPowerFailureBringsBackOnlyWholeBlocks) {
  std::map<std::pair<int32_t, int64_t>, size_t> put;
  for (bool power : {false, true}) {
    SCOPED_TRACE(power ? "power failure" : "process crash");
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    fs_ = std::make_shared<testing::FaultInjectionFS>(rocksdb::FileSystem::Default());
    env_ = rocksdb::NewCompositeEnv(fs_);
    {
      auto store = Open(/*faulty=*/true);
      ASSERT_NE(store, nullptr);
      for (int i = 0; i < 5; ++i) {
        format::Block b = MakeBlock(0, i * 100, 100, i % 2 == 0 ? 3 : 3000);
        put[{0, i * 100}] = Hash(b.data());
        ASSERT_TRUE(store->Put(&b, true).ok()) << i;
      }
      EXPECT_EQ(store->DropBefore("sock", 0, 200), 2);  // its batch committed
      EXPECT_TRUE(store->Drop({"sock", 0, 300}));        // the leader refused it
      fs_->Deactivate();
    }
    if (power) fs_->DropUnsyncedData();
    auto reopened = Open(/*faulty=*/false);
    ASSERT_NE(reopened, nullptr);
    auto held = Held(*reopened);
    ASSERT_TRUE(held.contains({0, 200}));
    ASSERT_TRUE(held.contains({0, 400}));
    if (!power) {
      EXPECT_EQ(held.size(), 2u) << "a drop was lost by a process crash";
    }
    for (const auto& [key, data] : held) EXPECT_EQ(data, put[key]) << key.second;
  }
}

TEST_F(BlockStoreCrashTest, AFullDiskRefusesDurablePutsClearlyUntilFreed) {
  auto opened = BlockStore::Open({.memory_budget_bytes = 64 << 10,
                                  .disk_budget_bytes = 64 << 20,
                                  .spill_path = dir_ + "/spill",
                                  .log_path = dir_ + "/log",
                                  .env = env_.get(),
                                  .resume_interval = std::chrono::milliseconds(100)});
  ASSERT_TRUE(opened.ok()) << opened.status();
  BlockStore& store = **opened;
  format::Block first = MakeBlock(0, 0, 10, 100);
  ASSERT_TRUE(store.Put(&first, /*durable=*/true).ok());

  fs_->SetDiskFull(true);
  // The block log's flush fails: the block stays with the caller, and the
  // error names the disk's.
  format::Block second = MakeBlock(0, 10, 10, 100);
  Status st = store.Put(&second, /*durable=*/true);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_NE(st.message().find("No space left on device"), std::string::npos) << st;
  EXPECT_EQ(second.records(), 10);
  EXPECT_NE(store.Stats().degraded.find("No space left on device"), std::string::npos) << store.Stats().degraded;
  // Refused at once while degraded (the receiver pauses its source).
  st = store.Put(&second, /*durable=*/true);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_NE(st.message().find("refuses writes"), std::string::npos) << st;
  // A block that fits the memory budget is still taken.
  format::Block small = MakeBlock(1, 0, 10, 100);
  EXPECT_TRUE(store.Put(&small).ok());

  fs_->SetDiskFull(false);
  ASSERT_TRUE(testing::WaitUntil([&] { return store.Stats().degraded.empty(); }, std::chrono::seconds(5)))
      << store.Stats().degraded;
  ASSERT_TRUE(store.Put(&second, /*durable=*/true).ok());
  format::Block spilled = MakeBlock(2, 0, 100, 1000);  // over the memory budget
  ASSERT_TRUE(store.Put(&spilled).ok());
  for (auto [p, start] : {std::pair{0, 0}, std::pair{0, 10}, std::pair{2, 0}}) {
    auto back = store.Get({"sock", p, start});
    EXPECT_TRUE(back.ok()) << back.status();
  }
}

}  // namespace
}  // namespace sluice::worker
