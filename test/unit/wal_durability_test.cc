// The WAL's fsync discipline, proved with a filesystem that loses every
// unsynced byte (FaultInjectionFS): each record whose Append returned OK
// survives the "power failure". The control run without sync loses records,
// so the test can tell the difference.
#include <filesystem>

#include "gtest/gtest.h"
#include "lib/wal/wal_store.h"
#include "rocksdb/env.h"
#include "test/harness/fault_injection_fs.h"

namespace sluice::wal {
namespace {

struct CrashResult {
  int64_t acknowledged = 0;
  int64_t survived = 0;
  uint64_t bytes_lost = 0;
};

CrashResult AppendThenCrash(bool sync, int records) {
  char templ[] = "/tmp/sluice-crash-XXXXXX";
  const std::string dir = ::mkdtemp(templ);
  const std::string path = dir + "/wal";
  auto fs = std::make_shared<testing::FaultInjectionFS>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  CrashResult result;
  {
    auto store = WalStore::Open({.path = path, .env = env.get(), .sync = sync});
    EXPECT_TRUE(store.ok()) << store.status();
    for (int64_t seq = 1; seq <= records; ++seq) {
      proto::WalRecord r;
      r.set_seq(seq);
      r.set_epoch(1);
      r.set_format(proto::WAL_FORMAT_V1);
      r.set_payload(std::string(200, 'x'));
      if ((*store)->Append({r}).ok()) result.acknowledged = seq;
    }
    fs->Deactivate();  // the machine dies here; the DB object goes with it
  }
  result.bytes_lost = fs->DropUnsyncedData();
  auto reopened = WalStore::Open({.path = path});
  EXPECT_TRUE(reopened.ok()) << reopened.status();
  if (reopened.ok()) result.survived = (*reopened)->last_seq();
  reopened = absl::UnavailableError("closed");
  std::filesystem::remove_all(dir);
  return result;
}

TEST(WalDurability, EveryAcknowledgedAppendSurvivesLosingUnsyncedData) {
  CrashResult r = AppendThenCrash(/*sync=*/true, 300);
  EXPECT_EQ(r.acknowledged, 300);
  EXPECT_EQ(r.survived, 300);
}

TEST(WalDurability, WithoutSyncTheSameCrashLosesRecords) {
  CrashResult r = AppendThenCrash(/*sync=*/false, 300);
  EXPECT_EQ(r.acknowledged, 300);
  EXPECT_LT(r.survived, 300);
  EXPECT_GT(r.bytes_lost, 0u);
}

}  // namespace
}  // namespace sluice::wal
