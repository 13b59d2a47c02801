// Exactly-once end to end: 1,000,000 JSON events with unique ids
// produced into an 8-partition topic of the Kafka mock broker, read by two
// jobs — filter + project into the file sink, and into a Kafka topic — on a
// cluster of real processes (ZooKeeper, 3 driverd, 2 workerd). Every id that
// passes the filter appears exactly once in each output and no other does;
// malformed events are counted as dead letters and written to the dead-letter
// directory; the jobs' positions are committed to their Kafka consumer groups.
//
// The second test does the same while the leader is killed (kill -9) twice
// and a worker once: the file output is still exactly once, and the Kafka
// output holds no batch twice (the mock broker does not hide aborted records,
// so a fenced task's partial write may stay visible there; PLATFORM.md).
//
// The producer is paced (20,000 events/s of ~100 bytes: ~20 s of each
// partition fits the mock's ~5 MiB retention), so a batch re-run after a
// kill can still re-read its ranges from Kafka.
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/driver_client.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::LocalCluster;
using testing::TempDir;

constexpr int64_t kEvents = 1'000'000;
constexpr int64_t kMalformedEvery = 9'973;  // ids divisible by it are not JSON
constexpr int kPartitions = 8;

// The id of a line {"id":N,...} (file output, Kafka output).
int64_t IdOf(std::string_view line) {
  const size_t at = line.find("\"id\":");
  if (at == std::string_view::npos) return -1;
  return std::strtoll(line.data() + at + 5, nullptr, 10);
}

bool Passes(int64_t id) { return id % 10 != 3 && id % kMalformedEvery != 0; }

struct KafkaRecord {
  int32_t partition;
  int64_t batch;
  int64_t id;
};

std::string Header(const rd_kafka_message_t* m, const char* name) {
  rd_kafka_headers_t* headers = nullptr;
  const void* v = nullptr;
  size_t n = 0;
  if (rd_kafka_message_headers(m, &headers) || rd_kafka_header_get_last(headers, name, &v, &n)) return "";
  return std::string(static_cast<const char*>(v), n);
}

// Reads every record of every partition of `topic` from the beginning, in
// the background while the jobs run: the mock keeps only ~5 MiB per
// partition, less than the whole output.
class TopicReader {
 public:
  TopicReader(const std::string& brokers, const std::string& topic) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "exactly-once-test", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "auto.offset.reset", "error", errstr, sizeof(errstr));
    rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(kPartitions);
    for (int p = 0; p < kPartitions; ++p) {
      rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(rk_, list);
    rd_kafka_topic_partition_list_destroy(list);
    thread_ = std::thread([this] { Run(); });
  }

  ~TopicReader() {
    if (thread_.joinable()) Finish();
    rd_kafka_consumer_close(rk_);
    rd_kafka_destroy(rk_);
  }

  // Reads to the end of every partition, stops, and returns every record.
  std::vector<KafkaRecord> Finish() {
    finishing_ = true;
    thread_.join();
    return std::move(records_);
  }

 private:
  void Run() {
    std::set<int32_t> at_end;
    auto quiet_since = std::chrono::steady_clock::now();
    const auto give_up = std::chrono::steady_clock::now() + seconds(600);
    while (std::chrono::steady_clock::now() < give_up) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 200);
      if (m == nullptr) {
        if (finishing_ && at_end.size() == kPartitions && std::chrono::steady_clock::now() - quiet_since > seconds(2)) {
          return;
        }
        continue;
      }
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        at_end.insert(m->partition);
      } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        at_end.erase(m->partition);
        quiet_since = std::chrono::steady_clock::now();
        records_.push_back({m->partition, std::stoll(Header(m, "sluice.batch")),
                            IdOf({static_cast<const char*>(m->payload), m->len})});
      } else {
        ADD_FAILURE() << "reading the output topic: " << rd_kafka_message_errstr(m);
      }
      rd_kafka_message_destroy(m);
    }
    ADD_FAILURE() << "did not reach the end of the output topic";
  }

  rd_kafka_t* rk_ = nullptr;
  std::atomic<bool> finishing_{false};
  std::vector<KafkaRecord> records_;  // owned by the thread until Finish
  std::thread thread_;
};

