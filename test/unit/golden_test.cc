// The golden-file test: the files of each persisted format written by
// earlier builds (test/golden/<format>/v<N>/, committed, never rewritten)
// are read by this build's readers and must give back exactly the text
// committed beside them: the previous format and the current one are read,
// an older one is refused. Then the rules of lib/common/version.h on copies
// of them: a format one higher is refused naming both numbers, a store
// written before it carried a format is read as format 1.
// docs/upgrade.md, "Golden files".
#include <filesystem>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/common/version.h"
#include "lib/state/state_store.h"
#include "lib/wal/wal_store.h"
#include "lib/worker/block_store.h"
#include "rocksdb/db.h"
#include "test/harness/util.h"
#include "test/unit/golden.h"

namespace sluice::golden {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

struct Format {
  const char* name;
  int current;
  Result<std::string> (*dump)(const std::string&);
};

std::vector<Format> Formats() {
  return {{kWal, version::kWalFormat, DumpWal},
          {kState, version::kStateStoreFormat, DumpState},
          {kBlockLog, version::kBlockLogFormat, DumpBlockLog}};
}

std::string GoldenDir(const std::string& name, int v) {
  return fmt::format("{}/{}/v{}", SLUICE_GOLDEN_DIR, name, v);
}

// Reads golden `name` v`v` from a copy.
Result<std::string> DumpCopy(const Format& f, int v, const testing::TempDir& tmp) {
  const std::string copy = tmp.Sub(fmt::format("{}-v{}", f.name, v));
  RETURN_IF_ERROR(CopyDb(GoldenDir(f.name, v) + "/db", copy));
  return f.dump(copy);
}

// Sets a raw key of the RocksDB at `dir` (a store's format key).
void PutRaw(const std::string& dir, const std::string& key, const std::optional<std::string>& value) {
  rocksdb::DB* raw = nullptr;
  rocksdb::Options options;
  ASSERT_TRUE(rocksdb::DB::Open(options, dir, &raw).ok()) << dir;
  std::unique_ptr<rocksdb::DB> db(raw);
  if (value.has_value()) {
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, *value).ok());
  } else {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), key).ok());
  }
  ASSERT_TRUE(db->Close().ok());
}

std::optional<std::string> GetRaw(const std::string& dir, const std::string& key) {
  rocksdb::DB* raw = nullptr;
  rocksdb::Options options;
  if (!rocksdb::DB::OpenForReadOnly(options, dir, &raw).ok()) return std::nullopt;
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string value;
  if (!db->Get(rocksdb::ReadOptions(), key, &value).ok()) return std::nullopt;
  return value;
}

TEST(GoldenTest, ThisBuildReadsThePreviousAndTheCurrentFormatExactly) {
  testing::TempDir tmp("golden");
  for (const Format& f : Formats()) {
    // The current format must have its goldens: whoever raises a number adds them.
    ASSERT_TRUE(fs::exists(GoldenDir(f.name, f.current)))
        << GoldenDir(f.name, f.current) << " is missing: run golden_writer " << SLUICE_GOLDEN_DIR
        << " and commit it (docs/upgrade.md)";
    for (int v = std::max(1, f.current - 1); v <= f.current; ++v) {
      if (!fs::exists(GoldenDir(f.name, v))) continue;
      Result<std::string> expected = testing::ReadFile(GoldenDir(f.name, v) + "/expected.txt");
      ASSERT_TRUE(expected.ok()) << expected.status();
      Result<std::string> got = DumpCopy(f, v, tmp);
      ASSERT_TRUE(got.ok()) << f.name << " v" << v << ": " << got.status();
      EXPECT_EQ(*got, *expected) << f.name << " v" << v << " reads back differently";
      std::cout << f.name << " v" << v << ": read by " << kVersion << " (format " << f.current << "), "
                << std::count(got->begin(), got->end(), '\n') << " lines as committed\n";
    }
    for (int v = 1; v < f.current - 1; ++v) {  // kept, and refused: N reads N-1 only
      if (!fs::exists(GoldenDir(f.name, v))) continue;
      Result<std::string> got = DumpCopy(f, v, tmp);
      EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition) << f.name << " v" << v;
    }
  }
}

