// Network partitions between real processes on separate hosts (LocalCluster
// with separate_hosts: every daemon in its own network namespace on a private
// bridge, cuts made with nftables, silent: packets vanish). Each test runs a
// generator job of 4 partitions into the file sink on ZooKeeper, 3 drivers
// and 3 workers, cuts the network one way for ~15 s, heals it, and checks:
//
//   - exactly once: every event of every committed batch's ranges is in the
//     output once, and nothing else is (the committed ranges, read from the
//     WAL, cover each partition from offset 0 without gap or overlap);
//   - never two serving leaders in one round of observation;
//   - the cut's bounds (docs/coordination.md "Partitions"), printed as
//     measured: the longest time without a newly committed batch, the time to
//     a new leader.
//
// The test process observes from outside every cut (its own veth on the
// bridge): GetStatus of every driver and DescribeJob of the serving leader
// every 100 ms. Skipped, saying why, where network namespaces cannot be made.
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/driver_client.h"
#include "lib/source/generator_source.h"
#include "test/harness/local_cluster.h"
#include "test/harness/netns_hosts.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kSessionTimeoutMs = 4000;  // T
constexpr int kHeartbeatMs = 500;        // the drivers' default
constexpr int kBatchMs = 1000;
constexpr int kPartitions = 4;
constexpr const char* kJob = "cut";
// The driver's default give-up time (lib/driver/driver.h).
constexpr int kGiveUpMs = kSessionTimeoutMs + 2 * kHeartbeatMs;
// The deadline of a small shuffle push between workers (lib/worker/executor.h).
constexpr int kShufflePushMs = 3000;

long Ms(Clock::duration d) { return static_cast<long>(std::chrono::duration_cast<milliseconds>(d).count()); }

// What the observer saw of the drivers and the job, every 100 ms.
class Observer {
 public:
  struct DriverSeen {
    bool ok = false;
    bool leads = false;    // role LEADER (its lease holds)
    bool serving = false;  // and its WAL serves
    int64_t epoch = 0;
    int64_t last_seq = 0;
    int64_t commit_seq = 0;
  };
  struct Round {
    Clock::time_point at;
    std::vector<DriverSeen> drivers;
    int64_t committed = -1;  // the job's last committed batch, from the serving leader; -1: none answered
  };

  explicit Observer(LocalCluster& c) : c_(c) {
    thread_ = std::thread([this] {
      while (!stop_) {
        Round r = Sample();
        {
          std::lock_guard<std::mutex> lock(mu_);
          rounds_.push_back(std::move(r));
        }
        std::this_thread::sleep_for(milliseconds(100));
      }
    });
  }
  ~Observer() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  std::vector<Round> rounds() const {
    std::lock_guard<std::mutex> lock(mu_);
    return rounds_;
  }

  // The serving leader of the latest round, or -1.
  int ServingLeader() const {
    std::lock_guard<std::mutex> lock(mu_);
    if (rounds_.empty()) return -1;
    for (int i = 0; i < static_cast<int>(rounds_.back().drivers.size()); ++i) {
      if (rounds_.back().drivers[i].serving) return i;
    }
    return -1;
  }

