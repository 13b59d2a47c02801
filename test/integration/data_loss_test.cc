// Data loss as a policy (docs/data-path.md "When the source loses data"), on
// a cluster of real processes (ZooKeeper, a driverd, 2 workerd) reading a
// one-partition topic of the Kafka mock broker, whose retention keeps only
// about 5 MiB per partition.
//
// The receiver is made to fall behind: its worker is paused (SIGSTOP) while
// 30 MB are produced, then resumed (SIGCONT); the offsets it was to read
// next are gone.
//   - on_data_loss: skip: the loss is recorded and reading goes on; the job
//     goes on past it. Liveness: the time from the resume to the first
//     committed batch with data after the loss, bounded and printed. Safety:
//     every id outside the recorded range reaches the output exactly once,
//     none inside it; the range shows in `sluicectl sources` and `describe`,
//     in sluice_source_lost_offsets_total, and as a dead letter of the job.
//   - on_data_loss: fail (the default): the partition stops, FAILED, naming
//     the range; `sluicectl source reset ... --to earliest` lets it go on
//     (bad input to it is one clear line); the same safety check, and the
//     time from the reset to the next committed batch, bounded and printed.
//     A reset of a healthy partition skips (and records) what it says.
//
// Producing from one producer into one partition makes offset == id, so
// "exactly once outside the lost range" is checked id by id.
#include <signal.h>

#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/driver_client.h"
#include "test/harness/http_get.h"
#include "test/harness/local_cluster.h"
#include "test/harness/metrics_text.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::LocalCluster;
using testing::TempDir;

constexpr int kEventBytes = 1000;
constexpr int64_t kBefore = 3'000;   // read before the pause (3 MB: within retention)
constexpr int64_t kDuring = 30'000;  // produced while the reader is paused (30 MB: 6x retention)
constexpr int64_t kAfter = 3'000;    // produced after the loss
constexpr auto kLivenessBound = seconds(30);

int64_t IdOf(std::string_view line) {
  const size_t at = line.find("\"id\":");
  if (at == std::string_view::npos) return -1;
  return std::strtoll(line.data() + at + 5, nullptr, 10);
}

