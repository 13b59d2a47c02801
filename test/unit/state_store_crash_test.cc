// Crash tests of StateStore (docs/state.md, "State: versioned by batch"):
// a script of calls runs on a store opened over FaultInjectionFS, the
// machine dies after any call (or the process does), and the store reopened
// must show exactly what it showed after one whole call:
//   - a process crash (kill -9: nothing unsynced is lost) keeps every call;
//   - a power failure (the unsynced tail of each file cut anywhere) goes back
//     to an earlier whole call, never half of one: a fold never leaves the
//     stale delta it removed, and the snapshot m/ names is always whole;
//   - a power failure that loses every unsynced byte loses calls: the store
//     syncs nothing, and its replica covers the loss of a machine;
//   - a full disk fails writes (the task that wrote runs again) until it is
//     freed; then the same store takes them, without reopening.
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "lib/state/state_store.h"
#include "rocksdb/env.h"
#include "test/harness/fault_injection_fs.h"
#include "test/harness/util.h"

namespace sluice::state {
namespace {

// What a store shows of one (job, p): its folded batch, the state as of it
// and the deltas written after it, not folded yet.
struct PartView {
  int64_t folded = -1;
  std::vector<Change> state;
  std::map<int64_t, std::vector<Change>> pending;
  bool operator==(const PartView&) const = default;
};
using View = std::map<std::pair<std::string, int32_t>, PartView>;

constexpr int64_t kMaxAhead = 3;  // the script writes deltas at most this far past the folded batch

Result<View> Look(StateStore& store) {
  View view;
  ASSIGN_OR_RETURN(auto parts, store.Partitions());
  for (const auto& [job, p] : parts) {
    PartView& part = view[{job, p}];
    ASSIGN_OR_RETURN(std::optional<int64_t> folded, store.FoldedBatch(job, p));
    if (!folded.has_value()) return absl::InternalError(fmt::format("{}[{}] listed but not held", job, p));
    part.folded = *folded;
    ASSIGN_OR_RETURN(std::optional<std::vector<Change>> state, store.ReadAsOf(job, p, *folded));
    if (!state.has_value()) return absl::InternalError(fmt::format("{}[{}] unreadable as of {}", job, p, *folded));
    part.state = std::move(*state);
    for (int64_t n = *folded + 1; n <= *folded + kMaxAhead; ++n) {
      Result<std::vector<Change>> delta = store.ReadDelta(job, p, n);
      if (delta.ok()) {
        part.pending[n] = std::move(*delta);
      } else if (delta.status().code() != absl::StatusCode::kNotFound) {
        return delta.status();
      }
    }
  }
  return view;
}

std::string Describe(const View& view) {
  std::string out;
  for (const auto& [id, part] : view) {
    out += fmt::format("{}[{}]: C={} keys={} pending={{", id.first, id.second, part.folded, part.state.size());
    for (const auto& [n, d] : part.pending) out += fmt::format(" {}:{}", n, d.size());
    out += " } ";
  }
  return out.empty() ? "(empty)" : out;
}

using Step = std::function<Status(StateStore&)>;

Step Prepare(std::string job, int32_t p, int64_t base) {
  return [=](StateStore& s) -> Status {
    ASSIGN_OR_RETURN(bool prepared, s.Prepare(job, p, base));
    static_cast<void>(prepared);  // false is a valid answer too; the view records it
    return absl::OkStatus();
  };
}
Step Delta(std::string job, int32_t p, int64_t batch, std::vector<Change> changes) {
  return [=](StateStore& s) { return s.WriteDelta(job, p, batch, changes); };
}

// Changes of batch `b` of a partition: `count` keys of `value_bytes`, spread
// over `key_space` keys, and a tombstone now and then. `tag` is part of
// every value, so the deltas of two attempts of one batch differ.
std::vector<Change> Changes(int64_t b, int count, int key_space, size_t value_bytes, const std::string& tag) {
  std::vector<Change> out;
  std::mt19937 rng(static_cast<uint32_t>(b * 7919 + count));
  for (int i = 0; i < count; ++i) {
    std::string key = fmt::format("key-{:05d}", rng() % key_space);
    if (i % 9 == 8) {
      out.push_back(Change{std::move(key), std::nullopt});
    } else {
      std::string value = fmt::format("{}-b{}-{}-", tag, b, i);
      value.resize(std::max(value.size(), value_bytes), 'v');
      out.push_back(Change{std::move(key), std::move(value)});
    }
  }
  return out;
}

// The life of a worker's state: two jobs' partitions created, a delta per
// batch and its fold, stale attempts of the next batch left before a fold
// (removed by it), snapshots (every 10 folds, or when the deltas outgrow
// the last one), an Install, a Drop and a DropJob.
std::vector<Step> Script(int batches, int count, int key_space, size_t value_bytes) {
  std::vector<Step> steps = {Prepare("j", 0, -1), Prepare("j", 1, -1), Prepare("k", 0, -1)};
  for (int64_t b = 0; b < batches; ++b) {
    steps.push_back(Delta("j", 0, b, Changes(b, count, key_space, value_bytes, "ok")));
    if (b % 3 == 1) {
      // An attempt at b + 1 that never commits: the fold to b removes it.
      steps.push_back(Delta("j", 0, b + 1, Changes(b + 1, count, key_space, value_bytes, "stale")));
    }
    steps.push_back(Delta("j", 1, b, Changes(b + 1000, 5, 50, 20, "ok")));
    if (b < batches / 2) steps.push_back(Delta("k", 0, b, Changes(b + 2000, 3, 20, 10, "ok")));
    steps.push_back(Prepare("j", 0, b));
    steps.push_back(Prepare("j", 1, b));
    if (b < batches / 2) steps.push_back(Prepare("k", 0, b));
    if (b == batches / 3) {
      steps.push_back([b](StateStore& s) {
        std::vector<Change> entries = Changes(b + 3000, 30, 100, 40, "installed");
        std::erase_if(entries, [](const Change& c) { return !c.value.has_value(); });
        return s.Install("j", 2, b, entries);
      });
    }
    if (b == batches / 3) {
      // A chunked install (a copy streamed from another worker): three
      // chunks, then the switch. In the disk layout each chunk is its own
      // write into a fresh generation; a crash before the switch leaves the
      // old copy and a generation that the next Open removes.
      steps.push_back([b](StateStore& s) -> Status {
        std::vector<Change> entries = Changes(b + 4000, 60, 200, 30, "chunked");
        std::erase_if(entries, [](const Change& c) { return !c.value.has_value(); });
        ASSIGN_OR_RETURN(std::unique_ptr<StateStore::Installer> in, s.BeginInstall("j", 3, b));
        const size_t third = entries.size() / 3;
        RETURN_IF_ERROR(in->Add(std::span<const Change>(entries).subspan(0, third)));
        RETURN_IF_ERROR(in->Add(std::span<const Change>(entries).subspan(third, third)));
        RETURN_IF_ERROR(in->Add(std::span<const Change>(entries).subspan(2 * third)));
        return in->Commit();
      });
    }
    if (b == batches / 2) steps.push_back([](StateStore& s) { return s.DropJob("k"); });
    if (b == 2 * batches / 3) steps.push_back([](StateStore& s) { return s.Drop("j", 2); });
  }
  return steps;
}

// Over both layouts: in memory (no budget) and on disk (a budget).
class StateStoreCrashTest : public ::testing::TestWithParam<bool> {
 protected:
  StateStoreOptions Options() const { return {.memory_budget_bytes = GetParam() ? int64_t{16} << 20 : 0}; }
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "/sluice-state-crash-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // What the store shows before any call and after each one, without a crash.
  std::vector<View> Reference(const std::vector<Step>& steps) {
    const std::string path = dir_ + "/reference";
    std::vector<View> views(1);
    {
      auto store = StateStore::Open(path, nullptr, Options());
      EXPECT_TRUE(store.ok()) << store.status();
      if (!store.ok()) return {};
      for (size_t i = 0; i < steps.size(); ++i) {
        Status s = steps[i](**store);
        EXPECT_TRUE(s.ok()) << "step " << i << ": " << s;
        Result<View> view = Look(**store);
        EXPECT_TRUE(view.ok()) << view.status();
        views.push_back(view.ok() ? *view : View());
      }
    }
    std::filesystem::remove_all(path);
    return views;
  }