  int64_t Committed() const {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = rounds_.rbegin(); it != rounds_.rend(); ++it) {
      if (it->committed >= 0) return it->committed;
    }
    return -1;
  }

 private:
  Round Sample() {
    Round r{.at = Clock::now()};
    r.drivers.resize(c_.num_drivers());
    for (int i = 0; i < c_.num_drivers(); ++i) {
      Result<proto::DriverStatus> st = GetDriverStatus(c_.driver_address(i), milliseconds(300));
      if (!st.ok()) continue;
      r.drivers[i] = {.ok = true,
                      .leads = st->role() == proto::DRIVER_ROLE_LEADER,
                      .serving = st->role() == proto::DRIVER_ROLE_LEADER && st->wal().serving(),
                      .epoch = st->epoch(),
                      .last_seq = st->wal().last_seq(),
                      .commit_seq = st->wal().commit_seq()};
    }
    for (int i = 0; i < c_.num_drivers(); ++i) {
      if (!r.drivers[i].serving) continue;
      proto::DescribeJobRequest request;
      request.set_job_id(kJob);
      Result<proto::JobInfo> info = rpc::DriverClient(Channels(), c_.driver_address(i)).DescribeJob(request, milliseconds(500));
      if (info.ok()) r.committed = std::max(r.committed, info->last_committed_batch());
    }
    return r;
  }

  LocalCluster& c_;
  mutable std::mutex mu_;
  std::vector<Round> rounds_;  // guarded by mu_
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// What a cut did, from the observer's rounds.
struct Measured {
  long stall_ms = 0;            // the longest time without a newly committed batch, around the cut
  long new_leader_ms = -1;      // from the cut to a serving leader other than the old one; -1: none
  long old_stopped_ms = -1;     // from the cut to the old leader no longer claiming to lead
  int64_t old_last_seq = -1;    // the old leader's last record when it was first seen not leading
  int two_leader_rounds = 0;    // rounds with two serving leaders (must stay 0)
};

Measured Measure(const std::vector<Observer::Round>& rounds, Clock::time_point cut_at, int old_leader) {
  Measured m;
  std::optional<Clock::time_point> last_change;
  int64_t last = -1;
  for (const Observer::Round& r : rounds) {
    int serving = 0;
    for (const Observer::DriverSeen& d : r.drivers) serving += d.serving;
    m.two_leader_rounds += serving > 1;
    if (r.committed > last) {
      // A gap that ends after the cut counts, from the commit before it.
      if (last_change && r.at > cut_at) m.stall_ms = std::max(m.stall_ms, Ms(r.at - *last_change));
      last = r.committed;
      last_change = r.at;
    }
    if (r.at < cut_at) continue;
    if (old_leader >= 0 && m.old_stopped_ms < 0 && r.drivers[old_leader].ok && !r.drivers[old_leader].leads) {
      m.old_stopped_ms = Ms(r.at - cut_at);
      m.old_last_seq = r.drivers[old_leader].last_seq;
    }
    if (m.new_leader_ms < 0) {
      for (int i = 0; i < static_cast<int>(r.drivers.size()); ++i) {
        if (i != old_leader && r.drivers[i].serving) m.new_leader_ms = Ms(r.at - cut_at);
      }
    }
  }
  return m;
}

class PartitionTest : public ::testing::Test {
 protected:
  virtual std::string LogLevel() const { return "info"; }

  void SetUp() override {
    if (Status why = NetnsHosts::Available(); !why.ok()) {
      GTEST_SKIP() << "cannot simulate hosts with network namespaces: " << why.message();
    }
    auto c = LocalCluster::Start({.dir = dir_.path(),
                                  .drivers = 3,
                                  .workers = 3,
                                  .log_level = LogLevel(),
                                  .zk_session_timeout_ms = kSessionTimeoutMs,
                                  .separate_hosts = true});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    observer_ = std::make_unique<Observer>(*cluster_);
    ASSERT_TRUE(WaitUntil([&] { return observer_->ServingLeader() >= 0; }, seconds(20), milliseconds(100)));
  }

