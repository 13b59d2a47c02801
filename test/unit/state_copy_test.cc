// Unit tests of StateStore's copies, over both layouts: ReadAsOf and
// Freeze (a state as of a batch, read while the partition goes on),
// ChangesSince and the keeps that hold its deltas, and streamed installs
// (abandoned, of many keys, of distinct shares out of order).
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <span>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/state/state_store.h"
#include "test/unit/state_store_fixture.h"

namespace sluice::state {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

TEST_P(StateStoreTest, ReadAsOfAppliesDeltasWithoutChangingAnything) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  Delta("j", 0, 0, {Put("a", "1"), Put("b", "2")});
  Delta("j", 0, 1, {Put("a", "3"), Erase("b"), Put("c", "4")});
  Delta("j", 0, 2, {Put("d", "5")});  // not committed yet
  auto as_of_1 = store_->ReadAsOf("j", 0, 1);
  ASSERT_TRUE(as_of_1.ok()) << as_of_1.status();
  ASSERT_TRUE(as_of_1->has_value());
  EXPECT_THAT(**as_of_1, ElementsAre(Put("a", "3"), Put("c", "4")));
  // Nothing folded or removed: the later delta is still there to fold.
  EXPECT_EQ(Folded("j", 0), -1);
  ASSERT_TRUE(Prepare("j", 0, 2));
  EXPECT_EQ(Get("j", 0, "d"), "5");
  // Not here as of a batch whose delta is missing, or before the folded one.
  auto missing = store_->ReadAsOf("j", 0, 3);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  auto behind = store_->ReadAsOf("j", 0, 1);
  ASSERT_TRUE(behind.ok());
  EXPECT_FALSE(behind->has_value());
}

TEST_P(StateStoreTest, ChangesSinceMergesFoldedAndPendingDeltasUntilASnapshotCoversThem) {
  // A state larger than the deltas, so that folds keep them until the tenth.
  std::vector<Change> base;
  for (int i = 0; i < 100; ++i) base.push_back(Put("z" + std::to_string(1000 + i), std::string(20, 'x')));
  ASSERT_TRUE(store_->Install("j", 0, -1, base).ok());
  Delta("j", 0, 0, {Put("a", "1"), Put("b", "2")});
  ASSERT_TRUE(Prepare("j", 0, 0));  // folded, kept in d/
  Delta("j", 0, 1, {Put("a", "3"), Erase("b"), Put("c", "4")});
  ASSERT_TRUE(Prepare("j", 0, 1));
  Delta("j", 0, 2, {Put("d", "5"), Put("c", "6")});  // written, not folded
  // A copy as of -1 catches up to 2 with the merged changes of 0..2.
  auto all = store_->ChangesSince("j", 0, -1, 2);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_TRUE(all->has_value());
  EXPECT_THAT(**all, ElementsAre(Put("a", "3"), Erase("b"), Put("c", "6"), Put("d", "5")));
  auto from_0 = store_->ChangesSince("j", 0, 0, 1);
  ASSERT_TRUE(from_0.ok() && from_0->has_value());
  EXPECT_THAT(**from_0, ElementsAre(Put("a", "3"), Erase("b"), Put("c", "4")));
  // A delta never written: not available.
  auto missing = store_->ChangesSince("j", 0, 1, 3);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  EXPECT_FALSE(store_->ChangesSince("j", 0, 2, 2).ok());  // since must be below base
  // After a reopen the folded deltas are still read back from RocksDB.
  Reopen();
  auto again = store_->ChangesSince("j", 0, -1, 2);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ(**again, **all);
  // Ten more folds make a snapshot, which removes the deltas it covers.
  for (int64_t n = 3; n <= 12; ++n) {
    Delta("j", 0, n, {Put("k" + std::to_string(n), "v")});
    ASSERT_TRUE(Prepare("j", 0, n));
  }
  auto gone = store_->ChangesSince("j", 0, -1, 12);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  Delta("j", 0, 13, {Put("k13", "v")});
  auto recent = store_->ChangesSince("j", 0, 12, 13);
  ASSERT_TRUE(recent.ok() && recent->has_value()) << "a delta written after the snapshot";
  EXPECT_THAT(**recent, ElementsAre(Put("k13", "v")));
  // An absent partition has nothing.
  auto absent = store_->ChangesSince("other", 0, -1, 0);
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
}


