// Unit tests of the worker's Receiver over the generator source: contiguous
// blocks every interval, backpressure from a full BlockStore (bounded, paused,
// resumed, nothing skipped), the per-partition rate limit, and the reporter's
// contract (UNAVAILABLE / RESOURCE_EXHAUSTED pause, other errors stop, every
// reported block is counted).
#include "lib/worker/receiver.h"

#include <atomic>
#include <filesystem>
#include <future>
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
  std::vector<format::BlockLineage> reported_;  // guarded by mu_
  Receiver::Reporter Reporter() {
    return [this](const HeldBlock& b) {
      std::lock_guard<std::mutex> lock(mu_);
      reported_.push_back(b.lineage);
      return absl::OkStatus();
    };
  }
  std::vector<format::BlockLineage> Reported() {
    std::lock_guard<std::mutex> lock(mu_);
    return reported_;
  }
};

void ExpectContiguous(const std::vector<format::BlockLineage>& blocks, int64_t from) {
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

TEST_F(ReceiverTest, SetLimitsChangesTheRateAndTheBlockBoundWithoutARestart) {
  source::GeneratorSource gen({.partitions = 1, .payload_size = 200}, Clock::Real());  // unpaced
  auto store = Store(256 << 20, 0);
  Receiver r({.source = "generator", .partition = 0, .block_interval = milliseconds(100),
              .rate_limit_per_s = 2000},
             source::NewGeneratorReader(&gen, 0), store.get(), Reporter(), Clock::Real());
  r.Start();
  std::this_thread::sleep_for(milliseconds(1000));
  const int64_t slow = r.Stats().next_offset;
  EXPECT_LE(slow, 2300);  // the limit and at most one interval's tokens
  EXPECT_EQ(r.Stats().rate_limit_per_s, 2000);
  // Faster, and blocks of at most 300 offsets: both hold from the next read.
  r.SetLimits(20'000, 300);
  std::this_thread::sleep_for(milliseconds(1000));
  const int64_t fast = r.Stats().next_offset - slow;
  r.Stop();
  EXPECT_GT(fast, 5 * slow / 2);   // it reads faster (a loaded machine reads less than 20,000)
  EXPECT_LE(fast, 22'500);
  EXPECT_EQ(r.Stats().rate_limit_per_s, 20'000);
  const std::vector<format::BlockLineage> blocks = Reported();
  ExpectContiguous(blocks, 0);
  int bounded = 0;
  for (const auto& b : blocks) {
    if (b.start_offset <= slow) continue;  // read before the bound was set
    EXPECT_LE(b.end_offset - b.start_offset, 300) << "block " << b.start_offset;
    ++bounded;
  }
  EXPECT_GT(bounded, 10);
}

// Wraps a reader and keeps how far it has read (the builder's next offset
// after each ReadInto), so a test can see that a paused receiver reads nothing.
class TrackingReader final : public source::PartitionReader {
 public:
  TrackingReader(std::unique_ptr<source::PartitionReader> inner, std::atomic<int64_t>* read_to)
      : inner_(std::move(inner)), read_to_(read_to) {}
  Result<int64_t> ReadInto(int64_t max_records, int timeout_ms, format::BlockBuilder* builder) override {
    Result<int64_t> n = inner_->ReadInto(max_records, timeout_ms, builder);
    read_to_->store(builder->next_offset());
    return n;
  }
  bool replayable() const override { return inner_->replayable(); }

 private:
  std::unique_ptr<source::PartitionReader> inner_;
  std::atomic<int64_t>* const read_to_;
};

// A reporter the test steers: it answers `answer` (OK by default) and keeps
// every block it was called with and every block it accepted.
class ScriptedReporter {
 public:
  Receiver::Reporter Get() {
    return [this](const HeldBlock& b) {
      std::lock_guard<std::mutex> lock(mu_);
      calls_.push_back(b.lineage);
      if (!answer_.ok()) return answer_;
      accepted_.push_back(b);
      return absl::OkStatus();
    };
  }
  void Answer(Status st) {
    std::lock_guard<std::mutex> lock(mu_);
    answer_ = std::move(st);
  }
  std::vector<format::BlockLineage> Calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  std::vector<HeldBlock> Accepted() {
    std::lock_guard<std::mutex> lock(mu_);
    return accepted_;
  }
  std::vector<format::BlockLineage> AcceptedLineages() {
    std::vector<format::BlockLineage> out;
    for (const HeldBlock& b : Accepted()) out.push_back(b.lineage);
    return out;
  }

 private:
  std::mutex mu_;
  Status answer_;                          // guarded by mu_
  std::vector<format::BlockLineage> calls_;  // guarded by mu_
  std::vector<HeldBlock> accepted_;          // guarded by mu_
};

// Polls `pred` every few ms for up to two seconds.
template <typename Pred>
bool Eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(2000);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return pred();
}

// While the reporter says `code` the receiver is paused — holding its block,
// reading nothing — and it goes on when the reporter says OK, with no block
// lost or reported twice.
void PausesWhileTheReporterSays(absl::StatusCode code, BlockStore* store) {
  SCOPED_TRACE(absl::StatusCodeToString(code));
  source::GeneratorSource gen({.partitions = 1, .rate_per_partition = 20'000, .payload_size = 200}, Clock::Real());
  std::atomic<int64_t> read_to{0};
  ScriptedReporter reporter;
  Receiver r({.source = "generator", .partition = 0, .block_interval = milliseconds(20)},
             std::make_unique<TrackingReader>(source::NewGeneratorReader(&gen, 0), &read_to), store, reporter.Get(),
             Clock::Real());
  r.Start();
  ASSERT_TRUE(Eventually([&] { return reporter.Accepted().size() >= 2; }));
  reporter.Answer(Status(code, "leader unreachable"));
  ASSERT_TRUE(Eventually([&] { return r.Stats().paused; }));
  const ReceiverStats at_pause = r.Stats();
  const int64_t read_at_pause = read_to.load();
  const size_t calls_at_pause = reporter.Calls().size();
  std::this_thread::sleep_for(milliseconds(150));  // the generator has ~3000 more events meanwhile
  ReceiverStats st = r.Stats();
  EXPECT_TRUE(st.paused);
  EXPECT_FALSE(st.stopped);
  EXPECT_TRUE(st.error.ok()) << st.error;
  EXPECT_EQ(st.next_offset, at_pause.next_offset);
  EXPECT_EQ(st.blocks, at_pause.blocks);
  EXPECT_EQ(read_to.load(), read_at_pause) << "a paused receiver read on";
  // It kept offering the one held block, the one after the last accepted.
  const auto calls = reporter.Calls();
  EXPECT_GT(calls.size(), calls_at_pause) << "the reporter is retried while paused";
  EXPECT_EQ(calls.back().start_offset, at_pause.next_offset);
  EXPECT_TRUE(store->Get({"generator", 0, at_pause.next_offset}).ok()) << "the held block stays in the store";

  reporter.Answer(absl::OkStatus());
  ASSERT_TRUE(Eventually([&] {
    return !r.Stats().paused && reporter.Accepted().size() >= static_cast<size_t>(at_pause.blocks) + 3;
  }));
  r.Stop();
  st = r.Stats();
  const auto accepted = reporter.AcceptedLineages();
  ExpectContiguous(accepted, 0);  // nothing lost, nothing twice
  EXPECT_EQ(accepted[at_pause.blocks].start_offset, at_pause.next_offset) << "the held block goes first";
  EXPECT_EQ(st.blocks, static_cast<int64_t>(accepted.size()));
  EXPECT_EQ(st.next_offset, accepted.back().end_offset);
  EXPECT_EQ(st.records, accepted.back().end_offset);
  EXPECT_GE(st.pauses, 1);
  EXPECT_TRUE(st.stopped);
  EXPECT_TRUE(st.error.ok()) << st.error;
}

TEST_F(ReceiverTest, ReporterUnavailablePausesAndOkResumes) {
  auto store = Store(64 << 20, 0);
  PausesWhileTheReporterSays(absl::StatusCode::kUnavailable, store.get());
}

TEST_F(ReceiverTest, ReporterResourceExhaustedPausesAndOkResumes) {
  auto store = Store(64 << 20, 0);
  PausesWhileTheReporterSays(absl::StatusCode::kResourceExhausted, store.get());
}

TEST_F(ReceiverTest, ReporterFailedPreconditionStopsWithThatError) {
  source::GeneratorSource gen({.partitions = 1, .rate_per_partition = 20'000, .payload_size = 200}, Clock::Real());
  auto store = Store(64 << 20, 0);
  ScriptedReporter reporter;
  Receiver r({.source = "generator", .partition = 0, .start_offset = 500, .block_interval = milliseconds(20)},
             source::NewGeneratorReader(&gen, 0), store.get(), reporter.Get(), Clock::Real());
  r.Start();
  ASSERT_TRUE(Eventually([&] { return reporter.Accepted().size() >= 2; }));
  reporter.Answer(absl::FailedPreconditionError("another receiver owns the partition"));
  ASSERT_TRUE(Eventually([&] { return r.Stats().stopped; })) << "it stops by itself, without Stop()";
  const auto calls = reporter.Calls();
  const auto accepted = reporter.AcceptedLineages();
  ReceiverStats st = r.Stats();
  EXPECT_TRUE(absl::IsFailedPrecondition(st.error)) << st.error;
  EXPECT_EQ(st.error.message(), "another receiver owns the partition");
  EXPECT_FALSE(st.paused);
  EXPECT_EQ(calls.size(), accepted.size() + 1) << "the refused block is not offered again";
  ExpectContiguous(accepted, 500);
  EXPECT_EQ(st.blocks, static_cast<int64_t>(accepted.size()));
  EXPECT_EQ(st.next_offset, accepted.back().end_offset);
  EXPECT_EQ(calls.back().start_offset, st.next_offset);
  r.Stop();
  EXPECT_TRUE(absl::IsFailedPrecondition(r.Stats().error)) << "Stop() keeps the error";
}

TEST_F(ReceiverTest, StopWhilePausedByTheReporterCountsNothingMoreAndDropsTheHeldBlock) {
  source::GeneratorSource gen({.partitions = 1, .rate_per_partition = 20'000, .payload_size = 200}, Clock::Real());
  auto store = Store(64 << 20, 0);
  ScriptedReporter reporter;
  Receiver r({.source = "generator", .partition = 0, .block_interval = milliseconds(20)},
             source::NewGeneratorReader(&gen, 0), store.get(), reporter.Get(), Clock::Real());
  r.Start();
  ASSERT_TRUE(Eventually([&] { return reporter.Accepted().size() >= 1; }));
  reporter.Answer(absl::UnavailableError("no replica reachable"));
  ASSERT_TRUE(Eventually([&] { return r.Stats().paused; }));
  r.Stop();
  const ReceiverStats st = r.Stats();
  const auto accepted = reporter.AcceptedLineages();
  EXPECT_TRUE(st.stopped);
  EXPECT_FALSE(st.paused);
  EXPECT_TRUE(st.error.ok()) << st.error;
  EXPECT_EQ(st.blocks, static_cast<int64_t>(accepted.size()));
  EXPECT_EQ(st.next_offset, accepted.back().end_offset);
  EXPECT_TRUE(store->Get({"generator", 0, accepted.back().start_offset}).ok());
  EXPECT_TRUE(absl::IsNotFound(store->Get({"generator", 0, st.next_offset}).status()))
      << "the never-reported block must not hold budget";
}

// Stop() called while the reporter is accepting a block (and right after it
// returned): that block is reported, so it is counted.
void CountsEveryReportedBlockWhenStoppedRightAfter(bool durable, BlockStore* store) {
  SCOPED_TRACE(durable ? "durable" : "not durable");
  source::GeneratorSource gen({.partitions = 1, .payload_size = 200}, Clock::Real());  // unpaced
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(round);
    const int64_t start = round * 1'000'000;
    std::mutex mu;
    int64_t blocks = 0, records = 0, end = start;  // guarded by mu
    std::promise<void> reached;
    const int stop_at = 1 + round;
    Receiver r({.source = "generator", .partition = 0, .start_offset = start, .block_interval = milliseconds(5),
                .max_block_records = 500, .durable = durable},
               source::NewGeneratorReader(&gen, 0), store,
               [&](const HeldBlock& b) {
                 int64_t n;
                 {
                   std::lock_guard<std::mutex> lock(mu);
                   n = ++blocks;
                   records += b.records;
                   end = b.lineage.end_offset;
                 }
                 if (n == stop_at) {
                   reached.set_value();
                   // Odd rounds: Stop() lands while this call is still running.
                   if (round % 2 == 1) std::this_thread::sleep_for(milliseconds(20));
                 }
                 return absl::OkStatus();
               },
               Clock::Real());
    r.Start();
    ASSERT_EQ(reached.get_future().wait_for(std::chrono::seconds(2)), std::future_status::ready);
    r.Stop();
    const ReceiverStats st = r.Stats();
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_GE(blocks, stop_at);
    EXPECT_EQ(st.blocks, blocks);
    EXPECT_EQ(st.records, records);
    EXPECT_EQ(st.records, end - start);
    EXPECT_EQ(st.next_offset, end);
    EXPECT_TRUE(st.error.ok()) << st.error;
    store->DropBefore("generator", 0, end);
  }
}

TEST_F(ReceiverTest, RecordsCountEveryReportedBlockEvenWhenStoppedRightAfter) {
  auto store = Store(64 << 20, 0);
  CountsEveryReportedBlockWhenStoppedRightAfter(false, store.get());
}

TEST_F(ReceiverTest, DurableRecordsCountEveryReportedBlockEvenWhenStoppedRightAfter) {
  auto s = BlockStore::Open({.memory_budget_bytes = 64 << 20, .disk_budget_bytes = 0,
                             .spill_path = dir_ + "/spill", .log_path = dir_ + "/log"});
  ASSERT_TRUE(s.ok()) << s.status();
  CountsEveryReportedBlockWhenStoppedRightAfter(true, s->get());
}

}  // namespace
}  // namespace sluice::worker
