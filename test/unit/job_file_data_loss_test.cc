// Unit tests of a source's on_data_loss in job files and source specs
// (lib/engine/job_file.h, lib/source/source_connector.h): fail and skip are
// read, left out it stays empty (fail), anything else is refused naming the
// field.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/engine/job_file.h"
#include "lib/source/source_connector.h"

namespace sluice::engine {
namespace {

using ::testing::HasSubstr;

std::string Job(const std::string& policy_line) {
  return R"(name: j
sources:
  - name: clicks
    kind: kafka
    brokers: 127.0.0.1:9092
    topic: clicks
)" + policy_line + R"(
sink:
  file: {path: /tmp/out}
)";
}

TEST(JobFileDataLossTest, ReadsSkipAndFailAndLeavesItEmptyWhenNotGiven) {
  for (const std::string policy : {"skip", "fail"}) {
    Result<proto::JobSpec> job = ParseJobFile(Job("    on_data_loss: " + policy), "x.yaml");
    ASSERT_TRUE(job.ok()) << job.status();
    ASSERT_EQ(job->inline_sources_size(), 1);
    EXPECT_EQ(job->inline_sources(0).on_data_loss(), policy);
  }
  Result<proto::JobSpec> job = ParseJobFile(Job(""), "x.yaml");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->inline_sources(0).on_data_loss(), "");
}

TEST(JobFileDataLossTest, AnotherValueIsRefusedNamingTheFieldAndLine) {
  Result<proto::JobSpec> job = ParseJobFile(Job("    on_data_loss: ignore"), "x.yaml");
  ASSERT_FALSE(job.ok());
  EXPECT_THAT(std::string(job.status().message()),
              HasSubstr("x.yaml: line 7: sources[0].on_data_loss: 'ignore' is not fail or skip"));
}

TEST(JobFileDataLossTest, ASpecIsCheckedAsTheLeaderChecksIt) {
  proto::SourceSpec spec;
  spec.set_name("clicks");
  spec.set_kind(proto::SOURCE_KIND_GENERATOR);
  spec.set_partitions(1);
  spec.set_on_data_loss("skip");
  EXPECT_TRUE(source::NormalizeSourceSpec(&spec).ok());
  EXPECT_TRUE(source::SkipsLostData(spec));
  spec.set_on_data_loss("");
  EXPECT_TRUE(source::NormalizeSourceSpec(&spec).ok());
  EXPECT_FALSE(source::SkipsLostData(spec));
  EXPECT_EQ(spec.on_data_loss(), "");  // not filled in: a spec recorded before stays the same spec
  spec.set_on_data_loss("Skip");
  Status st = source::NormalizeSourceSpec(&spec);
  EXPECT_TRUE(absl::IsInvalidArgument(st));
  EXPECT_EQ(st.message(), "source 'clicks': on_data_loss: 'Skip' is not fail or skip");
}

}  // namespace
}  // namespace sluice::engine
