// Unit tests of StateStore: folding deltas by batch, stale and missing
// deltas, Install, Drop, key encoding (prefix jobs, partitions, 0 bytes),
// reopening (after many folds: snapshot + deltas; after any one operation, as
// a crash would), the stats, and a printed timing figure. Copies (ReadAsOf,
// Freeze, ChangesSince, installs) are in state_copy_test.cc.
#include "lib/state/state_store.h"

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/unit/state_store_fixture.h"

namespace sluice::state {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;


TEST_P(StateStoreTest, PrepareMinusOneCreatesTheEmptyState) {
  EXPECT_EQ(Folded("j", 0), std::nullopt);
  EXPECT_TRUE(Prepare("j", 0, -1));
  EXPECT_EQ(Folded("j", 0), -1);
  EXPECT_TRUE(All("j", 0).empty());
  auto parts = store_->Partitions();
  ASSERT_TRUE(parts.ok()) << parts.status();
  EXPECT_THAT(*parts, ElementsAre(Pair("j", 0)));
  // Again: nothing changes.
  EXPECT_TRUE(Prepare("j", 0, -1));
  EXPECT_EQ(Folded("j", 0), -1);
}

TEST_P(StateStoreTest, PrepareOnAbsentStateReturnsFalse) {
  EXPECT_FALSE(Prepare("j", 0, 5));
  EXPECT_EQ(Folded("j", 0), std::nullopt);
  auto parts = store_->Partitions();
  ASSERT_TRUE(parts.ok());
  EXPECT_TRUE(parts->empty());
}

TEST_P(StateStoreTest, PrepareFoldsDeltasInOrderAndTombstonesErase) {
  ASSERT_TRUE(Prepare("j", 3, -1));
  Delta("j", 3, 0, {Put("a", "1"), Put("b", "2"), Put("c", "3")});
  EXPECT_EQ(Get("j", 3, "a"), std::nullopt);  // not folded yet
  ASSERT_TRUE(Prepare("j", 3, 0));
  EXPECT_EQ(Folded("j", 3), 0);
  EXPECT_EQ(Get("j", 3, "a"), "1");
  EXPECT_EQ(Get("j", 3, "b"), "2");
  Delta("j", 3, 1, {Erase("a"), Put("b", "20"), Erase("never")});
  Delta("j", 3, 2, {Put("a", "100"), Erase("c")});
  ASSERT_TRUE(Prepare("j", 3, 2));
  EXPECT_EQ(Folded("j", 3), 2);
  EXPECT_THAT(All("j", 3), ElementsAre(Pair("a", "100"), Pair("b", "20")));
  // Folded deltas are gone.
  EXPECT_EQ(store_->ReadDelta("j", 3, 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadDelta("j", 3, 2).status().code(), absl::StatusCode::kNotFound);
  Delta("j", 3, 3, {Erase("b")});
  ASSERT_TRUE(Prepare("j", 3, 3));
  EXPECT_EQ(Get("j", 3, "b"), std::nullopt);
  EXPECT_THAT(All("j", 3), ElementsAre(Pair("a", "100")));
}

TEST_P(StateStoreTest, RewrittenDeltaReplacesTheEarlierOne) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  Delta("j", 0, 0, {Put("x", "first"), Put("y", "only-in-first")});
  Delta("j", 0, 0, {Put("x", "second"), Put("z", "3")});
  auto d = store_->ReadDelta("j", 0, 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(*d, ElementsAre(Put("x", "second"), Put("z", "3")));
  ASSERT_TRUE(Prepare("j", 0, 0));
  EXPECT_THAT(All("j", 0), ElementsAre(Pair("x", "second"), Pair("z", "3")));
}

TEST_P(StateStoreTest, PrepareRemovesStaleDeltasAboveBase) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  Delta("j", 0, 0, {Put("k", "0")});
  Delta("j", 0, 1, {Put("k", "stale"), Put("s", "stale")});  // an attempt of 1 that never committed
  Delta("j", 0, 2, {});                                         // and an empty one of 2
  ASSERT_TRUE(Prepare("j", 0, 0));
  EXPECT_EQ(Get("j", 0, "k"), "0");
  EXPECT_EQ(store_->ReadDelta("j", 0, 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadDelta("j", 0, 2).status().code(), absl::StatusCode::kNotFound);
  // A later Prepare(1) does not find the stale delta: batch 1 must be re-run.
  EXPECT_FALSE(Prepare("j", 0, 1));
  Delta("j", 0, 1, {Put("k", "1")});
  ASSERT_TRUE(Prepare("j", 0, 1));
  EXPECT_THAT(All("j", 0), ElementsAre(Pair("k", "1")));
}

TEST_P(StateStoreTest, PrepareAtFoldedBatchDropsEmptyStaleDelta) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  Delta("j", 0, 0, {});
  ASSERT_TRUE(Prepare("j", 0, -1));
  EXPECT_EQ(store_->ReadDelta("j", 0, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Folded("j", 0), -1);
}

TEST_P(StateStoreTest, MissingDeltaInTheMiddleChangesNothing) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  Delta("j", 0, 0, {Put("a", "0")});
  Delta("j", 0, 2, {Put("a", "2")});
  EXPECT_FALSE(Prepare("j", 0, 2));
  EXPECT_EQ(Folded("j", 0), -1);
  EXPECT_TRUE(All("j", 0).empty());
  // Both deltas are still there.
  auto d0 = store_->ReadDelta("j", 0, 0);
  auto d2 = store_->ReadDelta("j", 0, 2);
  ASSERT_TRUE(d0.ok()) << d0.status();
  ASSERT_TRUE(d2.ok()) << d2.status();
  EXPECT_THAT(*d0, ElementsAre(Put("a", "0")));
  EXPECT_THAT(*d2, ElementsAre(Put("a", "2")));
  Delta("j", 0, 1, {Put("b", "1")});
  ASSERT_TRUE(Prepare("j", 0, 2));
  EXPECT_THAT(All("j", 0), ElementsAre(Pair("a", "2"), Pair("b", "1")));
}

TEST_P(StateStoreTest, FoldedBeyondBaseReturnsFalse) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  Delta("j", 0, 0, {Put("a", "0")});
  Delta("j", 0, 1, {Put("a", "1")});
  ASSERT_TRUE(Prepare("j", 0, 1));
  EXPECT_FALSE(Prepare("j", 0, 0));
  EXPECT_FALSE(Prepare("j", 0, -1));
  EXPECT_EQ(Folded("j", 0), 1);
  EXPECT_EQ(Get("j", 0, "a"), "1");
  EXPECT_EQ(store_->Prepare("j", 0, -2).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(StateStoreTest, WriteDeltaAtOrBelowFoldedBatchIsRefused) {
  EXPECT_EQ(store_->WriteDelta("j", 0, 0, std::vector<Change>{Put("a", "1")}).code(),
            absl::StatusCode::kFailedPrecondition);  // not held
  ASSERT_TRUE(Prepare("j", 0, -1));
  Delta("j", 0, 0, {Put("a", "1")});
  Delta("j", 0, 1, {Put("a", "2")});
  ASSERT_TRUE(Prepare("j", 0, 1));
  EXPECT_EQ(store_->WriteDelta("j", 0, 1, std::vector<Change>{Put("a", "x")}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->WriteDelta("j", 0, 0, std::vector<Change>{}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Get("j", 0, "a"), "2");
  EXPECT_TRUE(store_->WriteDelta("j", 0, 2, std::vector<Change>{}).ok());
}

TEST_P(StateStoreTest, ReadDeltaReturnsWhatWasWrittenInKeyOrder) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  EXPECT_EQ(store_->ReadDelta("j", 0, 0).status().code(), absl::StatusCode::kNotFound);
  Delta("j", 0, 0, {Put("b", "2"), Erase("a"), Put(std::string("c\0d", 3), std::string("v\0", 2)), Put("e", "")});
  auto d = store_->ReadDelta("j", 0, 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(*d, ElementsAre(Erase("a"), Put("b", "2"), Put(std::string("c\0d", 3), std::string("v\0", 2)),
                              Put("e", "")));
  Delta("j", 0, 1, {});
  auto empty = store_->ReadDelta("j", 0, 1);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(store_->ReadDelta("j", 0, 2).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadDelta("j", 1, 0).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(StateStoreTest, InstallReplacesEverything) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  Delta("j", 0, 0, {Put("old", "0"), Put("shared", "0")});
  ASSERT_TRUE(Prepare("j", 0, 0));
  Delta("j", 0, 1, {Put("pending", "1")});
  Delta("j", 0, 2, {Put("pending", "2")});
  ASSERT_TRUE(store_->Install("j", 0, 7, std::vector<Change>{Put("new", "7"), Put("shared", "7")}).ok());
  EXPECT_EQ(Folded("j", 0), 7);
  EXPECT_THAT(All("j", 0), ElementsAre(Pair("new", "7"), Pair("shared", "7")));
  EXPECT_EQ(store_->ReadDelta("j", 0, 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadDelta("j", 0, 2).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Prepare("j", 0, 7));
  EXPECT_FALSE(Prepare("j", 0, 8));
  // Install on an absent partition creates it; an erased entry is refused.
  ASSERT_TRUE(store_->Install("k", 1, 3, std::vector<Change>{Put("a", "b")}).ok());
  EXPECT_EQ(Folded("k", 1), 3);
  EXPECT_EQ(Get("k", 1, "a"), "b");
  EXPECT_EQ(store_->Install("k", 2, 3, std::vector<Change>{Erase("a")}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Folded("k", 2), std::nullopt);
}

TEST_P(StateStoreTest, DropLeavesOtherPartitionsAndPrefixJobsIntact) {
  const std::vector<std::string> jobs = {"a", "ab", "b"};
  const std::vector<int32_t> parts = {1, 10, 256};
  for (const auto& job : jobs) {
    for (int32_t p : parts) {
      ASSERT_TRUE(store_->Install(job, p, 4, std::vector<Change>{Put("k", job + "/" + std::to_string(p))}).ok());
      Delta(job, p, 5, {Put("d", "5")});
    }
  }
  ASSERT_TRUE(store_->Drop("a", 10).ok());
  EXPECT_EQ(Folded("a", 10), std::nullopt);
  EXPECT_EQ(Get("a", 10, "k"), std::nullopt);
  EXPECT_EQ(store_->ReadDelta("a", 10, 5).status().code(), absl::StatusCode::kNotFound);
  for (const auto& job : jobs) {
    for (int32_t p : parts) {
      if (job == "a" && p == 10) continue;
      EXPECT_EQ(Folded(job, p), 4) << job << " " << p;
      EXPECT_EQ(Get(job, p, "k"), job + "/" + std::to_string(p));
      EXPECT_TRUE(store_->ReadDelta(job, p, 5).ok()) << job << " " << p;
    }
  }
  ASSERT_TRUE(store_->DropJob("a").ok());
  auto held = store_->Partitions();
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_THAT(*held, ElementsAre(Pair("ab", 1), Pair("ab", 10), Pair("ab", 256), Pair("b", 1), Pair("b", 10),
                                 Pair("b", 256)));
  for (int32_t p : parts) {
    EXPECT_EQ(Get("a", p, "k"), std::nullopt);
    EXPECT_EQ(Get("ab", p, "k"), "ab/" + std::to_string(p));
    EXPECT_TRUE(Prepare("ab", p, 5));
    EXPECT_EQ(Get("ab", p, "d"), "5");
  }
  // Dropping "ab" leaves "b"; dropping an unknown job is fine.
  ASSERT_TRUE(store_->DropJob("ab").ok());
  ASSERT_TRUE(store_->DropJob("nope").ok());
  held = store_->Partitions();
  ASSERT_TRUE(held.ok());
  EXPECT_THAT(*held, ElementsAre(Pair("b", 1), Pair("b", 10), Pair("b", 256)));
}

TEST_P(StateStoreTest, JobNamesWithSeparatorsAndZeroBytesDoNotCollide) {
  const std::string j1("x", 1);
  const std::string j2(std::string("x\0", 2));
  const std::string j3("x/1");
  for (const auto& job : {j1, j2, j3}) ASSERT_TRUE(store_->Install(job, 1, 0, std::vector<Change>{Put("k", job)}).ok());
  ASSERT_TRUE(store_->DropJob(j1).ok());
  EXPECT_EQ(Get(j1, 1, "k"), std::nullopt);
  EXPECT_EQ(Get(j2, 1, "k"), j2);
  EXPECT_EQ(Get(j3, 1, "k"), j3);
}

TEST_P(StateStoreTest, ScanWithPrefixAndEarlyStop) {
  ASSERT_TRUE(store_->Install("j", 0, 0,
                              std::vector<Change>{Put("apple", "1"), Put("apricot", "2"), Put("banana", "3"),
                                                  Put("ap", "0"), Put("a", "x")})
                  .ok());
  ASSERT_TRUE(store_->Install("j", 1, 0, std::vector<Change>{Put("apx", "other partition")}).ok());
  EXPECT_THAT(All("j", 0, "ap"), ElementsAre(Pair("ap", "0"), Pair("apple", "1"), Pair("apricot", "2")));
  EXPECT_THAT(All("j", 0, "b"), ElementsAre(Pair("banana", "3")));
  EXPECT_TRUE(All("j", 0, "c").empty());
  EXPECT_EQ(All("j", 0).size(), 5u);
  std::vector<std::string> seen;
  Status s = store_->Scan("j", 0, "", [&](std::string_view k, std::string_view) {
    seen.emplace_back(k);
    return seen.size() < 2;
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_THAT(seen, ElementsAre("a", "ap"));
}

TEST_P(StateStoreTest, KeysAndValuesWithZeroAndHighBytes) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  const std::string k1("\0", 1), k2("\0\0", 2), k3("a\0b", 3), k4("\xff\xff", 2), k5("\xff", 1);
  Delta("j", 0, 0, {Put(k1, std::string("\0v1", 3)), Put(k2, "v2"), Put(k3, "v3"), Put(k4, "v4"), Put(k5, "v5")});
  ASSERT_TRUE(Prepare("j", 0, 0));
  EXPECT_EQ(Get("j", 0, k1), std::string("\0v1", 3));
  EXPECT_EQ(Get("j", 0, k2), "v2");
  EXPECT_EQ(Get("j", 0, std::string("a", 1)), std::nullopt);
  EXPECT_THAT(All("j", 0, std::string("\0", 1)),
              ElementsAre(Pair(k1, std::string("\0v1", 3)), Pair(k2, "v2")));
  EXPECT_THAT(All("j", 0, "\xff"), ElementsAre(Pair(k5, "v5"), Pair(k4, "v4")));
  Delta("j", 0, 1, {Erase(k1)});
  ASSERT_TRUE(Prepare("j", 0, 1));
  EXPECT_EQ(Get("j", 0, k1), std::nullopt);
  EXPECT_EQ(Get("j", 0, k2), "v2");
}

TEST_P(StateStoreTest, ReopeningKeepsEverything) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  Delta("j", 0, 0, {Put("a", "0")});
  ASSERT_TRUE(Prepare("j", 0, 0));
  Delta("j", 0, 1, {Put("a", "1"), Erase("b")});
  ASSERT_TRUE(store_->Install("k", 2, 9, std::vector<Change>{Put("z", "9")}).ok());
  Reopen();
  EXPECT_EQ(Folded("j", 0), 0);
  EXPECT_EQ(Get("j", 0, "a"), "0");
  auto d = store_->ReadDelta("j", 0, 1);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(*d, ElementsAre(Put("a", "1"), Erase("b")));
  EXPECT_EQ(Folded("k", 2), 9);
  EXPECT_EQ(Get("k", 2, "z"), "9");
  auto held = store_->Partitions();
  ASSERT_TRUE(held.ok());
  EXPECT_THAT(*held, ElementsAre(Pair("j", 0), Pair("k", 2)));
  ASSERT_TRUE(Prepare("j", 0, 1));
  EXPECT_EQ(Get("j", 0, "a"), "1");
}

void ExpectStats(StateStore& store, const std::string& job, int64_t partitions, int64_t keys, int64_t bytes) {
  StateStats s = store.Stats(job);
  EXPECT_EQ(s.partitions, partitions) << job;
  EXPECT_EQ(s.keys, keys) << job;
  EXPECT_EQ(s.bytes, bytes) << job;
}

TEST_P(StateStoreTest, StatsFollowFoldsInstallDropAndReopen) {
  ExpectStats(*store_, "j", 0, 0, 0);  // loads (an empty store)
  ASSERT_TRUE(Prepare("j", 0, -1));
  ExpectStats(*store_, "j", 1, 0, 0);
  Delta("j", 0, 0, {Put("a", "111"), Put("bb", "2")});  // 4 + 3
  ExpectStats(*store_, "j", 1, 0, 0);                   // not folded yet
  ASSERT_TRUE(Prepare("j", 0, 0));
  ExpectStats(*store_, "j", 1, 2, 7);
  // Overwrite a (1+1), erase bb, erase a key never there, add c twice across batches.
  Delta("j", 0, 1, {Put("a", "1"), Erase("bb"), Erase("zz"), Put("c", "xx")});
  Delta("j", 0, 2, {Put("c", "yyyy")});  // c: 1 + 4
  ASSERT_TRUE(Prepare("j", 0, 2));
  ExpectStats(*store_, "j", 1, 2, 7);
  Delta("j", 0, 3, {Erase("a"), Erase("c")});
  Delta("j", 0, 4, {Put("a", "12345")});  // stale: never folded
  ASSERT_TRUE(Prepare("j", 0, 3));
  ExpectStats(*store_, "j", 1, 0, 0);
  ASSERT_TRUE(store_->Install("j", 1, 3, std::vector<Change>{Put("k1", "v1"), Put("k2", "v22")}).ok());
  ASSERT_TRUE(store_->Install("jj", 1, 3, std::vector<Change>{Put("x", "y")}).ok());
  ExpectStats(*store_, "j", 2, 2, 9);
  ExpectStats(*store_, "jj", 1, 1, 2);
  // A key given twice to Install counts once (the later value).
  ASSERT_TRUE(store_->Install("j", 1, 4, std::vector<Change>{Put("k2", "v"), Put("k1", "v1"), Put("k2", "vvv")}).ok());
  ExpectStats(*store_, "j", 2, 2, 9);
  EXPECT_EQ(Get("j", 1, "k2"), "vvv");
  Delta("j", 0, 4, {Put("m", "12345")});
  ASSERT_TRUE(Prepare("j", 0, 4));
  ExpectStats(*store_, "j", 2, 3, 15);
  // Reopen: recomputed by a scan, same numbers.
  Reopen();
  ExpectStats(*store_, "j", 2, 3, 15);
  ExpectStats(*store_, "jj", 1, 1, 2);
  ASSERT_TRUE(store_->Drop("j", 1).ok());
  ExpectStats(*store_, "j", 1, 1, 6);
  ASSERT_TRUE(store_->DropJob("j").ok());
  ExpectStats(*store_, "j", 0, 0, 0);
  ExpectStats(*store_, "jj", 1, 1, 2);
}

TEST_P(StateStoreTest, StatsLoadedLateSeeEarlierWrites) {
  ASSERT_TRUE(store_->Install("j", 0, 0, std::vector<Change>{Put("a", "1"), Put("b", "22")}).ok());
  ASSERT_TRUE(Prepare("j", 5, -1));
  Delta("j", 5, 0, {Put("c", "333")});
  ASSERT_TRUE(Prepare("j", 5, 0));
  ExpectStats(*store_, "j", 2, 3, 9);
}

TEST_P(StateStoreTest, ConcurrentPartitionsKeepStatsExact) {
  constexpr int kPartitions = 4;
  constexpr int kBatches = 30;
  std::vector<std::thread> threads;
  std::atomic<bool> failed{false};
  for (int p = 0; p < kPartitions; ++p) {
    threads.emplace_back([&, p] {
      if (!store_->Prepare("j", p, -1).value_or(false)) failed = true;
      for (int n = 0; n < kBatches; ++n) {
        // Each batch puts key n and erases key n-2: two keys remain at the end.
        std::vector<Change> d = {Put("k" + std::to_string(n), "v")};
        if (n >= 2) d.push_back(Erase("k" + std::to_string(n - 2)));
        if (!store_->WriteDelta("j", p, n, d).ok()) failed = true;
        if (!store_->Prepare("j", p, n).value_or(false)) failed = true;
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 50; ++i) (void)store_->Stats("j");
  });
  for (auto& t : threads) t.join();
  EXPECT_FALSE(failed);
  // k28, k29: (3 + 1) bytes each.
  ExpectStats(*store_, "j", kPartitions, 2 * kPartitions, 8 * kPartitions);
  Reopen();
  ExpectStats(*store_, "j", kPartitions, 2 * kPartitions, 8 * kPartitions);
}


// A reference model of one partition: the folded state and the deltas written
// after it.
struct Model {
  int64_t folded = -1;
  std::map<std::string, std::string> state;
  std::map<int64_t, std::vector<Change>> deltas;  // N > folded, key order, one change per key

  static std::vector<Change> Normalize(const std::vector<Change>& changes) {
    std::map<std::string, std::optional<std::string>> last;
    for (const Change& c : changes) last[c.key] = c.value;
    std::vector<Change> out;
    for (auto& [k, v] : last) out.push_back(Change{k, v});
    return out;
  }
  void Fold(int64_t base) {
    for (int64_t n = folded + 1; n <= base; ++n) {
      for (const Change& c : deltas.at(n)) {
        if (c.value.has_value()) {
          state[c.key] = *c.value;
        } else {
          state.erase(c.key);
        }
      }
    }
    deltas.clear();  // folded ones and every stale one above base
    folded = base;
  }
  int64_t Bytes() const {
    int64_t b = 0;
    for (const auto& [k, v] : state) b += static_cast<int64_t>(k.size() + v.size());
    return b;
  }
};

std::vector<std::pair<std::string, std::string>> Pairs(const std::map<std::string, std::string>& m) {
  return {m.begin(), m.end()};
}

class StateStoreModelTest : public StateStoreTest {
 protected:
  // Checks every visible fact of (job, p) against the model.
  void ExpectMatches(const std::string& job, int32_t p, const Model& m) {
    EXPECT_EQ(Folded(job, p), m.folded) << job << "[" << p << "]";
    EXPECT_EQ(All(job, p), Pairs(m.state)) << job << "[" << p << "]";
    const StateStats st = store_->PartitionStats(job, p);
    EXPECT_EQ(st.partitions, 1);
    EXPECT_EQ(st.keys, static_cast<int64_t>(m.state.size()));
    EXPECT_EQ(st.bytes, m.Bytes());
    for (const auto& [n, d] : m.deltas) {
      auto r = store_->ReadDelta(job, p, n);
      ASSERT_TRUE(r.ok()) << r.status() << " batch " << n;
      EXPECT_EQ(*r, d) << "batch " << n;
    }
    EXPECT_EQ(store_->ReadDelta(job, p, m.folded).status().code(), absl::StatusCode::kNotFound);
    if (!m.state.empty()) {
      EXPECT_EQ(Get(job, p, m.state.begin()->first), m.state.begin()->second);
      EXPECT_EQ(Get(job, p, m.state.rbegin()->first), m.state.rbegin()->second);
    }
  }

  // A random delta over `keyspace` keys: puts (new values) and erasures.
  std::vector<Change> RandomDelta(std::mt19937& rng, int keyspace, int changes, int64_t batch) {
    std::vector<Change> d;
    for (int i = 0; i < changes; ++i) {
      std::string key = "key" + std::to_string(rng() % keyspace);
      if (rng() % 5 == 0) {
        d.push_back(Erase(std::move(key)));
      } else {
        d.push_back(Put(std::move(key), std::string(rng() % 40, 'a' + rng() % 26) + std::to_string(batch)));
      }
    }
    return d;
  }
};

TEST_P(StateStoreModelTest, ReopenAfterManyFoldsReproducesStateAndStats) {
  std::mt19937 rng(7);
  Model m;
  ASSERT_TRUE(Prepare("j", 0, -1));
  for (int64_t n = 0; n < 80; ++n) {
    // Small deltas and bigger ones, so both snapshot triggers (count, size) fire.
    const int size = n % 17 == 0 ? 3000 : static_cast<int>(rng() % 60);
    std::vector<Change> d = RandomDelta(rng, 2000, size, n);
    Delta("j", 0, n, d);
    m.deltas[n] = Model::Normalize(d);
    if (n % 3 != 2) {  // sometimes two batches per fold, sometimes one
      ASSERT_TRUE(Prepare("j", 0, n));
      m.Fold(n);
    }
    if (n % 7 == 0) {
      Reopen();
      ExpectMatches("j", 0, m);
    }
  }
  ExpectMatches("j", 0, m);
  Reopen();
  ExpectStats(*store_, "j", 1, static_cast<int64_t>(m.state.size()), m.Bytes());  // before any load
  ExpectMatches("j", 0, m);
  // A pending delta survives the reopen and folds.
  Delta("j", 0, 80, {Put("after", "reopen")});
  Reopen();
  ASSERT_TRUE(Prepare("j", 0, 80));
  m.deltas[80] = {Put("after", "reopen")};
  m.Fold(80);
  ExpectMatches("j", 0, m);
}

TEST_P(StateStoreModelTest, CrashLikeReopenAfterEveryOperationShowsThatOperation) {
  // Every operation is one WriteBatch: the object destroyed right after it
  // (no further call) and reopened shows the state the operation made.
  std::mt19937 rng(11);
  Model m;
  ASSERT_TRUE(Prepare("j", 1, -1));
  for (int64_t n = 0; n < 40; ++n) {
    std::vector<Change> d = RandomDelta(rng, 300, static_cast<int>(rng() % 200), n);
    Delta("j", 1, n, d);
    m.deltas[n] = Model::Normalize(d);
    Reopen();
    ExpectMatches("j", 1, m);
    if (n % 5 == 4) {  // a stale attempt of n + 1, removed by the next fold
      std::vector<Change> stale = RandomDelta(rng, 300, 50, n + 1);
      Delta("j", 1, n + 1, stale);
      m.deltas[n + 1] = Model::Normalize(stale);
      Reopen();
      ExpectMatches("j", 1, m);
    }
    ASSERT_TRUE(Prepare("j", 1, n));
    m.Fold(n);
    Reopen();
    ExpectMatches("j", 1, m);
    if (n % 9 == 8) {
      std::vector<Change> entries;
      for (int i = 0; i < 100; ++i) entries.push_back(Put("i" + std::to_string(i), std::to_string(n)));
      ASSERT_TRUE(store_->Install("j", 1, n, entries).ok());
      m.state.clear();
      for (const Change& e : entries) m.state[e.key] = *e.value;
      Reopen();
      ExpectMatches("j", 1, m);
    }
  }
}

TEST_P(StateStoreModelTest, InstallThenReopen) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  for (int64_t n = 0; n < 5; ++n) {
    Delta("j", 0, n, {Put("old" + std::to_string(n), "x")});
    ASSERT_TRUE(Prepare("j", 0, n));
  }
  Delta("j", 0, 5, {Put("pending", "5")});
  Model m;
  std::vector<Change> entries;
  for (int i = 0; i < 5000; ++i) entries.push_back(Put("k" + std::to_string(i), std::string(i % 50, 'v')));
  entries.push_back(Put("k7", "again"));  // the later wins
  ASSERT_TRUE(store_->Install("j", 0, 20, entries).ok());
  for (const Change& e : entries) m.state[e.key] = *e.value;
  m.folded = 20;
  Reopen();
  ExpectMatches("j", 0, m);
  EXPECT_EQ(Get("j", 0, "k7"), "again");
  EXPECT_EQ(Get("j", 0, "old1"), std::nullopt);
  EXPECT_EQ(store_->ReadDelta("j", 0, 5).status().code(), absl::StatusCode::kNotFound);
  // Folding on top of the installed state, then reopening again.
  Delta("j", 0, 21, {Erase("k1"), Put("new", "21")});
  ASSERT_TRUE(Prepare("j", 0, 21));
  m.deltas[21] = Model::Normalize({Erase("k1"), Put("new", "21")});
  m.Fold(21);
  Reopen();
  ExpectMatches("j", 0, m);
  // Install on a partition not loaded since the reopen.
  Reopen();
  ASSERT_TRUE(store_->Install("j", 0, 30, std::vector<Change>{Put("only", "1")}).ok());
  Reopen();
  EXPECT_THAT(All("j", 0), ElementsAre(Pair("only", "1")));
  EXPECT_EQ(Folded("j", 0), 30);
  ExpectStats(*store_, "j", 1, 1, 5);
}

TEST_P(StateStoreModelTest, ManyPartitions) {
  std::mt19937 rng(3);
  constexpr int kPartitions = 64;
  std::map<std::pair<std::string, int32_t>, Model> models;
  for (const std::string job : {"a", "ab"}) {
    for (int32_t p = 0; p < kPartitions; ++p) {
      ASSERT_TRUE(Prepare(job, p, -1));
      models[{job, p}];
    }
  }
  for (int64_t n = 0; n < 12; ++n) {
    for (auto& [id, m] : models) {
      std::vector<Change> d = RandomDelta(rng, 100, static_cast<int>(rng() % 30), n);
      Delta(id.first, id.second, n, d);
      m.deltas[n] = Model::Normalize(d);
      if ((n + id.second) % 2 == 1) {
        ASSERT_TRUE(Prepare(id.first, id.second, n));
        m.Fold(n);
      }
    }
  }
  Reopen();
  for (const std::string job : {"a", "ab"}) {
    int64_t keys = 0, bytes = 0;
    for (int32_t p = 0; p < kPartitions; ++p) {
      keys += static_cast<int64_t>(models[{job, p}].state.size());
      bytes += models[{job, p}].Bytes();
    }
    ExpectStats(*store_, job, kPartitions, keys, bytes);
  }
  auto held = store_->Partitions();
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->size(), 2u * kPartitions);
  for (auto& [id, m] : models) ExpectMatches(id.first, id.second, m);
  ASSERT_TRUE(store_->DropJob("a").ok());
  Reopen();
  held = store_->Partitions();
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(held->size(), static_cast<size_t>(kPartitions));
  ExpectStats(*store_, "a", 0, 0, 0);
  for (int32_t p = 0; p < kPartitions; ++p) ExpectMatches("ab", p, models[{"ab", p}]);
}

// Not an assertion (machines differ): prints the cost of a batch's Prepare
// and WriteDelta with 25,000 changed keys over 100,000.
TEST_P(StateStoreTest, TimingOfPrepareAndWriteDelta) {
  using Clock = std::chrono::steady_clock;
  constexpr int kKeys = 100000;
  constexpr int kChanged = 25000;
  constexpr int kBatches = 20;
  ASSERT_TRUE(Prepare("j", 0, -1));
  std::mt19937 rng(1);
  double prepare_ms = 0, delta_ms = 0, get_ms = 0;
  double prepare_min = 1e9, prepare_max = 0;
  for (int64_t n = 0; n < kBatches; ++n) {
    std::map<std::string, std::optional<std::string>> changed;
    while (static_cast<int>(changed.size()) < kChanged) {
      char key[32];
      std::snprintf(key, sizeof(key), "window-%08u", static_cast<unsigned>(rng() % kKeys));
      changed[key] = std::to_string(n * 1000 + rng() % 1000);
    }
    std::vector<Change> d;
    d.reserve(changed.size());
    for (auto& [k, v] : changed) d.push_back(Change{k, v});
    const auto t0 = Clock::now();
    for (const Change& c : d) (void)store_->Get("j", 0, c.key);
    const auto t1 = Clock::now();
    Delta("j", 0, n, d);
    const auto t2 = Clock::now();
    ASSERT_TRUE(Prepare("j", 0, n));
    const auto t3 = Clock::now();
    get_ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
    delta_ms += std::chrono::duration<double, std::milli>(t2 - t1).count();
    const double prepare = std::chrono::duration<double, std::milli>(t3 - t2).count();
    prepare_ms += prepare;
    prepare_min = std::min(prepare_min, prepare);
    prepare_max = std::max(prepare_max, prepare);
  }
  const StateStats st = store_->Stats("j");
  std::printf("[timing] %d batches, %d changed keys each, %lld keys: per batch Prepare %.1f ms (%.1f..%.1f), "
              "WriteDelta %.1f ms, %d Gets %.1f ms\n",
              kBatches, kChanged, static_cast<long long>(st.keys), prepare_ms / kBatches, prepare_min, prepare_max,
              delta_ms / kBatches, kChanged, get_ms / kBatches);
  const auto t0 = Clock::now();
  Reopen();
  EXPECT_EQ(store_->Stats("j").keys, st.keys);
  EXPECT_TRUE(Get("j", 0, "window-00000001").has_value() || true);  // loads
  std::printf("[timing] reopen + load: %.1f ms\n",
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
}

// A store opened with the other layout converts a partition the first time
// it loads it: everything visible stays (state, folded batch, stats, the
// deltas not folded yet, the folded deltas an incremental copy reads), and
// so it does when converted back.
TEST_P(StateStoreTest, ChangingTheLayoutOnReopenKeepsEverything) {
  ASSERT_TRUE(Prepare("j", 0, -1));
  for (int64_t n = 0; n <= 14; ++n) {
    std::vector<Change> d = {Put("k" + std::to_string(n % 7), "v" + std::to_string(n)), Put("n" + std::to_string(n), "x")};
    if (n % 4 == 3) d.push_back(Erase("k" + std::to_string((n + 1) % 7)));
    Delta("j", 0, n, d);
    ASSERT_TRUE(Prepare("j", 0, n));
  }
  Delta("j", 0, 15, {Put("late", "15"), Erase("n0")});
  ASSERT_TRUE(store_->Install("j", 1, 9, std::vector<Change>{Put("a", "1"), Put("b", std::string("\0\xff", 2))}).ok());
  const auto state0 = All("j", 0);
  const auto state1 = All("j", 1);
  const StateStats stats = store_->Stats("j");
  auto delta15 = store_->ReadDelta("j", 0, 15);
  ASSERT_TRUE(delta15.ok());
  auto recent = store_->ChangesSince("j", 0, 13, 15);
  ASSERT_TRUE(recent.ok() && recent->has_value());
  for (const int64_t budget : {GetParam() ? int64_t{0} : int64_t{16} << 20, GetParam() ? int64_t{16} << 20 : int64_t{0}}) {
    ReopenWith(budget);
    EXPECT_EQ(All("j", 0), state0) << "budget " << budget;
    EXPECT_EQ(All("j", 1), state1);
    EXPECT_EQ(Folded("j", 0), 14);
    EXPECT_EQ(Folded("j", 1), 9);
    EXPECT_EQ(store_->Stats("j").keys, stats.keys);
    EXPECT_EQ(store_->Stats("j").bytes, stats.bytes);
    auto d = store_->ReadDelta("j", 0, 15);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, *delta15);
    for (const auto& [k, v] : state0) EXPECT_EQ(Get("j", 0, k), v) << k;
    EXPECT_EQ(Get("j", 1, std::string_view("b")), std::string("\0\xff", 2));
    // The copy on top of C still catches up with the pending delta. (To
    // memory, the conversion makes a snapshot as of C, which covers the
    // folded deltas; to disk they are kept.)
    auto again = store_->ChangesSince("j", 0, 14, 15);
    ASSERT_TRUE(again.ok() && again->has_value());
    EXPECT_EQ(**again, *delta15);
  }
  // And the partition goes on: the pending delta folds in either layout.
  ASSERT_TRUE(Prepare("j", 0, 15));
  EXPECT_EQ(Get("j", 0, "late"), "15");
  EXPECT_EQ(Get("j", 0, "n0"), std::nullopt);
  EXPECT_EQ(store_->Stats("j").keys, stats.keys);  // one key added, one erased
}

INSTANTIATE_TEST_SUITE_P(Layouts, StateStoreTest, ::testing::Bool(), LayoutName);
INSTANTIATE_TEST_SUITE_P(Layouts, StateStoreModelTest, ::testing::Bool(), LayoutName);

}  // namespace
}  // namespace sluice::state