// A frozen state reads as of its batch however the partition goes on after
// the freeze: folded past it, snapshotted, re-installed, dropped. This is
// what lets a worker stream a copy without holding the partition's lock.
TEST_P(StateStoreTest, AFrozenStateReadsAsOfItsBatchWhileThePartitionGoesOn) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  std::vector<Change> base;
  for (int i = 0; i < 1000; ++i) base.push_back(Put("k" + std::to_string(1000 + i), "v0"));
  Delta("j", 0, 0, base);
  ASSERT_TRUE(Prepare("j", 0, 0));
  Delta("j", 0, 1, {Put("k1000", "v1"), Erase("k1001"), Put("new", "v1")});
  auto frozen = store_->Freeze("j", 0, 1);
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  ASSERT_NE(*frozen, nullptr);
  const auto read = [&] {
    std::vector<Change> out;
    Status st = (*frozen)->Read(4096, [&](std::span<const Change> chunk) {
      out.insert(out.end(), chunk.begin(), chunk.end());
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st;
    return out;
  };
  const std::vector<Change> at_freeze = read();
  ASSERT_EQ(at_freeze.size(), 1000u);  // 1000 - k1001 + new
  EXPECT_EQ(at_freeze.front(), Put("k1000", "v1"));
  EXPECT_EQ(at_freeze.back(), Put("new", "v1"));
  // Twelve more batches: folded, a snapshot taken (memory), old deltas
  // dropped (disk); every key rewritten.
  for (int64_t n = 2; n <= 13; ++n) {
    std::vector<Change> all;
    for (int i = 0; i < 1000; ++i) all.push_back(Put("k" + std::to_string(1000 + i), "v" + std::to_string(n)));
    Delta("j", 0, n, all);
    ASSERT_TRUE(Prepare("j", 0, n));
  }
  EXPECT_EQ(read(), at_freeze);
  ASSERT_TRUE(store_->Install("j", 0, 20, std::vector<Change>{Put("other", "x")}).ok());
  EXPECT_EQ(read(), at_freeze);
  ASSERT_TRUE(store_->Drop("j", 0).ok());
  EXPECT_EQ(read(), at_freeze);
  // Not frozen as of a batch it cannot give.
  ASSERT_TRUE(store_->Install("j", 0, 30, std::vector<Change>{Put("a", "1")}).ok());
  auto behind = store_->Freeze("j", 0, 29);
  ASSERT_TRUE(behind.ok());
  EXPECT_EQ(*behind, nullptr);
  auto ahead = store_->Freeze("j", 0, 31);  // delta 31 never written
  ASSERT_TRUE(ahead.ok());
  EXPECT_EQ(*ahead, nullptr);
}

// Frozen between snapshots: the in-memory layout's state as of C is its
// snapshot S plus the folded deltas S+1..C (kept in RocksDB until the next
// snapshot), and the frozen copy lays those and the pending ones over S.
TEST_P(StateStoreTest, AFrozenStateBetweenSnapshotsHasTheFoldedAndPendingDeltas) {
  std::vector<Change> base;
  for (int i = 0; i < 1000; ++i) base.push_back(Put("k" + std::to_string(1000 + i), std::string(50, 'x')));
  ASSERT_TRUE(store_->Install("j", 0, 0, base).ok());
  // Small folds: no new snapshot (S = 0, C = 3 in memory).
  Delta("j", 0, 1, {Put("k1000", "one"), Erase("k1001")});
  ASSERT_TRUE(Prepare("j", 0, 1));
  Delta("j", 0, 2, {Put("new2", "two")});
  ASSERT_TRUE(Prepare("j", 0, 2));
  Delta("j", 0, 3, {Put("k1000", "three"), Erase("new2")});
  ASSERT_TRUE(Prepare("j", 0, 3));
  Delta("j", 0, 4, {Put("k1999", "four")});  // pending
  auto frozen = store_->Freeze("j", 0, 4);
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  ASSERT_NE(*frozen, nullptr);
  // Then the partition goes on past a snapshot.
  for (int64_t n = 4; n <= 16; ++n) {
    if (n > 4) Delta("j", 0, n, {Put("k1000", "later")});
    ASSERT_TRUE(Prepare("j", 0, n));
  }
  std::map<std::string, std::string> read;
  ASSERT_TRUE((*frozen)
                  ->Read(1000,
                         [&](std::span<const Change> chunk) {
                           for (const Change& c : chunk) read[c.key] = c.value.value_or("<erased>");
                           return absl::OkStatus();
                         })
                  .ok());
  EXPECT_EQ(read.size(), 999u);
  EXPECT_EQ(read["k1000"], "three");
  EXPECT_FALSE(read.contains("k1001"));
  EXPECT_FALSE(read.contains("new2"));
  EXPECT_EQ(read["k1999"], "four");
  EXPECT_EQ(read["k1500"], std::string(50, 'x'));
}

// A keep (a warm ahead of a move) holds the deltas since its batch through
// any number of folds, so the changes since it stay there to copy; once it
// ends, the next fold may snapshot (memory) or drop old deltas (disk), and
// they are gone. The control: without a keep they are gone after 10 folds.
TEST_P(StateStoreTest, AKeepHoldsTheChangesSinceItsBatchUntilItEnds) {
  std::vector<Change> base;
  for (int i = 0; i < 100; ++i) base.push_back(Put("z" + std::to_string(1000 + i), std::string(20, 'x')));
  for (const std::string job : {"kept", "control"}) {
    ASSERT_TRUE(store_->Install(job, 0, 0, base).ok());
  }
  // Long enough for the 50 folds below on a busy machine (checked).
  const auto keep_ends = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  store_->KeepChangesSince("kept", 0, 0, keep_ends);
  for (int64_t n = 1; n <= 25; ++n) {
    for (const std::string job : {"kept", "control"}) {
      Delta(job, 0, n, {Put("k" + std::to_string(n), "v")});
      ASSERT_TRUE(Prepare(job, 0, n));
    }
  }
  ASSERT_LT(std::chrono::steady_clock::now(), keep_ends) << "the folds outlasted the keep: the test proves nothing";
  auto kept = store_->ChangesSince("kept", 0, 0, 25);
  ASSERT_TRUE(kept.ok()) << kept.status();
  ASSERT_TRUE(kept->has_value()) << "the keep did not hold the deltas";
  EXPECT_EQ((*kept)->size(), 25u);
  auto control = store_->ChangesSince("control", 0, 0, 25);
  ASSERT_TRUE(control.ok());
  EXPECT_FALSE(control->has_value()) << "without a keep the old deltas go";
  // Ended: the next folds are free again.
  std::this_thread::sleep_until(keep_ends + std::chrono::milliseconds(10));
  for (int64_t n = 26; n <= 40; ++n) {
    Delta("kept", 0, n, {Put("k" + std::to_string(n), "v")});
    ASSERT_TRUE(Prepare("kept", 0, n));
  }
  auto after = store_->ChangesSince("kept", 0, 0, 40);
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->has_value());
  // The state is the same either way.
  EXPECT_EQ(All("kept", 0).size(), 140u);
}

