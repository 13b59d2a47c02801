// The Kafka sink's protocol against the Kafka mock broker process: a batch a
// partition already holds is skipped, a task of a superseded leader does not
// commit, a re-run on another worker writes nothing twice. (The
// mock does not hide aborted records, so exactly-once of whole jobs is shown
// on the file sink; here each step of the protocol is checked on its own.)
#include "lib/sink/kafka_sink.h"

#include <librdkafka/rdkafka.h>

#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/harness/kafka_mock.h"
#include "test/harness/util.h"

namespace sluice::sink {
namespace {

using ::testing::HasSubstr;
using testing::KafkaMock;
using testing::TempDir;

struct Record {
  std::string job;
  int64_t batch = 0;
  std::string value;
};

std::string HeaderOf(const rd_kafka_message_t* m, const char* name) {
  rd_kafka_headers_t* headers = nullptr;
  const void* v = nullptr;
  size_t n = 0;
  if (rd_kafka_message_headers(m, &headers) || rd_kafka_header_get_last(headers, name, &v, &n)) return "";
  return std::string(static_cast<const char*>(v), n);
}

// Every record of topic[partition], from the start.
std::vector<Record> ReadAll(const std::string& brokers, const std::string& topic, int32_t partition) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "group.id", "kafka-sink-test", errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  EXPECT_NE(rk, nullptr) << errstr;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<Record> records;
  bool eof = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!eof && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (m == nullptr) continue;
    eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      records.push_back({HeaderOf(m, "sluice.job"), std::stoll(HeaderOf(m, "sluice.batch")),
                         std::string(static_cast<const char*>(m->payload), m->len)});
    }
    rd_kafka_message_destroy(m);
  }
  EXPECT_TRUE(eof) << "did not reach the end of " << topic << "[" << partition << "]";
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return records;
}

std::vector<std::pair<std::string, int64_t>> JobsAndBatches(const std::vector<Record>& records) {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const Record& r : records) out.emplace_back(r.job, r.batch);
  return out;
}

class KafkaSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mock = KafkaMock::Start(dir_.path(), {{"out", 2}});
    ASSERT_TRUE(mock.ok()) << mock.status();
    mock_ = std::move(*mock);
    spec_.set_brokers(mock_->bootstrap());
    spec_.set_topic("out");
  }

  TempDir dir_;
  std::unique_ptr<KafkaMock> mock_;
  proto::KafkaSinkSpec spec_;
};

TEST_F(KafkaSinkTest, ABatchThePartitionAlreadyHoldsIsSkipped) {
  auto sink = OpenKafkaSink(spec_);
  ASSERT_TRUE(sink.ok()) << sink.status();
  auto w1 = (*sink)->Write({.job_id = "j", .batch_id = 1, .task = 0, .output_partition = 0}, "{\"a\":1}\n{\"a\":2}\n");
  ASSERT_TRUE(w1.ok()) << w1.status();
  EXPECT_FALSE(w1->skipped);
  EXPECT_EQ(w1->name, "out[0]");
  // The re-run of batch 1 (a failover before BatchCommitted) writes nothing.
  auto again = (*sink)->Write({.job_id = "j", .batch_id = 1, .task = 3, .output_partition = 0}, "{\"a\":1}\n{\"a\":2}\n");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->skipped);
  // Another job in the same partition does not count as this job's batches.
  auto other = (*sink)->Write({.job_id = "other", .batch_id = 7, .output_partition = 0}, "{\"b\":1}\n");
  ASSERT_TRUE(other.ok()) << other.status();
  auto w2 = (*sink)->Write({.job_id = "j", .batch_id = 2, .output_partition = 0}, "{\"a\":3}\n");
  ASSERT_TRUE(w2.ok()) << w2.status();
  EXPECT_FALSE(w2->skipped);
  // An empty output writes nothing at all.
  auto empty = (*sink)->Write({.job_id = "j", .batch_id = 3, .output_partition = 1}, "");
  ASSERT_TRUE(empty.ok()) << empty.status();

  std::vector<Record> records = ReadAll(mock_->bootstrap(), "out", 0);
  EXPECT_THAT(JobsAndBatches(records), ::testing::ElementsAre(std::pair<std::string, int64_t>{"j", 1},
                                                              std::pair<std::string, int64_t>{"j", 1},
                                                              std::pair<std::string, int64_t>{"other", 7},
                                                              std::pair<std::string, int64_t>{"j", 2}));
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0].value, "{\"a\":1}");
  EXPECT_EQ(records[3].value, "{\"a\":3}");
  EXPECT_TRUE(ReadAll(mock_->bootstrap(), "out", 1).empty());

  auto writer = KafkaPartitionWriter::Open(spec_, "j", 0);
  ASSERT_TRUE(writer.ok()) << writer.status();
  auto held = (*writer)->HeldBatch();
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(*held, 2);
}