// The offsets `group` has committed for `topic`, summed over partitions.
int64_t CommittedInGroup(const std::string& brokers, const std::string& topic, const std::string& group) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "group.id", group.c_str(), errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(kPartitions);
  for (int p = 0; p < kPartitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  int64_t sum = -1;
  if (rd_kafka_committed(rk, list, 10'000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    sum = 0;
    for (int i = 0; i < list->cnt; ++i) sum += std::max<int64_t>(0, list->elems[i].offset);
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  return sum;
}

class ExactlyOnceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = LocalCluster::Start({.dir = dir_.path(),
                                        .drivers = 3,
                                        .workers = 2,
                                        .kafka_topics = {{"events", kPartitions}, {"out", kPartitions}}});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
  }

  int Ctl(std::vector<std::string> args) {
    return cluster_->Sluicectl(args, dir_.Sub("ctl" + std::to_string(runs_++) + ".log"));
  }

  // The job as the serving leader describes it; nullopt while there is none.
  std::optional<proto::JobInfo> Describe(const std::string& job) { return cluster_->DescribeJob(job); }

  // Submits the two jobs over one Kafka source.
  void SubmitJobs() {
    const std::string common = fmt::format(R"(batch_interval: 1s
max_task_failures: 6
sources:
  - name: events
    kind: kafka
    brokers: {}
    topic: events
    start: earliest
operators:
  - parse: {{format: json}}
  - filter: "g != 3"
  - project: {{fields: [id, g]}}
)",
                                           cluster_->kafka()->bootstrap());
    const std::string files = dir_.Sub("to-files.yaml");
    ASSERT_TRUE(testing::WriteFile(files, "name: to-files\n" + common + "sink:\n  file: {path: " + out_ + "}\n").ok());
    const std::string kafka = dir_.Sub("to-kafka.yaml");
    ASSERT_TRUE(testing::WriteFile(kafka, "name: to-kafka\n" + common + "sink:\n  kafka: {brokers: " +
                                              cluster_->kafka()->bootstrap() + ", topic: out}\n")
                    .ok());
    ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"list"}) == 0; }, milliseconds(20'000), milliseconds(200)));
    ASSERT_EQ(Ctl({"submit", files}), 0) << testing::ReadFile(dir_.Sub("ctl" + std::to_string(runs_ - 1) + ".log")).value_or("");
    ASSERT_EQ(Ctl({"submit", kafka}), 0) << testing::ReadFile(dir_.Sub("ctl" + std::to_string(runs_ - 1) + ".log")).value_or("");
  }

  void StartProducer() {
    auto producer = testing::Subprocess::Start(
        {testing::kKafkaToolPath, "produce", "--brokers", cluster_->kafka()->bootstrap(), "--topic", "events",
         "--count", std::to_string(kEvents), "--size", "100", "--rate", "20000", "--json", "--malformed-every",
         std::to_string(kMalformedEvery)},
        {.log_path = dir_.Sub("producer.log")});
    ASSERT_TRUE(producer.ok()) << producer.status();
    producer_ = std::move(*producer);
  }

  // Waits for the producer, then for both jobs to have read every event.
  void WaitForTheJobsToCatchUp() {
    Result<int> produced = producer_->Wait(seconds(180));
    ASSERT_TRUE(produced.ok() && *produced == 0) << testing::ReadFile(dir_.Sub("producer.log")).value_or("");
    for (const std::string job : {"to-files", "to-kafka"}) {
      ASSERT_TRUE(testing::WaitUntil(
          [&] {
            std::optional<proto::JobInfo> info = Describe(job);
            return info && info->total_input() >= kEvents;
          },
          milliseconds(180'000), milliseconds(500)))
          << job << ": " << (Describe(job) ? Describe(job)->ShortDebugString() : "no leader");
      std::optional<proto::JobInfo> info = Describe(job);
      ASSERT_TRUE(info);
      EXPECT_EQ(info->state(), "running") << info->stop_reason();
      // Every event was read once: records in committed batches, exactly.
      EXPECT_EQ(info->total_input(), kEvents) << job;
      EXPECT_EQ(info->total_dead_letters(), kEvents / kMalformedEvery + 1) << job;  // id 0 too
      ASSERT_EQ(Ctl({"stop", job}), 0);
    }
  }

  // Every id of the file output, with how often it appears.
  std::map<int64_t, int> FileOutput() {
    std::map<int64_t, int> seen;
    for (const auto& f : std::filesystem::directory_iterator(out_)) {
      const std::string name = f.path().filename().string();
      if (!f.is_regular_file() || name.starts_with(".")) continue;  // a write a kill -9 cut short
      Result<std::string> text = testing::ReadFile(f.path().string());
      EXPECT_TRUE(text.ok()) << name;
      std::istringstream lines(*text);
      for (std::string line; std::getline(lines, line);) ++seen[IdOf(line)];
    }
    return seen;
  }

  void ExpectEveryPassingIdOnce(const std::map<int64_t, int>& seen, const std::string& what) {
    int64_t expected = 0, missing = 0, doubled = 0, unexpected = 0;
    for (int64_t id = 0; id < kEvents; ++id) {
      if (!Passes(id)) continue;
      ++expected;
      auto it = seen.find(id);
      if (it == seen.end()) {
        if (missing++ < 3) ADD_FAILURE() << what << ": id " << id << " missing";
      } else if (it->second > 1) {
        if (doubled++ < 3) ADD_FAILURE() << what << ": id " << id << " appears " << it->second << " times";
      }
    }
    for (const auto& [id, n] : seen) {
      if (id < 0 || id >= kEvents || !Passes(id)) {
        if (unexpected++ < 3) ADD_FAILURE() << what << ": id " << id << " should not be there";
      }
    }
    EXPECT_EQ(missing, 0) << what;
    EXPECT_EQ(doubled, 0) << what;
    EXPECT_EQ(unexpected, 0) << what;
    EXPECT_EQ(static_cast<int64_t>(seen.size()), expected) << what;
  }

  // No batch written twice to any output partition: the batches of each
  // partition come in increasing order, each once, and no id repeats (a
  // batch written twice in a row shows as repeated ids).
  void ExpectNoKafkaBatchTwice(const std::vector<KafkaRecord>& records) {
    std::map<int32_t, std::vector<int64_t>> runs;  // partition -> batches in the order written
    std::map<int64_t, int> ids;
    for (const KafkaRecord& r : records) {
      std::vector<int64_t>& b = runs[r.partition];
      if (b.empty() || b.back() != r.batch) b.push_back(r.batch);
      ++ids[r.id];
    }
    for (const auto& [p, batches] : runs) {
      for (size_t i = 1; i < batches.size(); ++i) {
        EXPECT_LT(batches[i - 1], batches[i]) << "partition " << p << ": batch " << batches[i] << " written twice or out of order";
      }
    }
    int64_t doubled = 0;
    for (const auto& [id, n] : ids) doubled += n > 1;
    EXPECT_EQ(doubled, 0) << "ids written twice to the Kafka output";
  }

  TempDir dir_{"exactly-once"};
  const std::string out_ = dir_.Sub("out");
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<testing::Subprocess> producer_;
  int runs_ = 0;
};

TEST_F(ExactlyOnceTest, AMillionEventsReachBothSinksExactlyOnce) {
  TopicReader output(cluster_->kafka()->bootstrap(), "out");
  ASSERT_NO_FATAL_FAILURE(SubmitJobs());
  ASSERT_NO_FATAL_FAILURE(StartProducer());
  ASSERT_NO_FATAL_FAILURE(WaitForTheJobsToCatchUp());

  ExpectEveryPassingIdOnce(FileOutput(), "file output");
  std::map<int64_t, int> kafka;
  std::vector<KafkaRecord> records = output.Finish();
  for (const KafkaRecord& r : records) ++kafka[r.id];
  ExpectEveryPassingIdOnce(kafka, "kafka output");
  ExpectNoKafkaBatchTwice(records);

  // The dead letters, one line each, naming where they came from.
  int64_t dead = 0;
  for (const auto& f : std::filesystem::directory_iterator(out_ + "/dead-letters")) {
    Result<std::string> text = testing::ReadFile(f.path().string());
    ASSERT_TRUE(text.ok());
    std::istringstream lines(*text);
    for (std::string line; std::getline(lines, line);) {
      EXPECT_THAT(line, ::testing::HasSubstr("\"record\":\"not json "));
      ++dead;
    }
  }
  EXPECT_EQ(dead, kEvents / kMalformedEvery + 1);

  // Positions reach the jobs' consumer groups after their batches commit.
  for (const std::string group : {"sluice-to-files", "sluice-to-kafka"}) {
    EXPECT_TRUE(testing::WaitUntil(
        [&] { return CommittedInGroup(cluster_->kafka()->bootstrap(), "events", group) == kEvents; },
        milliseconds(20'000), milliseconds(500)))
        << group << " committed " << CommittedInGroup(cluster_->kafka()->bootstrap(), "events", group);
  }
}

TEST_F(ExactlyOnceTest, LeaderKilledTwiceAndAWorkerOnceStillExactlyOnce) {
  TopicReader output(cluster_->kafka()->bootstrap(), "out");
  ASSERT_NO_FATAL_FAILURE(SubmitJobs());
  ASSERT_NO_FATAL_FAILURE(StartProducer());
  auto leader = [&] { return cluster_->LeaderIndex(); };
  // Kill the leader while batches are being planned and run; bring it back
  // as a standby once another leads (the WAL needs two of three drivers).
  auto kill_leader = [&] {
    const int killed = leader();
    ASSERT_GE(killed, 0);
    // While a batch is planned and not yet committed, so that the next
    // leader has work of this one to finish (a batch takes a fraction of
    // its second: a kill at a random moment often finds none). If none
    // shows within 5 s, the kill goes ahead all the same.
    static_cast<void>(testing::WaitUntil(
        [&] {
          std::optional<proto::JobInfo> job = cluster_->DescribeJob("to-kafka");
          return job && job->last_planned_batch() > job->last_committed_batch();
        },
        milliseconds(5'000), milliseconds(10)));
    cluster_->KillDriver(killed);
    ASSERT_TRUE(testing::WaitUntil([&] { return leader() >= 0 && leader() != killed; }, milliseconds(30'000),
                                   milliseconds(100)));
    ASSERT_TRUE(cluster_->StartDriver(killed).ok());
  };
  std::this_thread::sleep_for(seconds(10));
  ASSERT_NO_FATAL_FAILURE(kill_leader());
  std::this_thread::sleep_for(seconds(8));
  cluster_->KillWorker(0);
  std::this_thread::sleep_for(seconds(4));
  ASSERT_TRUE(cluster_->StartWorker(0).ok());
  std::this_thread::sleep_for(seconds(8));
  ASSERT_NO_FATAL_FAILURE(kill_leader());
  ASSERT_NO_FATAL_FAILURE(WaitForTheJobsToCatchUp());

  ExpectEveryPassingIdOnce(FileOutput(), "file output");
  ExpectNoKafkaBatchTwice(output.Finish());

  // The kills hit work in flight: some batch planned under one leader was
  // run and committed by the next (else this test proved nothing).
  std::map<std::pair<std::string, int64_t>, int64_t> planned_epoch;
  int64_t rerun = 0;
  const int l = leader();
  ASSERT_GE(l, 0);
  rpc::DriverClient driver(testing::Channels(), cluster_->driver_address(l));
  for (int64_t from = 1;;) {
    proto::ReadWalRequest request;
    request.set_from_seq(from);
    request.set_max_records(5'000);
    Result<proto::ReadWalResponse> read = driver.ReadWal(request);
    ASSERT_TRUE(read.ok()) << read.status();
    const proto::ReadWalResponse& wal = *read;
    ASSERT_FALSE(wal.has_snapshot()) << "the WAL was compacted: read it from a snapshot";
    if (wal.records().empty()) break;
    for (const proto::DriverLogEntry& e : wal.records()) {
      const proto::DriverRecord& r = e.record();
      if (r.has_batch_planned()) planned_epoch[{r.batch_planned().job_id(), r.batch_planned().batch_id()}] = e.epoch();
      if (r.has_batch_committed()) {
        auto it = planned_epoch.find({r.batch_committed().job_id(), r.batch_committed().batch_id()});
        if (it != planned_epoch.end() && it->second < e.epoch()) ++rerun;
      }
    }
    from = wal.records(wal.records_size() - 1).seq() + 1;
  }
  EXPECT_GE(rerun, 1) << "no batch was planned by one leader and committed by another";
}

}  // namespace
}  // namespace sluice
