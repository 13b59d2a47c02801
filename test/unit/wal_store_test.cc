// Unit tests of lib/wal's storage (WalStore, on a real RocksDB in a temp
// directory): records are opaque payloads with a seq, an epoch and a format.
#include "lib/wal/wal_store.h"
#include "lib/common/version.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"

namespace sluice::wal {
namespace {

using ::testing::HasSubstr;

class TempPath {
 public:
  TempPath() {
    char templ[] = "/tmp/sluice-wal-XXXXXX";
    path_ = ::mkdtemp(templ);
  }
  ~TempPath() { std::filesystem::remove_all(path_); }
  std::string db() const { return path_ + "/wal"; }

 private:
  std::string path_;
};

proto::WalRecord Marker(int64_t seq, int64_t epoch) {
  proto::WalRecord r;
  r.set_seq(seq);
  r.set_epoch(epoch);
  r.set_format(proto::WAL_FORMAT_V1);
  r.set_payload("record " + std::to_string(seq));
  return r;
}

std::vector<proto::WalRecord> Markers(int64_t from, int64_t to, int64_t epoch) {
  std::vector<proto::WalRecord> out;
  for (int64_t s = from; s <= to; ++s) out.push_back(Marker(s, epoch));
  return out;
}

TEST(WalStore, AppendsReadsAndReopens) {
  TempPath dir;
  {
    auto store = WalStore::Open({.path = dir.db()});
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Append(Markers(1, 10, 1)).ok());
    ASSERT_TRUE((*store)->Append(Markers(11, 12, 2)).ok());
    ASSERT_TRUE((*store)->SetFence(2).ok());
    EXPECT_EQ((*store)->Append(Markers(14, 14, 2)).code(), absl::StatusCode::kInternal);  // a gap
  }
  auto store = WalStore::Open({.path = dir.db()});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->last_seq(), 12);
  EXPECT_EQ((*store)->last_epoch(), 2);
  EXPECT_EQ((*store)->fence(), 2);
  auto records = (*store)->Read(5, 100);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 8u);
  EXPECT_EQ(records->front().seq(), 5);
  EXPECT_EQ(records->back().seq(), 12);
  EXPECT_EQ(*(*store)->EpochAt(10), 1);
  EXPECT_EQ(*(*store)->EpochAt(0), 0);
  EXPECT_EQ((*store)->EpochAt(13).status().code(), absl::StatusCode::kNotFound);
}

TEST(WalStore, TruncatesAConflictingTail) {
  TempPath dir;
  auto store = WalStore::Open({.path = dir.db()});
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Append(Markers(1, 6, 1)).ok());
  ASSERT_TRUE((*store)->TruncateFrom(4).ok());
  EXPECT_EQ((*store)->last_seq(), 3);
  ASSERT_TRUE((*store)->Append(Markers(4, 5, 2)).ok());
  store->reset();
  auto reopened = WalStore::Open({.path = dir.db()});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->last_seq(), 5);
  EXPECT_EQ(*(*reopened)->EpochAt(4), 2);
  EXPECT_EQ(*(*reopened)->EpochAt(3), 1);
}

TEST(WalStore, SnapshotFoldsAndDeletesRecords) {
  TempPath dir;
  {
    auto store = WalStore::Open({.path = dir.db()});
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Append(Markers(1, 100, 3)).ok());
    proto::WalSnapshot snap;
    snap.set_last_seq(60);
    snap.set_last_epoch(3);
    snap.set_format(proto::WAL_FORMAT_V1);
    snap.set_state("state as of 60");
    ASSERT_TRUE((*store)->SaveSnapshot(snap).ok());
    EXPECT_EQ((*store)->first_seq(), 61);
    EXPECT_EQ((*store)->Read(30, 10).status().code(), absl::StatusCode::kOutOfRange);
  }
  auto store = WalStore::Open({.path = dir.db()});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->snapshot_seq(), 60);
  EXPECT_EQ((*store)->last_seq(), 100);
  EXPECT_EQ((*store)->snapshot()->state(), "state as of 60");
  EXPECT_EQ(*(*store)->EpochAt(60), 3);
  // The deleted records are really gone from RocksDB.
  store->reset();
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::OpenForReadOnly(rocksdb::Options(), dir.db(), &db).ok());
  std::string value;
  EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), RecordKey(30), &value).IsNotFound());
  EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), RecordKey(61), &value).ok());
  delete db;
}