class DataLossTest : public ::testing::Test {
 protected:
  void StartCluster() {
    // A long ZooKeeper session: the paused worker must stay a member (its
    // receiver resumes where it was, behind the retention).
    auto cluster = LocalCluster::Start({.dir = dir_.path(),
                                        .drivers = 1,
                                        .workers = 2,
                                        .kafka_topics = {{"events", 1}},
                                        .http = true,
                                        .zk_session_timeout_ms = 15'000});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
  }

  // sluicectl `args`; its exit code, its output in *output.
  int Ctl(std::vector<std::string> args, std::string* output = nullptr) {
    const std::string log = dir_.Sub("ctl" + std::to_string(runs_++) + ".log");
    const int rc = cluster_->Sluicectl(args, log);
    std::string text = testing::ReadFile(log).value_or("");
    if (output != nullptr) *output = text;
    return rc;
  }

  void SubmitJob(const std::string& policy_line) {
    const std::string file = dir_.Sub("job.yaml");
    ASSERT_TRUE(testing::WriteFile(file, fmt::format(R"(name: lossy
batch_interval: 500ms
sources:
  - name: events
    kind: kafka
    brokers: {}
    topic: events
    start: earliest
{}
operators:
  - parse: {{format: json}}
  - project: {{fields: [id, g]}}
sink:
  file: {{path: {}}}
)",
                                                     cluster_->kafka()->bootstrap(), policy_line, out_))
                    .ok());
    ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"list"}) == 0; }, milliseconds(20'000), milliseconds(200)));
    std::string output;
    ASSERT_EQ(Ctl({"submit", file}, &output), 0) << output;
  }

  // Starts producing ids [first, first + count), at `rate` per second (0: as
  // fast as it goes); Produced() waits for it.
  void StartProducing(int64_t first, int64_t count, int64_t rate) {
    std::vector<std::string> argv = {testing::kKafkaToolPath, "produce", "--brokers", cluster_->kafka()->bootstrap(),
                                     "--topic", "events", "--count", std::to_string(count), "--size",
                                     std::to_string(kEventBytes), "--json", "--first", std::to_string(first)};
    if (rate > 0) argv.insert(argv.end(), {"--rate", std::to_string(rate)});
    auto producer = testing::Subprocess::Start(argv, {.log_path = dir_.Sub("produce-" + std::to_string(first) + ".log")});
    ASSERT_TRUE(producer.ok()) << producer.status();
    producer_ = std::move(*producer);
  }
  void Produced() {
    ASSERT_TRUE(producer_);
    Result<int> rc = producer_->Wait(seconds(120));
    ASSERT_TRUE(rc.ok() && *rc == 0) << testing::ReadFile(producer_->log_path()).value_or("");
    producer_.reset();
  }
  void Produce(int64_t first, int64_t count, int64_t rate) {
    ASSERT_NO_FATAL_FAILURE(StartProducing(first, count, rate));
    ASSERT_NO_FATAL_FAILURE(Produced());
  }

  std::optional<proto::JobInfo> Describe() { return cluster_->DescribeJob("lossy"); }

  int64_t CommittedInput() {
    std::optional<proto::JobInfo> info = Describe();
    return info ? info->total_input() : -1;
  }

  // Partition 0 of "events" as the leader lists it.
  std::optional<proto::PartitionInfo> Partition() {
    const int leader = cluster_->LeaderIndex();
    if (leader < 0) return std::nullopt;
    proto::ListSourcesRequest request;
    request.set_source("events");
    Result<proto::ListSourcesResponse> got =
        rpc::DriverClient(testing::Channels(), cluster_->driver_address(leader)).ListSources(request);
    if (!got.ok() || got->sources_size() != 1 || got->sources(0).partitions_size() != 1) return std::nullopt;
    return got->sources(0).partitions(0);
  }

  // The worker whose receiver reads partition 0.
  int ReaderWorker() {
    int index = -1;
    EXPECT_TRUE(testing::WaitUntil(
        [&] {
          std::optional<proto::PartitionInfo> p = Partition();
          if (!p || p->worker().empty()) return false;
          for (int i = 0; i < cluster_->num_workers(); ++i) {
            if (cluster_->worker_id(i) == p->worker()) index = i;
          }
          return index >= 0;
        },
        milliseconds(30'000), milliseconds(200)));
    return index;
  }

  // Reads kBefore, pauses the reader, produces kDuring, resumes it. Returns
  // when it resumed.
  std::chrono::steady_clock::time_point FallBehind() {
    Produce(0, kBefore, 5'000);
    EXPECT_TRUE(testing::WaitUntil([&] { return CommittedInput() >= kBefore; }, milliseconds(60'000),
                                   milliseconds(200)))
        << "the job did not read the first events";
    const int reader = ReaderWorker();
    EXPECT_GE(reader, 0);
    if (reader < 0) return std::chrono::steady_clock::now();
    EXPECT_TRUE(cluster_->worker(reader)->Signal(SIGSTOP).ok());
    const auto paused = std::chrono::steady_clock::now();
    Produce(kBefore, kDuring, 0);
    EXPECT_TRUE(cluster_->worker(reader)->Signal(SIGCONT).ok());
    const auto resumed = std::chrono::steady_clock::now();
    resumed_unix_ms_ = std::chrono::duration_cast<milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
    std::printf("[ data_loss ] reader worker-%d paused %lld ms while %lld events (%lld MB) were produced\n",
                reader + 1, static_cast<long long>(std::chrono::duration_cast<milliseconds>(resumed - paused).count()),
                static_cast<long long>(kDuring), static_cast<long long>(kDuring * kEventBytes / 1'000'000));
    return resumed;
  }

  // Waits until a committed batch has data beyond `input`; returns how long that took from `since`.
  milliseconds TimeToNextCommittedData(int64_t input, std::chrono::steady_clock::time_point since) {
    EXPECT_TRUE(testing::WaitUntil([&] { return CommittedInput() > input; }, milliseconds(120'000),
                                   milliseconds(50)))
        << "no committed batch with new data: " << (Describe() ? Describe()->ShortDebugString() : "no leader");
    return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - since);
  }

  // Every id of the file output, with how often it appears.
  std::map<int64_t, int> Output() {
    std::map<int64_t, int> seen;
    for (const auto& f : std::filesystem::directory_iterator(out_)) {
      const std::string name = f.path().filename().string();
      if (!f.is_regular_file() || name.starts_with(".")) continue;
      std::istringstream lines(testing::ReadFile(f.path().string()).value_or(""));
      for (std::string line; std::getline(lines, line);) ++seen[IdOf(line)];
    }
    return seen;
  }

  std::string DeadLetters() {
    std::string all;
    const std::string dir = out_ + "/dead-letters";
    if (!std::filesystem::exists(dir)) return all;
    for (const auto& f : std::filesystem::directory_iterator(dir)) {
      if (f.is_regular_file() && !f.path().filename().string().starts_with(".")) {
        all += testing::ReadFile(f.path().string()).value_or("");
      }
    }
    return all;
  }

  // Waits until the job has read every id below `end` that was not lost,
  // then checks the output id by id against the recorded lost ranges.
  void ExpectExactlyOnceOutsideTheLoss(int64_t end) {
    std::optional<proto::PartitionInfo> p;
    int64_t lost = 0;
    ASSERT_TRUE(testing::WaitUntil(
        [&] {
          p = Partition();
          if (!p || p->next_offset() < end) return false;
          lost = p->lost_offsets();
          return CommittedInput() >= end - lost;
        },
        milliseconds(120'000), milliseconds(200)))
        << "the job did not catch up: " << (p ? p->ShortDebugString() : "no partition") << " input "
        << CommittedInput();
    ASSERT_GT(p->lost_size(), 0);
    auto in_lost = [&](int64_t id) {
      for (const proto::SourceDataLost& l : p->lost()) {
        if (id >= l.from_offset() && id < l.to_offset()) return true;
      }
      return false;
    };
    // The loss starts where the reader was and ends where the source still
    // held data: not everything produced meanwhile is gone.
    EXPECT_EQ(p->lost(0).from_offset(), kBefore);
    EXPECT_LT(lost, kDuring) << "the whole pause lost? the retention kept nothing";
    EXPECT_EQ(CommittedInput(), end - lost) << "records read beyond those not lost";
    const std::map<int64_t, int> seen = Output();
    int64_t missing = 0, doubled = 0, unexpected = 0;
    for (int64_t id = 0; id < end; ++id) {
      auto it = seen.find(id);
      if (in_lost(id)) {
        if (it != seen.end() && unexpected++ < 3) ADD_FAILURE() << "id " << id << " is in a lost range but was output";
      } else if (it == seen.end()) {
        if (missing++ < 3) ADD_FAILURE() << "id " << id << " missing";
      } else if (it->second > 1) {
        if (doubled++ < 3) ADD_FAILURE() << "id " << id << " appears " << it->second << " times";
      }
    }
    for (const auto& [id, n] : seen) {
      if ((id < 0 || id >= end) && unexpected++ < 3) ADD_FAILURE() << "id " << id << " should not be there";
    }
    EXPECT_EQ(missing, 0);
    EXPECT_EQ(doubled, 0);
    EXPECT_EQ(unexpected, 0);
    EXPECT_EQ(static_cast<int64_t>(seen.size()), end - lost);
    std::printf("[ data_loss ] %zu lost range(s), %lld offsets lost of %lld; %zu ids output, each once\n",
                static_cast<size_t>(p->lost_size()), static_cast<long long>(lost), static_cast<long long>(end),
                seen.size());
  }

  // The loss as sluicectl, the metrics and the job's dead letters show it.
  void ExpectTheLossReported(bool by_reset) {
    std::optional<proto::PartitionInfo> p = Partition();
    ASSERT_TRUE(p && p->lost_size() > 0);
    const proto::SourceDataLost& first = p->lost(0);
    EXPECT_EQ(first.by_reset(), by_reset);
    const std::string range = fmt::format("lost offsets {}..{}", first.from_offset(), first.to_offset() - 1);
    std::string sources, describe;
    ASSERT_EQ(Ctl({"sources"}, &sources), 0) << sources;
    EXPECT_THAT(sources, HasSubstr(range));
    EXPECT_THAT(sources, HasSubstr("lost_offsets=" + std::to_string(p->lost_offsets())));
    ASSERT_EQ(Ctl({"describe", "lossy"}, &describe), 0) << describe;
    EXPECT_THAT(describe, HasSubstr("lost:       events[0] " + range));
    // The metric, from the leader.
    const int leader = cluster_->LeaderIndex();
    ASSERT_GE(leader, 0);
    Result<testing::HttpReply> metrics = testing::HttpGet(cluster_->driver_http_address(leader), "/metrics");
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    const testing::ParsedMetrics parsed = testing::ParseMetrics(metrics->body);
    EXPECT_EQ(parsed.Value("sluice_source_lost_offsets_total", {{"source", "events"}, {"partition", "0"}}),
              static_cast<double>(p->lost_offsets()));
    // One dead letter per lost range the job jumped over, naming it.
    ASSERT_TRUE(testing::WaitUntil([&] { return !DeadLetters().empty(); }, milliseconds(10'000), milliseconds(200)));
    const std::string dead = DeadLetters();
    EXPECT_THAT(dead, HasSubstr(fmt::format(R"({{"lost":{{"source":"events","partition":0,"from":{},"to":{},"by_reset":{})",
                                            first.from_offset(), first.to_offset(), by_reset ? "true" : "false")));
    std::optional<proto::JobInfo> info = Describe();
    ASSERT_TRUE(info);
    EXPECT_EQ(info->total_dead_letters(), p->lost_size());
  }

  TempDir dir_{"data-loss"};
  const std::string out_ = dir_.Sub("out");
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<testing::Subprocess> producer_;
  int64_t resumed_unix_ms_ = 0;  // when the reader was resumed (the leader's clock is the same machine's)
  int runs_ = 0;
};

TEST_F(DataLossTest, SkipRecordsTheLostRangeAndTheJobGoesOnExactlyOnceOutsideIt) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  ASSERT_NO_FATAL_FAILURE(SubmitJob("    on_data_loss: skip"));
  const auto resumed = FallBehind();
  ASSERT_FALSE(HasFatalFailure());
  // New data after the loss, paced (1 MB/s) so the retention does not
  // overtake the reader again; the job must reach it without anyone's help.
  ASSERT_NO_FATAL_FAILURE(StartProducing(kBefore + kDuring, kAfter, 1'000));
  const milliseconds liveness = TimeToNextCommittedData(kBefore, resumed);
  ASSERT_NO_FATAL_FAILURE(Produced());
  std::printf("[ data_loss ] skip: resume -> first committed batch with data after the loss: %lld ms (bound %lld s)\n",
              static_cast<long long>(liveness.count()), static_cast<long long>(kLivenessBound.count()));
  EXPECT_LT(liveness, kLivenessBound);
  ASSERT_NO_FATAL_FAILURE(ExpectExactlyOnceOutsideTheLoss(kBefore + kDuring + kAfter));
  ASSERT_NO_FATAL_FAILURE(ExpectTheLossReported(/*by_reset=*/false));
  std::optional<proto::PartitionInfo> p = Partition();
  ASSERT_TRUE(p && p->lost_size() > 0);
  std::printf("[ data_loss ] skip: resume -> loss recorded in the WAL: %lld ms\n",
              static_cast<long long>(p->lost(0).detected_unix_ms() - resumed_unix_ms_));
  std::optional<proto::JobInfo> info = Describe();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->state(), "running") << info->stop_reason();
  // One warning line per loss in the leader's log.
  const std::string log = testing::ReadFile(cluster_->driver_log(0)).value_or("");
  EXPECT_THAT(log, HasSubstr("are gone from the source; on_data_loss is skip"));
}

TEST_F(DataLossTest, FailStopsThePartitionNamingTheRangeUntilSourceReset) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  ASSERT_NO_FATAL_FAILURE(SubmitJob(""));  // fail is the default
  FallBehind();
  ASSERT_FALSE(HasFatalFailure());
  // FAILED, with the range named.
  std::optional<proto::PartitionInfo> p;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        p = Partition();
        return p && p->error().find("on_data_loss is fail") != std::string::npos;
      },
      milliseconds(60'000), milliseconds(200)))
      << (p ? p->ShortDebugString() : "no partition");
  EXPECT_THAT(p->error(), HasSubstr(fmt::format("offsets {}..", kBefore)));
  EXPECT_EQ(p->next_offset(), kBefore);
  EXPECT_EQ(p->lost_size(), 0);
  std::string sources;
  ASSERT_EQ(Ctl({"sources"}, &sources), 0);
  EXPECT_THAT(sources, HasSubstr(fmt::format("FAILED: offsets {}..", kBefore)));
  std::string describe;
  ASSERT_EQ(Ctl({"describe", "lossy"}, &describe), 0);
  EXPECT_THAT(describe, HasSubstr(fmt::format("FAILED:     events[0] offsets {}..", kBefore)));
  // It stays stopped: nothing more is read.
  std::this_thread::sleep_for(seconds(2));
  EXPECT_EQ(CommittedInput(), kBefore);

  // Bad input: one clear line each.
  std::string out;
  EXPECT_EQ(Ctl({"source", "reset", "nope", "0", "--to", "earliest"}, &out), 1);
  EXPECT_THAT(out, HasSubstr("no source 'nope'"));
  EXPECT_EQ(Ctl({"source", "reset", "events", "3", "--to", "earliest"}, &out), 2);
  EXPECT_THAT(out, HasSubstr("source 'events' has partitions 0..0; there is no partition 3"));
  EXPECT_EQ(Ctl({"source", "reset", "events", "0", "--to", "soon"}, &out), 2);
  EXPECT_THAT(out, HasSubstr("--to 'soon' is not earliest, latest or an offset"));
  EXPECT_EQ(Ctl({"source", "reset", "events", "0", "--to", "10"}, &out), 1);
  EXPECT_THAT(out, HasSubstr(fmt::format("--to 10 is before the partition's next offset {}", kBefore)));

  // The reset: it goes on from the earliest offset held.
  const auto reset_at = std::chrono::steady_clock::now();
  ASSERT_EQ(Ctl({"source", "reset", "events", "0", "--to", "earliest"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("skipped, recorded"));
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        p = Partition();
        return p && p->error().empty() && !p->worker().empty();
      },
      milliseconds(20'000), milliseconds(100)))
      << "not assigned again after the reset: " << (p ? p->ShortDebugString() : "no partition");
  ASSERT_NO_FATAL_FAILURE(StartProducing(kBefore + kDuring, kAfter, 1'000));
  const milliseconds liveness = TimeToNextCommittedData(kBefore, reset_at);
  ASSERT_NO_FATAL_FAILURE(Produced());
  std::printf("[ data_loss ] fail: source reset -> next committed batch with data: %lld ms (bound %lld s)\n",
              static_cast<long long>(liveness.count()), static_cast<long long>(kLivenessBound.count()));
  EXPECT_LT(liveness, kLivenessBound);
  ASSERT_NO_FATAL_FAILURE(ExpectExactlyOnceOutsideTheLoss(kBefore + kDuring + kAfter));
  ASSERT_NO_FATAL_FAILURE(ExpectTheLossReported(/*by_reset=*/true));
  p = Partition();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->error(), "");

  // A reset of a healthy partition is allowed (it is explicit) and records
  // what it skips: here the next 100 offsets, produced after it.
  const int64_t end = kBefore + kDuring + kAfter;
  ASSERT_EQ(Ctl({"source", "reset", "events", "0", "--to", std::to_string(end + 100)}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr(fmt::format("goes on at offset {} (offsets {}..{} skipped, recorded)", end + 100, end,
                                         end + 99)));
  ASSERT_NO_FATAL_FAILURE(Produce(end, 200, 1'000));
  ASSERT_NO_FATAL_FAILURE(ExpectExactlyOnceOutsideTheLoss(end + 200));
  p = Partition();
  ASSERT_TRUE(p);
  ASSERT_EQ(p->lost_size(), 2);
  EXPECT_EQ(p->lost(1).from_offset(), end);
  EXPECT_EQ(p->lost(1).to_offset(), end + 100);
  EXPECT_TRUE(p->lost(1).by_reset());
}

}  // namespace
}  // namespace sluice