// What the goldens hold, checked without the committed texts: regenerating
// a text by mistake still leaves these.
TEST(GoldenTest, TheGoldensHoldWhatTheWriterPutInThem) {
  testing::TempDir tmp("golden");
  const Format wal = Formats()[0], state = Formats()[1], blocks = Formats()[2];
  // v1: what the first release wrote (no lifecycle records).
  Result<std::string> w = DumpCopy(wal, 1, tmp);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_THAT(*w, AllOf(HasSubstr("fence 2\n"), HasSubstr("commit 18\n"), HasSubstr("last 18 epoch 2\n"),
                        HasSubstr("snapshot last_seq 10 last_epoch 1 format 1\n"),
                        HasSubstr("record 11 epoch 2 format 1: leader_change { epoch: 2 leader_id: \"driver-b\" }"),
                        HasSubstr("name: \"page-counts\""), HasSubstr("reduce_partitions: 4")));
  // v2: the job lifecycle and the data loss too.
  Result<std::string> w2 = DumpCopy(wal, 2, tmp);
  ASSERT_TRUE(w2.ok()) << w2.status();
  EXPECT_THAT(*w2, AllOf(HasSubstr("fence 3\n"), HasSubstr("commit 27\n"), HasSubstr("last 27 epoch 3\n"),
                         HasSubstr("snapshot last_seq 10 last_epoch 1 format 2\n"),
                         HasSubstr("job_deleted { job_id: \"copy\" }"), HasSubstr("draining: true"),
                         HasSubstr("savepoint: \"/golden/savepoint at batch 1\""), HasSubstr("lost_offsets: 50"),
                         HasSubstr("source_data_lost {"), HasSubstr("partition_reset {")));
  Result<std::string> s = DumpCopy(state, 1, tmp);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(*s, AllOf(HasSubstr("partition page-counts[0] folded 12\n"), HasSubstr("  batch-12 = \\x00\\x01\\xff\n"),
                        HasSubstr("  user-0 = count=13 total=120\n"), HasSubstr("  delta 13: batch-11 erased"),
                        HasSubstr("partition page-counts[3] folded 5\n"), HasSubstr("  user-8 = \n")));
  EXPECT_THAT(*s, ::testing::Not(HasSubstr("batch-10 =")));  // erased by batch 12's tombstone
  // v2: the same, and a partition in the disk layout (read here without a
  // budget: converted to memory on the way).
  Result<std::string> s2 = DumpCopy(state, 2, tmp);
  ASSERT_TRUE(s2.ok()) << s2.status();
  EXPECT_THAT(*s2, AllOf(HasSubstr("partition page-counts[0] folded 12\n"), HasSubstr("  user-0 = count=13 total=120\n"),
                         HasSubstr("partition sessions[1] folded 2\n"), HasSubstr("  s-1 = open=1\n"),
                         HasSubstr("  s-last = \\x002\n"), HasSubstr("  delta 3: s-3=open=3 s-last=\\x003\n"),
                         HasSubstr("  keys 3 bytes")));
  EXPECT_THAT(*s2, ::testing::Not(HasSubstr("s-0 =")));  // erased by batch 2
  Result<std::string> b = DumpCopy(blocks, 1, tmp);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_THAT(*b, AllOf(HasSubstr("block clicks[0] 0..3 records 3"), HasSubstr("  not json\n"),
                        HasSubstr("block clicks[1] 100..102 records 2 bytes 12 durable\n  \n  \\x00\\x01\\x02\\xff\n")));
}

