// A full disk under the leader, with real driverd processes and a real
// ZooKeeper: each driver's data directory is a small tmpfs of its own; a
// client appends markers through whoever leads while the leader's file
// system is filled. The leader steps down, another leads and the log keeps
// committing (the stall is measured); `sluicectl status` names the lagging
// driver and why; once the file is removed the old leader resumes its store
// and is back in sync within 10 s — without a restart. And a worker whose
// file system fills while it keeps a keyed job's state: its state store
// refuses writes (status says so), batches wait, and once the file is removed
// the job commits batches again, same process. Needs root (mount); skipped
// with a message otherwise.
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "lib/rpc/driver_client.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

constexpr int kSessionTimeoutMs = 3000;
constexpr int kDrivers = 3;
constexpr const char* kTmpfsSize = "64m";

// Mounts a tmpfs of kTmpfsSize at `dir`; false (with errno's reason in
// `why`) where mounting is not permitted.
bool MountTmpfs(const std::string& dir, std::string* why) {
  std::filesystem::create_directories(dir);
  const std::string options = std::string("size=") + kTmpfsSize;
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    *why = std::strerror(errno);
    return false;
  }
  return true;
}

// Writes zeros to `path` until the file system is full; returns the bytes written.
int64_t FillDisk(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return 0;
  std::setvbuf(f, nullptr, _IONBF, 0);
  const std::string chunk(1 << 20, '\0');
  int64_t written = 0;
  while (true) {
    size_t n = std::fwrite(chunk.data(), 1, chunk.size(), f);
    written += static_cast<int64_t>(n);
    if (n < chunk.size()) break;
  }
  // Whatever is left in a partial page: byte by byte.
  while (std::fwrite(chunk.data(), 1, 1, f) == 1) ++written;
  std::fclose(f);
  return written;
}

int64_t FreeBytes(const std::string& dir) {
  struct statvfs s {};
  if (::statvfs(dir.c_str(), &s) != 0) return -1;
  return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
}

int ServingLeader(LocalCluster& c, int not_this = -1) {
  for (int i = 0; i < c.num_drivers(); ++i) {
    if (i == not_this || c.driver(i) == nullptr || !c.driver(i)->Running()) continue;
    auto st = GetDriverStatus(c.driver_address(i), milliseconds(300));
    if (st.ok() && st->role() == proto::DRIVER_ROLE_LEADER && st->wal().serving()) return i;
  }
  return -1;
}

class DiskFullTest : public ::testing::Test {
 protected:
  void TearDown() override {
    cluster_.reset();  // the daemons go before their file systems
    for (const std::string& m : mounts_) ::umount2(m.c_str(), MNT_DETACH);
  }

  std::string DataDir(int i) const { return dir_.path() + "/driver-" + std::to_string(i + 1) + "/data"; }
  std::string WorkerDataDir(int i) const { return dir_.path() + "/worker-" + std::to_string(i + 1) + "/data"; }

  TempDir dir_{"sluice-disk-full"};
  std::vector<std::string> mounts_;
  std::unique_ptr<LocalCluster> cluster_;
};

using WalDiskFull = DiskFullTest;
using WorkerDiskFull = DiskFullTest;