  enum class Crash {
    kProcess,       // kill -9: what was written survives, unsynced or not
    kPowerPartial,  // each unsynced tail cut at a random point
    kPowerAll,      // every unsynced byte lost
  };

  // Runs steps [0, calls) over FaultInjectionFS and crashes: after the last
  // one, or (at_write > 0) inside it, just before its at_write-th write to a
  // file. Reopens with the real file system; the view then (an error status
  // if it cannot be read).
  Result<View> RunAndCrash(const std::vector<Step>& steps, size_t calls, Crash crash, uint32_t seed,
                           int at_write = 0) {
    const std::string path = fmt::format("{}/trial-{}-{}-{}", dir_, calls, seed, at_write);
    auto fs = std::make_shared<testing::FaultInjectionFS>(rocksdb::FileSystem::Default());
    std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
    {
      auto store = StateStore::Open(path, env.get(), Options());
      if (!store.ok()) return store.status();
      for (size_t i = 0; i < calls; ++i) {
        if (at_write > 0 && i + 1 == calls) {
          fs->DeactivateAtAppend(at_write);
          IgnoreError(steps[i](**store), "the process dies in it: no one sees its answer");
          break;
        }
        RETURN_IF_ERROR_PREPEND(steps[i](**store), fmt::format("step {}", i));
      }
      fs->Deactivate();  // the machine (or the process) dies; the store object goes with it
    }
    std::mt19937_64 rng(seed);
    switch (crash) {
      case Crash::kProcess:
        break;
      case Crash::kPowerPartial:
        fs->DropUnsyncedData([&](uint64_t synced, uint64_t size) { return synced + rng() % (size - synced + 1); });
        break;
      case Crash::kPowerAll:
        fs->DropUnsyncedData();
        break;
    }
    auto reopened = StateStore::Open(path, nullptr, Options());
    if (!reopened.ok()) return reopened.status();
    Result<View> view = Look(**reopened);
    reopened->reset();
    std::filesystem::remove_all(path);
    return view;
  }