// A task of a superseded leader (the worker has seen a newer epoch) that is
// still writing aborts instead of committing. (The mock broker does not
// fence an older producer's commit after InitTransactions, so the producer
// epoch cannot be shown here; this is Sluice's own fence.)
TEST_F(KafkaSinkTest, AZombieTaskDoesNotCommit) {
  auto sink = OpenKafkaSink(spec_);
  ASSERT_TRUE(sink.ok());
  bool superseded = false;
  WriteRequest request{.job_id = "j", .batch_id = 5, .output_partition = 1, .still_current = [&]() -> Status {
                         if (superseded) return absl::FailedPreconditionError("epoch 3 < 4");
                         return absl::OkStatus();
                       }};
  superseded = true;
  auto late = (*sink)->Write(request, "{\"z\":1}\n");
  ASSERT_FALSE(late.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(late.status())) << late.status();
  EXPECT_THAT(std::string(late.status().message()), HasSubstr("batch 5 not committed, the task is fenced: epoch 3 < 4"));
  superseded = false;
  auto current = (*sink)->Write({.job_id = "j", .batch_id = 6, .output_partition = 1}, "{\"r\":1}\n");
  EXPECT_TRUE(current.ok()) << current.status();
}

// Two workers' sinks (the task moved after a failure): whichever opens its
// producer last is the only writer; the other finds itself fenced, reopens,
// and still writes every batch once.
TEST_F(KafkaSinkTest, ARerunOnAnotherWorkerWritesNothingTwice) {
  auto worker_a = OpenKafkaSink(spec_);
  auto worker_b = OpenKafkaSink(spec_);
  ASSERT_TRUE(worker_a.ok() && worker_b.ok());
  ASSERT_TRUE((*worker_a)->Write({.job_id = "j", .batch_id = 1, .output_partition = 1}, "1a\n1b\n").ok());
  // Batch 1 again on B (A's answer was lost): skipped; B's producer fences A's.
  auto rerun = (*worker_b)->Write({.job_id = "j", .batch_id = 1, .output_partition = 1}, "1a\n1b\n");
  ASSERT_TRUE(rerun.ok()) << rerun.status();
  EXPECT_TRUE(rerun->skipped);
  // Batch 2 back on A: its producer is fenced, it opens a new one and writes.
  auto w2 = (*worker_a)->Write({.job_id = "j", .batch_id = 2, .output_partition = 1}, "2a\n");
  ASSERT_TRUE(w2.ok()) << w2.status();
  EXPECT_FALSE(w2->skipped);
  auto w3 = (*worker_b)->Write({.job_id = "j", .batch_id = 3, .output_partition = 1}, "3a\n");
  ASSERT_TRUE(w3.ok()) << w3.status();
  std::vector<std::string> values;
  for (const Record& r : ReadAll(mock_->bootstrap(), "out", 1)) values.push_back(r.value);
  EXPECT_THAT(values, ::testing::ElementsAre("1a", "1b", "2a", "3a"));
}

TEST_F(KafkaSinkTest, ATopicWithTooFewPartitionsIsRefused) {
  auto sink = OpenKafkaSink(spec_);
  ASSERT_TRUE(sink.ok());
  auto w = (*sink)->Write({.job_id = "j", .batch_id = 1, .output_partition = 2}, "x\n");
  ASSERT_FALSE(w.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(w.status())) << w.status();
  EXPECT_THAT(std::string(w.status().message()), HasSubstr("topic out has 2 partitions"));
  proto::KafkaSinkSpec missing = spec_;
  missing.set_topic("");
  EXPECT_TRUE(absl::IsInvalidArgument(OpenKafkaSink(missing).status()));
}

}  // namespace
}  // namespace sluice::sink
