// KafkaSource against the Kafka mock broker process: exact offset ranges
// into blocks, contiguous and complete; the same range read twice gives the
// same bytes (lineage); offsets lost to retention are an error naming the
// partition and the range of offsets, never skipped.
#include "lib/source/kafka_source.h"

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/harness/kafka_mock.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice::source {
namespace {

using ::testing::HasSubstr;
using testing::KafkaMock;
using testing::TempDir;

void Produce(const TempDir& dir, const std::string& brokers, const std::string& topic, int count) {
  auto rc = testing::RunCommand({testing::kKafkaToolPath, "produce", "--brokers", brokers, "--topic",
                                 topic, "--count", std::to_string(count), "--size", "600"},
                                dir.Sub("produce-" + topic + ".log"), std::chrono::seconds(60));
  ASSERT_TRUE(rc.ok()) << rc.status();
  ASSERT_EQ(*rc, 0);
}

TEST(KafkaSource, ReadsExactRangesIntoContiguousBlocks) {
  TempDir dir;
  auto mock = KafkaMock::Start(dir.path(), {{"events", 4}});
  ASSERT_TRUE(mock.ok()) << mock.status();
  Produce(dir, (*mock)->bootstrap(), "events", 8000);
  auto source = KafkaSource::Create({.name = "events", .brokers = (*mock)->bootstrap(), .topic = "events"});
  ASSERT_TRUE(source.ok()) << source.status();
  auto partitions = (*source)->Partitions();
  ASSERT_TRUE(partitions.ok()) << partitions.status();
  ASSERT_EQ(*partitions, 4);
  std::set<std::string> ids;
  int64_t total = 0;
  for (int32_t p = 0; p < 4; ++p) {
    auto marks = (*source)->Watermarks(p);
    ASSERT_TRUE(marks.ok()) << marks.status();
    EXPECT_EQ(marks->first, 0);
    format::BlockBuilder builder("events", p, 0);
    while (builder.next_offset() < marks->second) {
      auto n = (*source)->ReadInto(p, marks->second, 700, 2000, &builder);
      ASSERT_TRUE(n.ok()) << n.status();
      if (builder.records() >= 700 || builder.next_offset() == marks->second) {
        format::Block block = builder.Cut();
        EXPECT_LE(block.records(), 700);
        ASSERT_TRUE(block.ForEach([&](std::string_view r) {
                             ids.insert(std::string(r.substr(0, r.find(';'))));
                           }).ok());
        total += block.records();
      }
    }
  }
  EXPECT_EQ(total, 8000);
  EXPECT_EQ(ids.size(), 8000u);  // every message exactly once

  // Lineage: [100, 250) of partition 2, read again, is byte-identical.
  auto read_range = [&](int64_t from, int64_t to) {
    format::BlockBuilder b("events", 2, from);
    while (b.next_offset() < to) {
      auto n = (*source)->ReadInto(2, to, 1000, 2000, &b);
      EXPECT_TRUE(n.ok()) << n.status();
      if (!n.ok()) break;
    }
    return b.Cut();
  };
  format::Block first = read_range(100, 250);
  format::Block again = read_range(100, 250);
  EXPECT_EQ(first.records(), 150);
  EXPECT_EQ(first.data(), again.data());
  EXPECT_EQ(again.lineage().end_offset, 250);
}

TEST(KafkaSource, OffsetsLostToRetentionAreAnErrorNamingThem) {
  TempDir dir;
  auto mock = KafkaMock::Start(dir.path(), {{"small", 1}});
  ASSERT_TRUE(mock.ok()) << mock.status();
  Produce(dir, (*mock)->bootstrap(), "small", 20000);  // 12 MB: more than the mock keeps
  auto source = KafkaSource::Create({.name = "small", .brokers = (*mock)->bootstrap(), .topic = "small"});
  ASSERT_TRUE(source.ok());
  auto marks = (*source)->Watermarks(0);
  ASSERT_TRUE(marks.ok()) << marks.status();
  ASSERT_GT(marks->first, 0) << "the mock kept everything; the test needs retention to bite";
  format::BlockBuilder builder("small", 0, 0);
  Result<int64_t> n = int64_t{0};
  for (int i = 0; i < 10 && n.ok() && *n == 0; ++i) n = (*source)->ReadInto(0, marks->second, 100, 2000, &builder);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), absl::StatusCode::kDataLoss);
  // The range is named: from the reader's offset to the broker's first.
  EXPECT_THAT(std::string(n.status().message()),
              HasSubstr(fmt::format("small[0] offsets 0..{} are no longer held", marks->first - 1)));
  EXPECT_EQ(builder.records(), 0);
}

TEST(KafkaSource, BadSettingIsAClearError) {
  auto source = KafkaSource::Create({.name = "x", .brokers = "127.0.0.1:1", .topic = "t",
                                     .consumer_config = {{"no.such.setting", "1"}}});
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(source.status().message()), HasSubstr("no.such.setting"));
}

}  // namespace
}  // namespace sluice::source