// Shares of a re-split arrive out of key order (each in order, from
// partitions that share no key): installed with distinct_keys, the copy and
// its counts are exact.
TEST_P(StateStoreTest, AnInstallOfDistinctSharesOutOfOrderIsExact) {
  auto in = store_->BeginInstall("j", 0, 5, /*distinct_keys=*/true);
  ASSERT_TRUE(in.ok()) << in.status();
  ASSERT_TRUE((*in)->Add(std::vector<Change>{Put("m", "1"), Put("p", "22")}).ok());
  ASSERT_TRUE((*in)->Add(std::vector<Change>{Put("a", "333"), Put("n", "4")}).ok());
  ASSERT_TRUE((*in)->Add(std::vector<Change>{Put("b", "5")}).ok());
  ASSERT_TRUE((*in)->Commit().ok());
  EXPECT_THAT(All("j", 0), ElementsAre(Pair("a", "333"), Pair("b", "5"), Pair("m", "1"), Pair("n", "4"),
                                       Pair("p", "22")));
  const StateStats st = store_->PartitionStats("j", 0);
  EXPECT_EQ(st.keys, 5);
  EXPECT_EQ(st.bytes, 5 + (1 + 2 + 3 + 1 + 1));  // keys, values
  Reopen();
  EXPECT_EQ(store_->PartitionStats("j", 0).keys, 5);
  EXPECT_EQ(Get("j", 0, "a"), "333");
}