TEST(GoldenTest, AStoreOneFormatAheadIsRefusedNamingBoth) {
  testing::TempDir tmp("golden");
  const std::string ahead = std::to_string(version::kStateStoreFormat + 1);
  {
    const std::string dir = tmp.Sub("state");
    ASSERT_TRUE(CopyDb(GoldenDir(kState, version::kStateStoreFormat) + "/db", dir).ok());
    PutRaw(dir, "f", std::to_string(version::kStateStoreFormat + 1));
    Result<std::unique_ptr<state::StateStore>> opened = state::StateStore::Open(dir);
    ASSERT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
    const int n = version::kStateStoreFormat;
    EXPECT_THAT(std::string(opened.status().message()),
                AllOf(HasSubstr("the state store at " + dir + " has format " + std::to_string(n + 1)),
                      HasSubstr(n == 1 ? "reads format 1 only" : fmt::format("reads formats {} to {}", n - 1, n))));
  }
  {
    const std::string dir = tmp.Sub("block_log");
    ASSERT_TRUE(CopyDb(GoldenDir(kBlockLog, version::kBlockLogFormat) + "/db", dir).ok());
    PutRaw(dir, "format", std::to_string(version::kBlockLogFormat + 1));
    Result<std::unique_ptr<worker::BlockStore>> opened =
        worker::BlockStore::Open({.spill_path = tmp.Sub("spill"), .log_path = dir});
    ASSERT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
    EXPECT_THAT(std::string(opened.status().message()),
                AllOf(HasSubstr("block log"), HasSubstr("has format " + std::to_string(version::kBlockLogFormat + 1))));
  }
  {
    const std::string dir = tmp.Sub("wal");
    ASSERT_TRUE(CopyDb(GoldenDir(kWal, version::kWalFormat) + "/db", dir).ok());
    {
      Result<std::unique_ptr<wal::WalStore>> store = wal::WalStore::Open({.path = dir});
      ASSERT_TRUE(store.ok()) << store.status();
      proto::WalRecord r;
      r.set_seq((*store)->last_seq() + 1);
      r.set_epoch(2);
      r.set_format(static_cast<proto::WalFormat>(version::kWalFormat + 1));
      r.set_payload("from a newer build");
      EXPECT_EQ(wal::CheckRecordFormat(r).code(), absl::StatusCode::kFailedPrecondition);
      ASSERT_TRUE((*store)->Append({r}).ok());
    }
    Result<std::unique_ptr<wal::WalStore>> reopened = wal::WalStore::Open({.path = dir});
    ASSERT_EQ(reopened.status().code(), absl::StatusCode::kFailedPrecondition) << reopened.status();
    EXPECT_THAT(std::string(reopened.status().message()),
                AllOf(HasSubstr("record 28 has format " + std::to_string(version::kWalFormat + 1)),
                      HasSubstr("reads format")));
    std::cout << "a WAL one format ahead: " << reopened.status().message() << "\n";
  }
}

// A store without a format key is format 1: read (and marked) while this
// build reads format 1, refused naming it once it no longer does.
TEST(GoldenTest, AStoreWithoutAFormatIsFormatOneAndIsMarkedOnOpen) {
  testing::TempDir tmp("golden");
  const Format state = Formats()[1], blocks = Formats()[2];
  struct Unmarked {
    const Format& f;
    const char* golden;
    const char* key;
    int current;
  };
  for (const Unmarked& u : {Unmarked{state, kState, "f", version::kStateStoreFormat},
                            Unmarked{blocks, kBlockLog, "format", version::kBlockLogFormat}}) {
    const std::string dir = tmp.Sub(std::string(u.golden) + "-unmarked");
    ASSERT_TRUE(CopyDb(GoldenDir(u.golden, 1) + "/db", dir).ok());
    PutRaw(dir, u.key, std::nullopt);  // as the builds before the format key wrote it
    Result<std::string> got = u.f.dump(dir);
    if (u.current > 2) {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition) << u.golden << ": " << got.status();
      continue;
    }
    Result<std::string> expected = DumpCopy(u.f, 1, tmp);
    ASSERT_TRUE(expected.ok()) << expected.status();
    ASSERT_TRUE(got.ok()) << u.golden << ": " << got.status();
    EXPECT_EQ(*got, *expected) << u.golden;
    EXPECT_EQ(GetRaw(dir, u.key), std::to_string(u.current)) << u.golden;
  }
}

TEST(VersionTest, NReadsNMinusOneAndTalksToNeighbours) {
  EXPECT_TRUE(version::CheckReadable("x", 1, 1).ok());
  EXPECT_TRUE(version::CheckReadable("x", 1, 2).ok());
  EXPECT_TRUE(version::CheckReadable("x", 2, 2).ok());
  EXPECT_EQ(version::CheckReadable("x", 0, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(version::CheckReadable("x", 1, 3).code(), absl::StatusCode::kFailedPrecondition);
  Status ahead = version::CheckReadable("the WAL at /d", 3, 2);
  EXPECT_EQ(ahead.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(ahead.message()), AllOf(HasSubstr("the WAL at /d has format 3"), HasSubstr("reads formats 1 to 2")));
  EXPECT_EQ(version::ParseFormat("12"), 12);
  EXPECT_EQ(version::ParseFormat(""), -1);
  EXPECT_EQ(version::ParseFormat("1x"), -1);
  const int n = version::kProtocol;
  EXPECT_TRUE(version::CheckPeerProtocol("peer", n - 1).ok());
  EXPECT_TRUE(version::CheckPeerProtocol("peer", n).ok());
  EXPECT_TRUE(version::CheckPeerProtocol("peer", n + 1).ok());
  Status far = version::CheckPeerProtocol("peer", n + 2);
  EXPECT_EQ(far.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(far.message()), AllOf(HasSubstr(fmt::format("protocol {}", n + 2)), HasSubstr(fmt::format("protocol {}", n))));
}

}  // namespace
}  // namespace sluice::golden
