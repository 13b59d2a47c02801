// Unit tests of the worker's probes (lib/worker/worker_probe.h): the
// receiver's lag behind the source's end, and the executor's task counts.
#include "lib/worker/worker_probe.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::worker {
namespace {

using ::testing::HasSubstr;

TEST(ReceiverLag, IsTheOffsetsBetweenTheReceiverAndTheSourcesEnd) {
  EXPECT_EQ(ReceiverLag(100, 250), 150);
  EXPECT_EQ(ReceiverLag(250, 250), 0);
  // The watermark heard before the receiver's last block was stored.
  EXPECT_EQ(ReceiverLag(300, 250), 0);
  // Unknown: no fetch answered yet, or a source without an end.
  EXPECT_EQ(ReceiverLag(100, -1), -1);
  EXPECT_EQ(ReceiverLag(-1, 250), -1);
}

TEST(ExecutorProbe, CountsTasksByStageAndTheirFailures) {
  metrics::Registry registry;
  auto probe = ExecutorProbe::Create(&registry);
  ASSERT_TRUE(probe.ok()) << probe.status();
  proto::TaskRequest map;
  proto::TaskRequest reduce;
  reduce.set_stage(proto::TASK_STAGE_REDUCE);
  proto::TaskResult ok;
  ok.set_input(10);
  ok.set_output(4);
  ok.set_shuffle_bytes(1000);
  (*probe)->TaskDone(map, ok, 0.2);
  (*probe)->TaskDone(map, absl::UnavailableError("no worker"), 0.1);
  (*probe)->TaskDone(reduce, ok, 0.3);
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("sluice_executor_tasks_total{stage=\"map\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("sluice_executor_tasks_failed_total{stage=\"map\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_executor_tasks_total{stage=\"reduce\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_executor_tasks_failed_total{stage=\"reduce\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("sluice_executor_input_records_total 20\n"));
  EXPECT_THAT(text, HasSubstr("sluice_executor_shuffle_bytes_total 2000\n"));
  EXPECT_THAT(text, HasSubstr("sluice_executor_task_seconds_count{stage=\"map\"} 2\n"));
}

}  // namespace
}  // namespace sluice::worker