// An install abandoned half way (its installer dropped: the stream broke
// off) changes nothing, and leaves nothing behind.
TEST_P(StateStoreTest, AnAbandonedInstallChangesNothing) {
  ASSERT_TRUE(store_->Install("j", 0, 3, std::vector<Change>{Put("a", "old")}).ok());
  {
    auto in = store_->BeginInstall("j", 0, 7);
    ASSERT_TRUE(in.ok()) << in.status();
    ASSERT_TRUE((*in)->Add(std::vector<Change>{Put("a", "new"), Put("b", "new")}).ok());
    EXPECT_EQ((*in)->Add(std::vector<Change>{Erase("c")}).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(Folded("j", 0), 3);
  EXPECT_THAT(All("j", 0), ElementsAre(Pair("a", "old")));
  Reopen();
  EXPECT_THAT(All("j", 0), ElementsAre(Pair("a", "old")));
  EXPECT_EQ(store_->Stats("j").keys, 1);
}

// A state of 300,000 keys (~40 MB of keys and values) read as of a batch in
// 1 MiB chunks and installed chunk by chunk into another partition: the
// copy is exact, and the process's RSS grows by about a chunk on top of what
// the layout itself holds (printed; bounded in the disk layout).
TEST_P(StateStoreTest, ChunkedCopyOfAStateOfManyKeysHoldsAChunkAtATime) {
  constexpr int kKeys = 300'000;
  const auto rss_kb = [] {
    FILE* f = std::fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f != nullptr && std::fgets(line, sizeof(line), f) != nullptr) {
      if (std::strncmp(line, "VmRSS:", 6) == 0) kb = std::strtol(line + 6, nullptr, 10);
    }
    if (f != nullptr) std::fclose(f);
    return kb;
  };
  {
    auto in = store_->BeginInstall("j", 0, 10);
    ASSERT_TRUE(in.ok());
    std::vector<Change> chunk;
    for (int i = 0; i < kKeys; ++i) {
      char key[32];
      std::snprintf(key, sizeof(key), "user-%09d", i * 7);
      chunk.push_back(Put(key, std::string(100, static_cast<char>('a' + i % 26))));
      if (chunk.size() == 10'000) {
        ASSERT_TRUE((*in)->Add(chunk).ok());
        chunk.clear();
      }
    }
    ASSERT_TRUE((*in)->Commit().ok());
  }
  Delta("j", 0, 11, {Put("user-000000007", "changed"), Erase("user-000000014"), Put("zz", "new")});
  Reopen();  // the state as the store keeps it, not as the install left it in memory
  ASSERT_EQ(store_->Stats("j").keys, kKeys);
  const long before_kb = rss_kb();
  long peak_kb = before_kb;
  size_t chunks = 0, keys = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto in = store_->BeginInstall("j", 1, 11);
  ASSERT_TRUE(in.ok());
  auto read = store_->ReadAsOf("j", 0, 11, 1 << 20, [&](std::span<const Change> chunk) {
    ++chunks;
    keys += chunk.size();
    peak_kb = std::max(peak_kb, rss_kb());
    return (*in)->Add(chunk);
  });
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_TRUE(*read);
  ASSERT_TRUE((*in)->Commit().ok());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  peak_kb = std::max(peak_kb, rss_kb());
  std::printf("[chunked copy] %s layout: %zu keys in %zu chunks, %.0f ms; RSS %ld MiB before, peak +%ld MiB\n",
              GetParam() ? "disk" : "memory", keys, chunks, ms, before_kb / 1024, (peak_kb - before_kb) / 1024);
  EXPECT_EQ(keys, static_cast<size_t>(kKeys));  // one key added, one erased
  EXPECT_GT(chunks, 30u);
  EXPECT_EQ(store_->Stats("j").keys, 2 * kKeys);
  EXPECT_EQ(Get("j", 1, "user-000000007"), "changed");
  EXPECT_EQ(Get("j", 1, "user-000000014"), std::nullopt);
  EXPECT_EQ(Get("j", 1, "zz"), "new");
  EXPECT_EQ(Get("j", 0, "user-000000007"), std::string(100, 'b'));  // read without folding
  if (GetParam()) {
    // The budget (16 MiB of cache and memtables), a chunk read and one
    // written, and the WriteBatch of the install: nothing like the 40 MB.
    EXPECT_LT(peak_kb - before_kb, 28 * 1024);
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, StateStoreTest, ::testing::Bool(), LayoutName);

}  // namespace
}  // namespace sluice::state