  // Submits the job and waits until it runs steadily: a few batches
  // committed. Keyed: per-batch counts per key (a shuffle between workers
  // every batch); else each event's id.
  // Running: per key, the running count over every batch so far
  // (update_state: reduce partitions with state, copied to a replica).
  void SubmitJob(bool keyed = false, bool running = false) {
    keyed_ = keyed || running;
    running_ = running;
    const std::string job = dir_.Sub("job.yaml");
    ASSERT_TRUE(WriteFile(job, fmt::format(R"(name: {}
batch_interval: {}ms
max_task_failures: 20
sources:
  - {{name: gen, kind: generator, partitions: {}, rate: 200, keys: 20, payload_bytes: 100}}
operators:
  - parse: {{format: json}}
{}sink:
  file: {{path: {}}}
)",
                                           kJob, kBatchMs, kPartitions,
                                           running ? "  - key_by: key\n  - update_state: {running: [{fn: count, as: total}]}\n"
                                           : keyed ? "  - key_by: key\n  - aggregate: [{fn: count}]\n"
                                                   : "  - project: {fields: [id]}\n",
                                           out_))
                    .ok());
    ASSERT_EQ(Ctl({"submit", job}), 0) << CtlLog();
    ASSERT_TRUE(WaitUntil([&] { return observer_->Committed() >= 4; }, seconds(30), milliseconds(100)))
        << "no batches committed before the cut; committed " << observer_->Committed();
  }

  int Ctl(std::vector<std::string> args) {
    return cluster_->Sluicectl(args, dir_.Sub("ctl" + std::to_string(++ctl_runs_) + ".log"));
  }
  std::string CtlLog() { return ReadFile(dir_.Sub("ctl" + std::to_string(ctl_runs_) + ".log")).value_or(""); }

  // After the heal: batches commit again (3 more than at the heal).
  void ExpectRecovery(Clock::time_point healed_at, int64_t at_heal) {
    EXPECT_TRUE(WaitUntil([&] { return observer_->Committed() >= at_heal + 3; }, seconds(30), milliseconds(100)))
        << "no batches committed after the heal (committed " << observer_->Committed() << ")";
    std::printf("[ partition ] recovered: 3 more batches %ld ms after the heal\n", Ms(Clock::now() - healed_at));
  }

  // Stops the job and checks its output against its committed batches.
  void ExpectExactlyOnce(int64_t old_epoch = -1, int64_t old_last_seq = -1) {
    observer_->Stop();
    ASSERT_EQ(Ctl({"stop", kJob}), 0) << CtlLog();
    int leader = -1;
    ASSERT_TRUE(WaitUntil([&] { return (leader = cluster_->LeaderIndex()) >= 0; }, seconds(20)));
    rpc::DriverClient driver(Channels(), cluster_->driver_address(leader));
    std::map<int64_t, proto::BatchPlanned> planned;
    std::set<int64_t> committed;
    std::map<int64_t, int64_t> finished_ms;  // batch -> when its last task finished (the leader's wall clock)
    int64_t old_epoch_max_seq = -1;
    proto::SourceSpec source;
    for (int64_t from = 1;;) {
      proto::ReadWalRequest request;
      request.set_from_seq(from);
      request.set_max_records(5'000);
      Result<proto::ReadWalResponse> read = driver.ReadWal(request);
      ASSERT_TRUE(read.ok()) << read.status();
      ASSERT_FALSE(read->has_snapshot()) << "the WAL was compacted: read it from a snapshot";
      if (read->records().empty()) break;
      for (const proto::DriverLogEntry& e : read->records()) {
        if (e.epoch() == old_epoch) old_epoch_max_seq = std::max(old_epoch_max_seq, e.seq());
        const proto::DriverRecord& r = e.record();
        if (r.has_batch_planned() && r.batch_planned().job_id() == kJob) planned[r.batch_planned().batch_id()] = r.batch_planned();
        if (r.has_source_registered() && r.source_registered().spec().name() == "gen") source = r.source_registered().spec();
        if (r.has_batch_committed() && r.batch_committed().job_id() == kJob) {
          committed.insert(r.batch_committed().batch_id());
          finished_ms[r.batch_committed().batch_id()] = r.batch_committed().finished_unix_ms();
        }
      }
      from = read->records(read->records_size() - 1).seq() + 1;
    }
    if (old_last_seq >= 0) {
      // Nothing was written in the old term after its leader stopped claiming it.
      EXPECT_LE(old_epoch_max_seq, old_last_seq) << "the old leader appended records of epoch " << old_epoch
                                                  << " after it was seen standing down";
    }
    ASSERT_GE(committed.size(), 8u);
    // The committed ranges tile each partition from offset 0.
    std::map<int32_t, int64_t> next;  // partition -> the end of its ranges so far
    std::set<std::string> expected;
    for (int64_t b : committed) {
      for (const proto::PartitionRange& r : planned[b].ranges()) {
        EXPECT_EQ(r.start_offset(), next[r.partition()]) << "batch " << b << " partition " << r.partition();
        next[r.partition()] = r.end_offset();
        for (int64_t o = r.start_offset(); o < r.end_offset(); ++o) expected.insert(fmt::format("{:04d}-{:012d}", r.partition(), o));
      }
    }
    ASSERT_GT(expected.size(), 1000u);
    if (keyed_) ExpectCountsPerBatch(source, planned, committed, running_);
    // A batch commits every interval even when a partition brings nothing
    // (its receiver is stuck or moving): the longest time a partition's
    // events did not advance, between batches finished after the cut.
    std::map<int32_t, int64_t> last_with_data;
    for (int64_t b : committed) {
      for (const proto::PartitionRange& r : planned[b].ranges()) {
        if (r.end_offset() == r.start_offset()) continue;
        auto it = last_with_data.find(r.partition());
        if (it != last_with_data.end() && finished_ms[b] > cut_unix_ms_) {
          data_stall_ms_ = std::max(data_stall_ms_, finished_ms[b] - it->second);
        }
        last_with_data[r.partition()] = finished_ms[b];
      }
    }
    // Every line of every committed batch's files, once.
    std::map<std::string, int> seen;
    const size_t events = expected.size();
    if (keyed_) expected.clear();  // checked by ExpectCountsPerBatch
    int other_files = 0;
    for (const auto& f : std::filesystem::directory_iterator(out_)) {
      const std::string name = f.path().filename().string();
      const size_t at = name.find("-batch-");
      if (!f.is_regular_file() || name.starts_with(".") || at == std::string::npos || name.ends_with(".tmp")) continue;
      if (!committed.contains(std::stoll(name.substr(at + 7, 8)))) {
        ++other_files;  // a batch planned but not committed when the job stopped
        continue;
      }
      Result<std::string> text = ReadFile(f.path().string());
      ASSERT_TRUE(text.ok()) << name;
      std::istringstream lines(*text);
      for (std::string line; std::getline(lines, line) && !keyed_;) {
        const size_t s = line.find("\"id\":\"");
        ASSERT_NE(s, std::string::npos) << name << ": " << line;
        ++seen[line.substr(s + 6, line.find('"', s + 6) - s - 6)];
      }
    }
    int64_t missing = 0, doubled = 0, unexpected = 0;
    for (const std::string& id : expected) {
      auto it = seen.find(id);
      if (it == seen.end()) {
        if (missing++ < 3) ADD_FAILURE() << "id " << id << " missing";
      } else if (it->second > 1) {
        if (doubled++ < 3) ADD_FAILURE() << "id " << id << " appears " << it->second << " times";
      }
    }
    for (const auto& [id, n] : seen) {
      if (!expected.contains(id) && unexpected++ < 3) ADD_FAILURE() << "id " << id << " is in no committed range";
    }
    EXPECT_EQ(missing + doubled + unexpected, 0);
    std::printf("[ partition ] exactly once: %zu events in %zu committed batches (%d files of uncommitted batches); "
                "the longest time a partition's events did not advance after the cut: %ld ms\n",
                events, committed.size(), other_files, static_cast<long>(data_stall_ms_));
  }

  // Keyed: each committed batch's output holds, per key, the number of its
  // events with that key, as the generator makes them: every event counted
  // once, in its own batch. Running: per key of the batch's events, the
  // number of that key's events in every committed batch up to this one.
  void ExpectCountsPerBatch(const proto::SourceSpec& spec, const std::map<int64_t, proto::BatchPlanned>& planned,
                            const std::set<int64_t>& committed, bool running) {
    ASSERT_TRUE(spec.has_generator());
    source::GeneratorSource gen({.name = "gen",
                                 .seed = spec.generator().seed(),
                                 .partitions = kPartitions,
                                 .rate_per_partition = spec.generator().rate_per_partition(),
                                 .num_keys = spec.generator().num_keys(),
                                 .payload_size = spec.generator().payload_bytes(),
                                 .available_from_unix_ms = spec.generator().available_from_unix_ms()},
                                sluice::Clock::Real());
    auto key_of = [](const std::string& text, const std::string& open) {
      const size_t s = text.find(open);
      return s == std::string::npos ? std::string() : text.substr(s + open.size(), text.find('"', s + open.size()) - s - open.size());
    };
    std::map<int64_t, std::map<std::string, int64_t>> want, got;  // batch -> key -> count
    std::map<std::string, int64_t> so_far;                         // key -> events up to the batch
    for (int64_t b : committed) {
      for (const proto::PartitionRange& r : planned.at(b).ranges()) {
        for (int64_t o = r.start_offset(); o < r.end_offset(); ++o) ++want[b][key_of(gen.EventString(r.partition(), o), "\"key\":\"")];
      }
      if (!running) continue;
      for (auto& [key, n] : want[b]) n = so_far[key] += n;
    }
    for (const auto& f : std::filesystem::directory_iterator(out_)) {
      const std::string name = f.path().filename().string();
      const size_t at = name.find("-batch-");
      if (!f.is_regular_file() || name.starts_with(".") || at == std::string::npos || name.ends_with(".tmp")) continue;
      const int64_t b = std::stoll(name.substr(at + 7, 8));
      if (!committed.contains(b)) continue;
      Result<std::string> text = ReadFile(f.path().string());
      ASSERT_TRUE(text.ok()) << name;
      std::istringstream lines(*text);
      for (std::string line; std::getline(lines, line);) {
        const std::string field = running ? "\"total\":" : "\"count\":";
        const size_t c = line.find(field);
        ASSERT_NE(c, std::string::npos) << name << ": " << line;
        got[b][key_of(line, "\"key\":[\"")] += std::stoll(line.substr(c + field.size()));
      }
    }
    int wrong = 0;
    for (int64_t b : committed) {
      if (want[b] != got[b] && wrong++ < 3) ADD_FAILURE() << "batch " << b << ": the counts per key differ from its events";
    }
    EXPECT_EQ(wrong, 0) << "batches with wrong counts";
    if (running) {
      int64_t events = 0;
      for (const auto& [key, n] : so_far) events += n;
      std::printf("[ partition ] running totals exact: %zu keys, %ld events in %zu committed batches\n", so_far.size(),
                  static_cast<long>(events), committed.size());
    }
  }

  NetnsHosts& hosts() { return *cluster_->hosts(); }

  // Now, as the test's steady clock and as the wall clock the WAL's batch
  // timings use.
  Clock::time_point MarkCut() {
    cut_unix_ms_ = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    return Clock::now();
  }

  TempDir dir_{"partition"};
  const std::string out_ = dir_.Sub("out");
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<Observer> observer_;
  int ctl_runs_ = 0;
  int64_t cut_unix_ms_ = 0;
  int64_t data_stall_ms_ = 0;  // set by ExpectExactlyOnce
  bool keyed_ = false;
  bool running_ = false;
};