TEST(WalStore, InstallSnapshotReplacesTheLog) {
  TempPath dir;
  auto store = WalStore::Open({.path = dir.db()});
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Append(Markers(1, 5, 1)).ok());
  proto::WalSnapshot snap;
  snap.set_last_seq(500);
  snap.set_last_epoch(4);
  snap.set_format(proto::WAL_FORMAT_V1);
  ASSERT_TRUE((*store)->InstallSnapshot(snap).ok());
  EXPECT_EQ((*store)->last_seq(), 500);
  EXPECT_EQ((*store)->last_epoch(), 4);
  ASSERT_TRUE((*store)->Append(Markers(501, 502, 4)).ok());
}

// Writes a raw value under a record key, as a torn or foreign write would.
void Poke(const std::string& path, int64_t seq, const std::string& value) {
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), path, &db).ok());
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), RecordKey(seq), value).ok());
  delete db;
}

TEST(WalStore, UnreadableRecordIsAnErrorNamingItsSeq) {
  TempPath dir;
  {
    auto store = WalStore::Open({.path = dir.db()});
    ASSERT_TRUE((*store)->Append(Markers(1, 20, 1)).ok());
  }
  Poke(dir.db(), 7, "\xff\xff not a record");
  auto store = WalStore::Open({.path = dir.db()});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("record 7 is unreadable"));
}

TEST(WalStore, GapIsAnErrorNamingTheMissingSeq) {
  TempPath dir;
  {
    auto store = WalStore::Open({.path = dir.db()});
    ASSERT_TRUE((*store)->Append(Markers(1, 5, 1)).ok());
  }
  Poke(dir.db(), 9, Marker(9, 1).SerializeAsString());
  auto store = WalStore::Open({.path = dir.db()});
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("record 6 is missing"));
}

TEST(WalStore, RecordUnderTheWrongKeyIsAnError) {
  TempPath dir;
  {
    auto store = WalStore::Open({.path = dir.db()});
    ASSERT_TRUE((*store)->Append(Markers(1, 5, 1)).ok());
  }
  Poke(dir.db(), 3, Marker(4, 1).SerializeAsString());
  auto store = WalStore::Open({.path = dir.db()});
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("record 3 is unreadable"));
}

void PokeKey(const std::string& path, const std::string& key, const std::string& value) {
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), path, &db).ok());
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  delete db;
}

// A malformed fence or commit value, or a short record key, is DATA_LOSS
// naming it (std::stoll threw, and a short key was read past its end).
TEST(WalStore, MalformedMetadataAndKeysAreDataLoss) {
  for (const auto& [key, value, message] :
       {std::tuple<std::string, std::string, std::string>{"F", "not a number", "the fence value 'not a number'"},
        {"C", "12x", "the commit value '12x' is not a number"},
        {"C", "99999999999999999999999", "is not a number"},
        {"R1", "x", "a record key of 2 bytes is malformed"}}) {
    TempPath dir;
    {
      auto store = WalStore::Open({.path = dir.db()});
      ASSERT_TRUE((*store)->Append(Markers(1, 3, 1)).ok());
    }
    PokeKey(dir.db(), key, value);
    auto store = WalStore::Open({.path = dir.db()});
    ASSERT_FALSE(store.ok()) << key;
    EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(store.status().message()), HasSubstr(message));
  }
}

TEST(WalStore, RecordOfAnUnknownFormatIsRefusedNamingIt) {
  TempPath dir;
  {
    auto store = WalStore::Open({.path = dir.db()});
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Append(Markers(1, 5, 1)).ok());
  }
  proto::WalRecord newer = Marker(6, 1);
  newer.set_format(static_cast<proto::WalFormat>(version::kWalFormat + 1));
  Poke(dir.db(), 6, newer.SerializeAsString());
  auto store = WalStore::Open({.path = dir.db()});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("record 6 has format " + std::to_string(version::kWalFormat + 1)));
}

}  // namespace
}  // namespace sluice::wal
