// Unit tests of the worker's Receiver over the generator source: contiguous
// blocks every interval, backpressure from a full BlockStore (bounded, paused,
// resumed, nothing skipped), the per-partition rate limit.
#include "lib/worker/receiver.h"

#include <filesystem>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

using std::chrono::milliseconds;

class ReceiverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/sluice-recv-XXXXXX";
    dir_ = ::mkdtemp(templ);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<BlockStore> Store(size_t memory, size_t disk) {
    auto s = BlockStore::Open({.memory_budget_bytes = memory, .disk_budget_bytes = disk,
                               .spill_path = dir_ + "/spill"});
    EXPECT_TRUE(s.ok());
    return std::move(*s);
  }
  std::string dir_;
  std::mutex mu_;
  std::vector<source::BlockLineage> reported_;  // guarded by mu_
  Receiver::Reporter Reporter() {
    return [this](const HeldBlock& b) {
      std::lock_guard<std::mutex> lock(mu_);
      reported_.push_back(b.lineage);
      return absl::OkStatus();
    };
  }
  std::vector<source::BlockLineage> Reported() {
    std::lock_guard<std::mutex> lock(mu_);
    return reported_;
  }
};

void ExpectContiguous(const std::vector<source::BlockLineage>& blocks, int64_t from) {
  int64_t next = from;
  for (const auto& b : blocks) {
    EXPECT_EQ(b.start_offset, next) << "gap or overlap";
    EXPECT_GT(b.end_offset, b.start_offset) << "empty block";
    next = b.end_offset;
  }
}

TEST_F(ReceiverTest, CutsContiguousBlocksEveryInterval) {
  source::GeneratorSource gen({.partitions = 1, .rate_per_partition = 20'000, .payload_size = 200},
                              Clock::Real());
  auto store = Store(64 << 20, 0);
  Receiver r({.source = "generator", .partition = 0, .start_offset = 0, .block_interval = milliseconds(50)},
             source::NewGeneratorReader(&gen, 0), store.get(), Reporter(), Clock::Real());
  r.Start();
  std::this_thread::sleep_for(milliseconds(600));
  r.Stop();
  auto blocks = Reported();
  EXPECT_GE(blocks.size(), 3u);   // ~12 on an idle machine; a loaded one cuts fewer
  EXPECT_LE(blocks.size(), 14u);  // never more often than the interval
  ExpectContiguous(blocks, 0);
  ReceiverStats st = r.Stats();
  EXPECT_TRUE(st.error.ok());
  EXPECT_EQ(st.next_offset, blocks.back().end_offset);
  EXPECT_EQ(st.records, blocks.back().end_offset);
  // What the store holds is exactly what the generator makes for those offsets.
  auto first = store->Get({"generator", 0, 0});
  ASSERT_TRUE(first.ok());
  int64_t o = 0;
  ASSERT_TRUE(first->ForEach([&](std::string_view rec) { EXPECT_EQ(rec, gen.EventString(0, o++)); }).ok());
}

TEST_F(ReceiverTest, FullStorePausesTheSourceAndDropResumesIt) {
  source::GeneratorSource gen({.partitions = 1, .payload_size = 600}, Clock::Real());  // unpaced
  const size_t budget = 2 << 20;  // 2 MiB, no disk
  auto store = Store(budget, 0);
  Receiver r({.source = "generator", .partition = 0, .block_interval = milliseconds(20),
              .max_block_records = 1000},
             source::NewGeneratorReader(&gen, 0), store.get(), Reporter(), Clock::Real());
  r.Start();
  ASSERT_TRUE([&] {
    for (int i = 0; i < 200; ++i) {
      if (r.Stats().paused) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }());
  const int64_t at_pause = r.Stats().next_offset;
  std::this_thread::sleep_for(milliseconds(300));
  // Paused: nothing more is read or stored, memory stays within budget.
  EXPECT_EQ(r.Stats().next_offset, at_pause);
  EXPECT_LE(store->Stats().memory_bytes, budget);
  EXPECT_TRUE(r.Stats().paused);
  // The leader commits the batch: blocks are dropped, the source resumes.
  store->DropBefore("generator", 0, at_pause);
  std::this_thread::sleep_for(milliseconds(300));
  r.Stop();
  ReceiverStats st = r.Stats();
  EXPECT_GT(st.next_offset, at_pause);
  EXPECT_GE(st.pauses, 1);
  ExpectContiguous(Reported(), 0);  // nothing skipped across the pause
}

TEST_F(ReceiverTest, RateLimitCapsEventsPerSecond) {
  source::GeneratorSource gen({.partitions = 1, .payload_size = 200}, Clock::Real());  // unpaced
  auto store = Store(256 << 20, 0);
  Receiver r({.source = "generator", .partition = 0, .block_interval = milliseconds(100),
              .rate_limit_per_s = 5000},
             source::NewGeneratorReader(&gen, 0), store.get(), Reporter(), Clock::Real());
  r.Start();
  std::this_thread::sleep_for(milliseconds(1000));
  r.Stop();
  const int64_t n = r.Stats().next_offset;
  EXPECT_GT(n, 2000);  // it does read (a loaded machine reads less)
  EXPECT_LE(n, 5500);  // and never faster than the limit (+1 block of slack)
}

}  // namespace
}  // namespace sluice::worker