TEST_F(WalDiskFull, ALeaderWhoseDiskFillsStepsDownAndIsBackInSyncOnceFreedWithoutARestart) {
  for (int i = 0; i < kDrivers; ++i) {
    std::string why;
    if (!MountTmpfs(DataDir(i), &why)) {
      GTEST_SKIP() << "cannot mount a tmpfs at " << DataDir(i) << " (" << why
                   << "): this test needs root to give each driver a small file system";
    }
    mounts_.push_back(DataDir(i));
  }
  auto started = LocalCluster::Start({.dir = dir_.path(), .drivers = kDrivers, .workers = 0,
                                      .driver_flags = {"--wal-compact-every", "1000000"},
                                      .zk_session_timeout_ms = kSessionTimeoutMs});
  ASSERT_TRUE(started.ok()) << started.status();
  cluster_ = std::move(*started);
  LocalCluster& c = *cluster_;
  int leader = -1;
  ASSERT_TRUE(WaitUntil([&] { return (leader = ServingLeader(c)) >= 0; }, milliseconds(15'000)));

  // The load: markers appended one by one through whoever serves; the
  // client's view of every commit, as times.
  std::atomic<bool> stop{false};
  std::atomic<int> target{leader};
  std::mutex mu;
  std::vector<Steady::time_point> commits;  // guarded by mu
  std::thread client([&] {
    int64_t seq = 0;
    while (!stop) {
      const int t = target.load();
      if (t < 0) {
        target = ServingLeader(c);
        if (target.load() < 0) std::this_thread::sleep_for(milliseconds(20));
        continue;
      }
      proto::AppendMarkerRequest req;
      req.set_client_id("disk-full-test");
      req.set_client_seq(seq++);
      req.set_payload(std::string(200, 'p'));
      if (rpc::DriverClient(Channels(), c.driver_address(t)).AppendMarker(req, milliseconds(2000)).ok()) {
        std::lock_guard<std::mutex> lock(mu);
        commits.push_back(Steady::now());
      } else {
        target = -1;
      }
    }
  });
  // Stops the client however the test ends (an ASSERT returns early).
  struct Joiner {
    std::atomic<bool>* stop;
    std::thread* thread;
    ~Joiner() {
      *stop = true;
      if (thread->joinable()) thread->join();
    }
  } joiner{&stop, &client};
  auto commits_after = [&](Steady::time_point t) {
    std::lock_guard<std::mutex> lock(mu);
    return std::count_if(commits.begin(), commits.end(), [&](auto x) { return x > t; });
  };
  ASSERT_TRUE(WaitUntil([&] { return commits_after(Steady::time_point()) > 200; }, milliseconds(15'000)));
  const int pid = c.driver(leader)->pid();

  // Fill the leader's disk.
  const Steady::time_point filled = Steady::now();
  const int64_t filler = FillDisk(DataDir(leader) + "/filler");
  std::cout << "filled " << c.driver_id(leader) << "'s file system with " << filler / (1 << 20)
            << " MiB; free now " << FreeBytes(DataDir(leader)) << " bytes\n";
  int successor = -1;
  ASSERT_TRUE(WaitUntil([&] { return (successor = ServingLeader(c, leader)) >= 0; }, milliseconds(20'000)))
      << "no other driver serves after the leader's disk filled";
  // Liveness: the longest gap between two commits the client saw around the fill.
  ASSERT_TRUE(WaitUntil([&] { return commits_after(filled) > 100; }, milliseconds(20'000)));
  Steady::duration stall{};
  {
    std::lock_guard<std::mutex> lock(mu);
    for (size_t i = 1; i < commits.size(); ++i) {
      if (commits[i] > filled) stall = std::max(stall, commits[i] - commits[i - 1]);
    }
  }
  const auto stall_ms = std::chrono::duration_cast<milliseconds>(stall).count();
  std::cout << c.driver_id(successor) << " leads; the longest gap between commits after the fill: " << stall_ms
            << " ms\n";
  EXPECT_LT(stall_ms, kSessionTimeoutMs + 10'000);

  // While the disk is full: the old leader says its store is degraded, and
  // the leader's status names it as lagging, and why.
  const std::string old_address = c.driver_address(leader);
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto s = GetDriverStatus(old_address);
        return s.ok() && s->wal().store_degraded() &&
               s->wal().store_error().find("No space left on device") != std::string::npos;
      },
      milliseconds(10'000)))
      << "the old leader does not report its store degraded";
  const std::string status_log = dir_.Sub("status-degraded.txt");
  bool named = WaitUntil(
      [&] {
        if (c.Sluicectl({"status"}, status_log) != 0) return false;
        const std::string out = ReadFile(status_log).value_or("");
        return out.find("standby " + c.driver_id(leader)) != std::string::npos &&
               out.find("lags because") != std::string::npos &&
               out.find("No space left on device") != std::string::npos &&
               out.find("store=DEGRADED") != std::string::npos;
      },
      milliseconds(10'000), milliseconds(500));
  const std::string degraded_status = ReadFile(status_log).value_or("");
  std::cout << "sluicectl status while the disk is full:\n" << degraded_status;
  EXPECT_TRUE(named) << degraded_status;
  std::this_thread::sleep_for(milliseconds(1000));  // it falls further behind

  // Free the disk: the old leader is back in sync by itself.
  auto lag_of_old = [&]() -> int64_t {
    auto l = GetDriverStatus(c.driver_address(successor));
    auto o = GetDriverStatus(old_address);
    if (!l.ok() || !o.ok() || o->wal().store_degraded()) return -1;
    return std::max<int64_t>(0, l->wal().commit_seq() - o->wal().last_seq());
  };
  {
    auto l = GetDriverStatus(c.driver_address(successor));
    auto o = GetDriverStatus(old_address);
    ASSERT_TRUE(l.ok() && o.ok());
    std::cout << "before freeing: leader at " << l->wal().last_seq() << ", " << c.driver_id(leader) << " at "
              << o->wal().last_seq() << "\n";
  }
  const Steady::time_point freed = Steady::now();
  std::filesystem::remove(DataDir(leader) + "/filler");
  bool in_sync = WaitUntil(
      [&] {
        const int64_t lag = lag_of_old();
        return lag >= 0 && lag <= 5;
      },
      milliseconds(10'000), milliseconds(50));
  const auto resync_ms = std::chrono::duration_cast<milliseconds>(Steady::now() - freed).count();
  std::cout << c.driver_id(leader) << " back in sync (within 5 records of the commit point) " << resync_ms
            << " ms after its disk was freed\n";
  EXPECT_TRUE(in_sync) << "still " << lag_of_old() << " records behind after 10 s";
  EXPECT_LT(resync_ms, 10'000);
  ASSERT_NE(c.driver(leader), nullptr);
  EXPECT_TRUE(c.driver(leader)->Running());
  EXPECT_EQ(c.driver(leader)->pid(), pid) << "the driver was restarted";

  // And the leader's view of it is clean again.
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto l = GetDriverStatus(c.driver_address(successor));
        if (!l.ok()) return false;
        for (const auto& p : l->wal().peers()) {
          if (p.id() == c.driver_id(leader)) return p.last_error().empty() && p.lag() <= 5;
        }
        return false;
      },
      milliseconds(5'000)));
}

constexpr const char* kKeyedJob = R"(name: totals
batch_interval: 1s
sources:
  - {name: stream, kind: generator, partitions: 2, rate: 1000, keys: 10, payload_bytes: 120}
operators:
  - parse: {format: json}
  - key_by: key
  - update_state:
      running:
        - {fn: count, as: events}
sink:
  null:
)";

TEST_F(WorkerDiskFull, AWorkersStateStoreRefusesWritesWhileFullAndTheJobResumesOnceFreed) {
  std::string why;
  if (!MountTmpfs(WorkerDataDir(0), &why)) {
    GTEST_SKIP() << "cannot mount a tmpfs at " << WorkerDataDir(0) << " (" << why
                 << "): this test needs root to give the worker a small file system";
  }
  mounts_.push_back(WorkerDataDir(0));
  auto started = LocalCluster::Start({.dir = dir_.path(), .drivers = 3, .workers = 1,
                                      .zk_session_timeout_ms = kSessionTimeoutMs});
  ASSERT_TRUE(started.ok()) << started.status();
  cluster_ = std::move(*started);
  LocalCluster& c = *cluster_;
  ASSERT_TRUE(WriteFile(dir_.Sub("totals.yaml"), kKeyedJob).ok());
  ASSERT_TRUE(WaitUntil([&] { return c.Sluicectl({"submit", dir_.Sub("totals.yaml")}, dir_.Sub("submit.log")) == 0; },
                        milliseconds(20'000), milliseconds(500)))
      << ReadFile(dir_.Sub("submit.log")).value_or("");
  auto committed = [&]() -> int64_t {
    std::optional<proto::JobInfo> job = c.DescribeJob("totals");
    return job ? job->last_committed_batch() : -1;
  };
  ASSERT_TRUE(WaitUntil([&] { return committed() >= 3; }, milliseconds(30'000), milliseconds(200)));
  const int pid = c.worker(0)->pid();

  const int64_t filler = FillDisk(WorkerDataDir(0) + "/filler");
  std::cout << "filled worker-1's file system with " << filler / (1 << 20) << " MiB at batch " << committed() << "\n";
  // The state store's next delta fails: the worker says why.
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto s = GetWorkerStatus(c.worker_address(0));
        return s.ok() && s->store().degraded().find("No space left on device") != std::string::npos;
      },
      milliseconds(15'000), milliseconds(100)))
      << "the worker does not report its store degraded";
  const std::string status_log = dir_.Sub("status-worker.txt");
  c.Sluicectl({"status"}, status_log);
  const std::string status = ReadFile(status_log).value_or("");
  std::cout << "sluicectl status while the worker's disk is full:\n" << status;
  EXPECT_NE(status.find("store=DEGRADED"), std::string::npos) << status;
  const int64_t stalled_at = committed();

  const Steady::time_point freed = Steady::now();
  std::filesystem::remove(WorkerDataDir(0) + "/filler");
  // The job commits two more batches (the one that failed, then a new one).
  const bool resumed = WaitUntil([&] { return committed() >= stalled_at + 2; }, milliseconds(20'000), milliseconds(100));
  const auto resumed_ms = std::chrono::duration_cast<milliseconds>(Steady::now() - freed).count();
  std::cout << "the job committed batch " << stalled_at + 2 << " " << resumed_ms
            << " ms after the worker's disk was freed\n";
  EXPECT_TRUE(resumed) << "the job stays at batch " << committed();
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto s = GetWorkerStatus(c.worker_address(0));
        return s.ok() && s->store().degraded().empty();
      },
      milliseconds(5'000)));
  EXPECT_TRUE(c.worker(0)->Running());
  EXPECT_EQ(c.worker(0)->pid(), pid) << "the worker was restarted";
}

}  // namespace
}  // namespace sluice::testing