void Print(const char* what, const Measured& m) {
  std::printf("[ partition ] %s: longest without a committed batch %ld ms; new leader %ld ms; "
              "old leader stopped leading %ld ms after the cut\n",
              what, m.stall_ms, m.new_leader_ms, m.old_stopped_ms);
  std::fflush(stdout);
}

// (a) The leader loses ZooKeeper only: it still reaches the standbys and the
// workers, so nothing but its lease stops it. It must stop within T/2 of the
// cut, a standby must lead within T + 1 s, and never two at once.
TEST_F(PartitionTest, LeaderCutFromZooKeeperStopsByItsLease) {
  ASSERT_NO_FATAL_FAILURE(SubmitJob());
  const int old = observer_->ServingLeader();
  ASSERT_GE(old, 0);
  const int64_t old_epoch = observer_->rounds().back().drivers[old].epoch;
  const Clock::time_point cut_at = MarkCut();
  ASSERT_TRUE(hosts().Cut(cluster_->driver_host(old), cluster_->zk_host(0)).ok());
  std::this_thread::sleep_for(seconds(15));
  ASSERT_TRUE(hosts().Heal().ok());
  const Clock::time_point healed_at = Clock::now();
  ExpectRecovery(healed_at, observer_->Committed());
  const Measured m = Measure(observer_->rounds(), cut_at, old);
  Print("leader cut from ZooKeeper", m);
  EXPECT_EQ(m.two_leader_rounds, 0) << "two serving leaders seen at once";
  // The lease lapses T/2 after the last renewal sent before the cut; the
  // observer adds up to a round (~100 ms + probes).
  EXPECT_GE(m.old_stopped_ms, 0) << "the old leader never stopped leading";
  EXPECT_LE(m.old_stopped_ms, kSessionTimeoutMs / 2 + 400);
  EXPECT_GE(m.new_leader_ms, 0) << "no new leader";
  EXPECT_LE(m.new_leader_ms, kSessionTimeoutMs + 1000);
  EXPECT_LE(m.stall_ms, kSessionTimeoutMs + 1000 + 3 * kBatchMs);
  ExpectExactlyOnce(old_epoch, m.old_last_seq);
}