  // The k <= calls whose view `view` is (the latest if several), or -1.
  static int Match(const std::vector<View>& views, size_t calls, const View& view) {
    for (int k = static_cast<int>(calls); k >= 0; --k) {
      if (views[k] == view) return k;
    }
    return -1;
  }

  std::string dir_;
};

TEST_P(StateStoreCrashTest, ProcessCrashKeepsEveryCompletedCall) {
  const std::vector<Step> steps = Script(/*batches=*/15, /*count=*/12, /*key_space=*/60, /*value_bytes=*/30);
  const std::vector<View> views = Reference(steps);
  ASSERT_EQ(views.size(), steps.size() + 1);
  for (size_t calls = 0; calls <= steps.size(); calls += 3) {
    Result<View> view = RunAndCrash(steps, calls, Crash::kProcess, 1);
    ASSERT_TRUE(view.ok()) << "after " << calls << " calls: " << view.status();
    EXPECT_EQ(*view, views[calls]) << "after " << calls << " calls; reloaded " << Describe(*view) << "; expected "
                                   << Describe(views[calls]);
  }
}

TEST_P(StateStoreCrashTest, ProcessCrashInsideACallLeavesItWholeOrUndone) {
  const std::vector<Step> steps = Script(/*batches=*/15, /*count=*/12, /*key_space=*/60, /*value_bytes=*/30);
  const std::vector<View> views = Reference(steps);
  ASSERT_EQ(views.size(), steps.size() + 1);
  for (size_t calls = 1; calls <= steps.size(); ++calls) {
    for (int at_write = 1; at_write <= 3; ++at_write) {
      Result<View> view = RunAndCrash(steps, calls, Crash::kProcess, 1, at_write);
      ASSERT_TRUE(view.ok()) << "in call " << calls - 1 << ", write " << at_write << ": " << view.status();
      EXPECT_TRUE(*view == views[calls - 1] || *view == views[calls])
          << "in call " << calls - 1 << ", write " << at_write << ": reloaded " << Describe(*view)
          << "; expected " << Describe(views[calls - 1]) << " or " << Describe(views[calls]);
    }
  }
}

TEST_P(StateStoreCrashTest, PowerLossGoesBackToAWholeEarlierCall) {
  const std::vector<Step> steps = Script(/*batches=*/15, /*count=*/12, /*key_space=*/60, /*value_bytes=*/30);
  const std::vector<View> views = Reference(steps);
  ASSERT_EQ(views.size(), steps.size() + 1);
  int partial = 0;  // crashes that kept some calls and lost others
  for (size_t calls = 1; calls <= steps.size(); ++calls) {
    // After the call, or inside it.
    Result<View> view = RunAndCrash(steps, calls, Crash::kPowerPartial, static_cast<uint32_t>(calls),
                                    static_cast<int>(calls % 3));
    ASSERT_TRUE(view.ok()) << "after " << calls << " calls: " << view.status();
    const int k = Match(views, calls, *view);
    EXPECT_GE(k, 0) << "after " << calls << " calls the store shows a state no call left: " << Describe(*view);
    if (k > 0 && k < static_cast<int>(calls)) ++partial;
  }
  EXPECT_GT(partial, static_cast<int>(steps.size()) / 4);  // the cut points do land between calls
}

TEST_P(StateStoreCrashTest, PowerLossNeverLeavesAStaleDeltaBesideTheFoldThatRemovedIt) {
  const std::vector<Step> steps = Script(/*batches=*/12, /*count=*/12, /*key_space=*/60, /*value_bytes=*/30);
  const std::vector<View> views = Reference(steps);
  ASSERT_EQ(views.size(), steps.size() + 1);
  int stale_seen = 0;  // reloads that still had a stale attempt, not folded yet
  for (size_t calls = 1; calls <= steps.size(); ++calls) {
    for (int at_write : {0, 2}) {
      Result<View> view =
          RunAndCrash(steps, calls, at_write == 0 ? Crash::kPowerPartial : Crash::kProcess, 7, at_write);
      ASSERT_TRUE(view.ok()) << "after " << calls << " calls: " << view.status();
      for (const auto& [id, part] : *view) {
        for (const Change& c : part.state) {
          ASSERT_EQ(c.value->find("stale-"), std::string::npos)
              << id.first << "[" << id.second << "] folded a stale attempt: " << c.key << " after " << calls;
        }
        for (const auto& [n, delta] : part.pending) {
          const bool stale = !delta.empty() && delta.front().value.value_or("stale-").starts_with("stale-");
          if (!stale) continue;
          ++stale_seen;
          // Harmless only while its batch is not folded: the next fold, to
          // the batch before it, removes it.
          EXPECT_EQ(n, part.folded + 2) << id.first << "[" << id.second << "] after " << calls << " calls";
        }
      }
    }
  }
  EXPECT_GT(stale_seen, 0);  // the crashes did land between a stale attempt and its removal
}

TEST_P(StateStoreCrashTest, TheSnapshotTheMetaNamesIsAlwaysWhole) {
  // ~1,500 keys of 2 KiB: snapshots of two chunks (~2 MiB each), each one
  // WriteBatch with the new m/, the old chunks' deletions and the deltas'.
  const std::vector<Step> steps = Script(/*batches=*/8, /*count=*/300, /*key_space=*/2400, /*value_bytes=*/2048);
  const std::vector<View> views = Reference(steps);
  ASSERT_EQ(views.size(), steps.size() + 1);
  size_t bytes = 0;
  for (const Change& c : views.back().at({"j", 0}).state) bytes += c.key.size() + c.value->size();
  ASSERT_GT(bytes, size_t{2} << 20);  // more than one chunk
  int partial = 0;
  for (size_t calls = 4; calls <= steps.size(); ++calls) {
    // Inside the call (the second write: a call split in two would show),
    // then the unsynced tails cut anywhere.
    Result<View> view = RunAndCrash(steps, calls, Crash::kProcess, 1, /*at_write=*/2);
    ASSERT_TRUE(view.ok()) << "in call " << calls - 1 << ": " << view.status();
    EXPECT_TRUE(*view == views[calls - 1] || *view == views[calls]) << "in call " << calls - 1;
    view = RunAndCrash(steps, calls, Crash::kPowerPartial, static_cast<uint32_t>(calls) * 31);
    ASSERT_TRUE(view.ok()) << "after " << calls << " calls: " << view.status();
    const int k = Match(views, calls, *view);
    EXPECT_GE(k, 0) << "after " << calls << " calls the store shows a state no call left: " << Describe(*view);
    if (k > 0 && k < static_cast<int>(calls)) ++partial;
  }
  EXPECT_GT(partial, 0);
}

TEST_P(StateStoreCrashTest, PowerLossLosesWhatWasNotSynced) {
  // The store writes RocksDB's WAL without fsync (it survives kill -9 — the
  // first test —, not a power failure; the replica covers that): this
  // control shows the crash above is a real one.
  const std::vector<Step> steps = Script(/*batches=*/4, /*count=*/12, /*key_space=*/60, /*value_bytes=*/30);
  const std::vector<View> views = Reference(steps);
  ASSERT_EQ(views.size(), steps.size() + 1);
  Result<View> view = RunAndCrash(steps, steps.size(), Crash::kPowerAll, 1);
  ASSERT_TRUE(view.ok()) << view.status();
  const int k = Match(views, steps.size(), *view);
  EXPECT_GE(k, 0) << Describe(*view);
  EXPECT_LT(k, static_cast<int>(steps.size()));
}

INSTANTIATE_TEST_SUITE_P(Layouts, StateStoreCrashTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Disk" : "Memory"; });

TEST(StateStoreDiskFull, WritesFailWhileTheDiskIsFullAndAreTakenOnceFreed) {
  std::string templ = ::testing::TempDir() + "/sluice-state-full-XXXXXX";
  ASSERT_NE(::mkdtemp(templ.data()), nullptr);
  auto fs = std::make_shared<testing::FaultInjectionFS>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  {
    auto store = StateStore::Open(templ + "/state", env.get());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Prepare("j", 0, -1).ok());
    const std::vector<Change> one = {{"a", "1"}};
    ASSERT_TRUE((*store)->WriteDelta("j", 0, 0, one).ok());

    fs->SetDiskFull(true);
    Status st = (*store)->WriteDelta("j", 0, 1, one);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("No space left on device"), std::string::npos) << st;
    fs->SetDiskFull(false);
    // Resumed by itself (every 500 ms): the retried write lands.
    EXPECT_TRUE(testing::WaitUntil([&] { return (*store)->WriteDelta("j", 0, 1, one).ok(); },
                                   std::chrono::seconds(5)));
    auto delta = (*store)->ReadDelta("j", 0, 1);
    ASSERT_TRUE(delta.ok()) << delta.status();
    EXPECT_EQ(*delta, one);
  }
  std::filesystem::remove_all(templ);
}

}  // namespace
}  // namespace sluice::state
