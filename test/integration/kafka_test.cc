// The Kafka part of the harness: a producer process and a consumer process
// exchange 100,000 messages of 600 bytes through the mock broker process,
// consuming while producing, none lost and none doubled.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/harness/kafka_mock.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

TEST(KafkaHarness, ProducerAndConsumerProcessesExchange100kMessages) {
  TempDir dir;
  // 60 MB over 8 partitions is 7.5 MB each, more than the ~5 MiB the mock
  // keeps: the consumer must keep up while the producer runs. At 20,000/s
  // (12 MB/s) it may lag ~3 s before retention takes what it has not read:
  // room for a loaded 2-core machine (at 50,000/s a busy run failed).
  auto mock = KafkaMock::Start(dir.path(), {{"events", 8}});
  ASSERT_TRUE(mock.ok()) << mock.status();
  const std::string brokers = (*mock)->bootstrap();
  const std::string ready = dir.Sub("consumer.ready");
  auto consumer = Subprocess::Start({kKafkaToolPath, "consume", "--brokers", brokers, "--topic",
                                     "events", "--count", "100000", "--timeout-s", "120",
                                     "--ready-file", ready},
                                    {.log_path = dir.Sub("consumer.log")});
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE(WaitUntil([&] { return ReadFile(ready).ok(); }, std::chrono::seconds(20)));
  auto producer = Subprocess::Start({kKafkaToolPath, "produce", "--brokers", brokers, "--topic",
                                     "events", "--count", "100000", "--size", "600", "--rate",
                                     "20000"},
                                    {.log_path = dir.Sub("producer.log")});
  ASSERT_TRUE(producer.ok()) << producer.status();

  // Consuming while producing: the consumer reports messages while the
  // producer still runs (and the retention limit would fail it otherwise).
  bool consumed_while_producing = false;
  WaitUntil(
      [&] {
        std::string log = ReadFile(dir.Sub("consumer.log")).value_or("");
        size_t at = log.rfind("progress unique=");
        long unique = at == std::string::npos ? 0 : std::atol(log.c_str() + at + 16);
        consumed_while_producing = unique > 0 && (*producer)->Running();
        return consumed_while_producing || !(*producer)->Running();
      },
      std::chrono::seconds(60), std::chrono::milliseconds(50));
  EXPECT_TRUE(consumed_while_producing);

  auto produced = (*producer)->Wait(std::chrono::seconds(120));
  ASSERT_TRUE(produced.ok()) << produced.status();
  EXPECT_EQ(*produced, 0) << *ReadFile(dir.Sub("producer.log"));
  auto consumed = (*consumer)->Wait(std::chrono::seconds(120));
  ASSERT_TRUE(consumed.ok()) << consumed.status();
  std::string log = *ReadFile(dir.Sub("consumer.log"));
  EXPECT_EQ(*consumed, 0) << log;
  EXPECT_THAT(log, HasSubstr("received=100000 unique=100000 duplicates=0 missing=0 foreign=0"));
  EXPECT_THAT(*ReadFile(dir.Sub("producer.log")), HasSubstr("produced=100000 failed=0"));
}

TEST(KafkaHarness, ConsumerReportsOffsetsLostToRetention) {
  // The checking consumer must not paper over a gap: produce far more than the
  // mock keeps in one partition, then read from the beginning.
  TempDir dir;
  auto mock = KafkaMock::Start(dir.path(), {{"small", 1}});
  ASSERT_TRUE(mock.ok()) << mock.status();
  auto produced = RunCommand({kKafkaToolPath, "produce", "--brokers", (*mock)->bootstrap(),
                              "--topic", "small", "--count", "20000", "--size", "600"},
                             dir.Sub("producer.log"), std::chrono::seconds(60));
  ASSERT_TRUE(produced.ok()) << produced.status();
  ASSERT_EQ(*produced, 0);
  auto consumed = RunCommand({kKafkaToolPath, "consume", "--brokers", (*mock)->bootstrap(),
                              "--topic", "small", "--count", "20000", "--timeout-s", "20"},
                             dir.Sub("consumer.log"), std::chrono::seconds(60));
  ASSERT_TRUE(consumed.ok()) << consumed.status();
  EXPECT_EQ(*consumed, 1);
  EXPECT_THAT(*ReadFile(dir.Sub("consumer.log")), HasSubstr("gap in partition 0: expected offset 0"));
}

}  // namespace
}  // namespace sluice::testing