// (b) The leader loses every worker but keeps ZooKeeper and the standbys: its
// lease holds, so only the give-up rule (heartbeats to most live workers
// failing for T + 2 heartbeat intervals) hands the leadership to a driver
// that reaches them.
TEST_F(PartitionTest, LeaderCutFromAllWorkersGivesUpLeadership) {
  ASSERT_NO_FATAL_FAILURE(SubmitJob());
  const int old = observer_->ServingLeader();
  ASSERT_GE(old, 0);
  const Clock::time_point cut_at = MarkCut();
  for (int w = 0; w < cluster_->num_workers(); ++w) {
    ASSERT_TRUE(hosts().Cut(cluster_->driver_host(old), cluster_->worker_host(w)).ok());
  }
  std::this_thread::sleep_for(seconds(18));
  ASSERT_TRUE(hosts().Heal().ok());
  ExpectRecovery(Clock::now(), observer_->Committed());
  const Measured m = Measure(observer_->rounds(), cut_at, old);
  Print("leader cut from all workers", m);
  EXPECT_EQ(m.two_leader_rounds, 0) << "two serving leaders seen at once";
  EXPECT_GE(m.new_leader_ms, 0) << "the old leader kept leading through the cut";
  // Failing rounds start within a heartbeat round of the cut (a round takes
  // up to 3 x 500 ms against silent workers, plus the 500 ms pause).
  EXPECT_LE(m.new_leader_ms, kGiveUpMs + 2 * 2000 + 1000);
  EXPECT_LE(m.stall_ms, kSessionTimeoutMs + kGiveUpMs + 4000);
  ExpectExactlyOnce();
}

// (c) One worker of three loses everything (drivers, workers, ZooKeeper):
// its session expires after T and it leaves the membership; the job goes on
// with the other two.
TEST_F(PartitionTest, WorkerIsolatedFromEverythingJobGoesOn) {
  ASSERT_NO_FATAL_FAILURE(SubmitJob());
  const int old = observer_->ServingLeader();
  const Clock::time_point cut_at = MarkCut();
  ASSERT_TRUE(hosts().Isolate(cluster_->worker_host(0)).ok());
  std::this_thread::sleep_for(seconds(15));
  ASSERT_TRUE(hosts().Heal().ok());
  ExpectRecovery(Clock::now(), observer_->Committed());
  const Measured m = Measure(observer_->rounds(), cut_at, old);
  Print("worker isolated", m);
  EXPECT_EQ(m.two_leader_rounds, 0) << "two serving leaders seen at once";
  EXPECT_LT(m.new_leader_ms, 0) << "the leadership changed though the leader lost only one worker";
  // The worker leaves the membership T after the cut; its tasks run
  // elsewhere within two batch intervals (+ a few s of slack).
  EXPECT_LE(m.stall_ms, kSessionTimeoutMs + 2 * kBatchMs + 3000);
  ExpectExactlyOnce();
}

// (d) A standby loses the leader (it keeps ZooKeeper and the workers): the
// leader and the other standby are still a quorum of the WAL, so batches go
// on committing; after the heal the standby catches up within 10 s.
TEST_F(PartitionTest, StandbyCutFromLeaderCatchesUpAfterHeal) {
  ASSERT_NO_FATAL_FAILURE(SubmitJob());
  const int leader = observer_->ServingLeader();
  ASSERT_GE(leader, 0);
  const int standby = (leader + 1) % cluster_->num_drivers();
  const Clock::time_point cut_at = MarkCut();
  ASSERT_TRUE(hosts().Cut(cluster_->driver_host(leader), cluster_->driver_host(standby)).ok());
  std::this_thread::sleep_for(seconds(15));
  Result<proto::DriverStatus> before = GetDriverStatus(cluster_->driver_address(standby));
  Result<proto::DriverStatus> lead = GetDriverStatus(cluster_->driver_address(leader));
  ASSERT_TRUE(before.ok() && lead.ok());
  EXPECT_LT(before->wal().last_seq(), lead->wal().commit_seq()) << "the cut standby kept up: was it cut?";
  ASSERT_TRUE(hosts().Heal().ok());
  const Clock::time_point healed_at = Clock::now();
  const int64_t committed_at_heal = observer_->Committed();
  const int64_t target = lead->wal().commit_seq();
  bool caught_up = WaitUntil(
      [&] {
        Result<proto::DriverStatus> st = GetDriverStatus(cluster_->driver_address(standby));
        return st.ok() && st->wal().last_seq() >= target;
      },
      seconds(10), milliseconds(50));
  const long catch_up_ms = Ms(Clock::now() - healed_at);
  EXPECT_TRUE(caught_up) << "the standby did not catch up within 10 s of the heal";
  ExpectRecovery(healed_at, committed_at_heal);
  const Measured m = Measure(observer_->rounds(), cut_at, leader);
  Print("standby cut from the leader", m);
  std::printf("[ partition ] standby behind by %ld records at the heal; caught up in %ld ms\n",
              static_cast<long>(target - before->wal().last_seq()), catch_up_ms);
  EXPECT_EQ(m.two_leader_rounds, 0) << "two serving leaders seen at once";
  EXPECT_LT(m.new_leader_ms, 0) << "the leadership changed though the leader lost only a standby";
  EXPECT_LE(m.stall_ms, 3 * kBatchMs + 1000);
  ExpectExactlyOnce();
}

// (e) One worker loses the other workers only (it keeps the drivers and
// ZooKeeper): a keyed job's shuffle between it and them fails within the
// push deadline, naming it; nobody leaves the membership and the leadership
// stays, but the leader gives it no keyed work and moves its reduce
// partitions, so batches commit again within the push deadline + two batch
// intervals (+ 1 s), exactly once.
TEST_F(PartitionTest, WorkerCutFromOtherWorkersKeyedJobExactlyOnce) {
  ASSERT_NO_FATAL_FAILURE(SubmitJob(/*keyed=*/true));
  const int leader = observer_->ServingLeader();
  const Clock::time_point cut_at = MarkCut();
  for (int w = 1; w < cluster_->num_workers(); ++w) {
    ASSERT_TRUE(hosts().Cut(cluster_->worker_host(0), cluster_->worker_host(w)).ok());
  }
  std::this_thread::sleep_for(seconds(15));
  ASSERT_TRUE(hosts().Heal().ok());
  ExpectRecovery(Clock::now(), observer_->Committed());
  const Measured m = Measure(observer_->rounds(), cut_at, leader);
  Print("worker cut from the other workers (keyed job)", m);
  EXPECT_EQ(m.two_leader_rounds, 0) << "two serving leaders seen at once";
  EXPECT_LT(m.new_leader_ms, 0) << "the leadership changed though no driver was cut";
  EXPECT_LE(m.stall_ms, kShufflePushMs + 2 * kBatchMs + 1000);
  ExpectExactlyOnce();
}

// The daemons log every task's worker (debug): a test can see who ran what.
class PartitionTestWithTaskLog : public PartitionTest {
 protected:
  std::string LogLevel() const override { return "debug"; }

  // Tasks the leader `driver` logged as succeeded on `worker`.
  int TasksRunOn(int driver, const std::string& worker) {
    const std::string log = ReadFile(cluster_->driver_log(driver)).value_or("");
    const std::string needle = " on worker " + worker + ": ";
    int n = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  }
};

// (f) One worker loses the other workers only, under a keyed job with state
// (a running count per key, each partition's state copied to a replica).
// The shuffle pushes to and from it fail within their deadline (3 s for a
// small push) and name it; the leader stops using it for the shuffle and
// moves its reduce partitions to their replicas, so batches commit again
// within the push deadline + two batch intervals (+ 1 s), with every running
// total exact. After the heal it runs tasks again.
TEST_F(PartitionTestWithTaskLog, WorkerCutFromOtherWorkersKeyedStateMovesToReplica) {
  ASSERT_NO_FATAL_FAILURE(SubmitJob(/*keyed=*/true, /*running=*/true));
  const int leader = observer_->ServingLeader();
  ASSERT_GE(leader, 0);
  const std::string cut_worker = cluster_->worker_id(0);
  const Clock::time_point cut_at = MarkCut();
  for (int w = 1; w < cluster_->num_workers(); ++w) {
    ASSERT_TRUE(hosts().Cut(cluster_->worker_host(0), cluster_->worker_host(w)).ok());
  }
  std::this_thread::sleep_for(seconds(15));
  ASSERT_TRUE(hosts().Heal().ok());
  const Clock::time_point healed_at = Clock::now();
  const int tasks_at_heal = TasksRunOn(leader, cut_worker);
  ExpectRecovery(healed_at, observer_->Committed());
  const bool works_again =
      WaitUntil([&] { return TasksRunOn(leader, cut_worker) > tasks_at_heal; }, seconds(30), milliseconds(200));
  std::printf("[ partition ] %s ran a task again %ld ms after the heal\n", cut_worker.c_str(),
              works_again ? Ms(Clock::now() - healed_at) : -1L);
  EXPECT_TRUE(works_again) << cut_worker << " ran no task within 30 s of the heal";
  const Measured m = Measure(observer_->rounds(), cut_at, leader);
  Print("worker cut from the other workers (keyed job with state)", m);
  EXPECT_EQ(m.two_leader_rounds, 0) << "two serving leaders seen at once";
  EXPECT_LT(m.new_leader_ms, 0) << "the leadership changed though no driver was cut";
  EXPECT_LE(m.stall_ms, kShufflePushMs + 2 * kBatchMs + 1000);
  ExpectExactlyOnce();
}

}  // namespace
}  // namespace sluice::testing
