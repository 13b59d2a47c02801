// Jobs through sluicectl against real processes (issue 6, first step): a job
// file is checked, submitted, committed in the replicated WAL, survives a
// leader kill, and stops; mistakes are refused with their file, line and
// field, and nothing of a refused job is left behind.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using std::chrono::milliseconds;
using testing::LocalCluster;
using testing::TempDir;

struct CtlRun {
  int code;
  std::string output;
};

class JobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = LocalCluster::Start({.dir = dir_.path(), .drivers = 3, .workers = 1});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
  }

  CtlRun Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {testing::kSluicectlPath, "--coordinator", cluster_->coordinator()};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = dir_.Sub("ctl" + std::to_string(runs_++) + ".log");
    Result<int> code = testing::RunCommand(argv, log, std::chrono::seconds(30));
    return {code.ok() ? *code : -1, testing::ReadFile(log).value_or("")};
  }

  std::string JobFile(const std::string& name, const std::string& text) {
    const std::string path = dir_.Sub(name);
    EXPECT_TRUE(testing::WriteFile(path, text).ok());
    return path;
  }

  // Waits for a serving leader (sluicectl list answers).
  void WaitForLeader() {
    ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"list"}).code == 0; }, milliseconds(20'000), milliseconds(200)));
  }

  TempDir dir_{"jobs"};
  std::unique_ptr<LocalCluster> cluster_;
  int runs_ = 0;
};

constexpr const char* kJob = R"(name: nl-clicks
batch_interval: 1s
sources:
  - name: clicks
    kind: generator
    partitions: 2
    rate: 1000
operators:
  - parse: {format: json}
  - filter: "key == 'k1' or v > 10"
  - project: {fields: [id, key, v]}
sink:
  null:
)";

TEST_F(JobsTest, SubmitListDescribeStopAcrossALeaderKill) {
  WaitForLeader();
  const std::string file = JobFile("nl.yaml", kJob);
  CtlRun submit = Ctl({"submit", file});
  ASSERT_EQ(submit.code, 0) << submit.output;
  EXPECT_EQ(submit.output, "nl-clicks\n");
  CtlRun list = Ctl({"list"});
  EXPECT_THAT(list.output, HasSubstr("nl-clicks           running   1000ms"));
  // The job's inline source was declared with it.
  EXPECT_THAT(Ctl({"sources"}).output, HasSubstr("clicks"));

  // Committed in the replicated WAL: the next leader has it.
  for (int i = 0; i < cluster_->num_drivers(); ++i) {
    Result<proto::DriverStatus> st = testing::GetDriverStatus(cluster_->driver_address(i));
    if (st.ok() && st->role() == proto::DRIVER_ROLE_LEADER) cluster_->KillDriver(i);
  }
  WaitForLeader();
  CtlRun describe = Ctl({"describe", "nl-clicks"});
  ASSERT_EQ(describe.code, 0) << describe.output;
  EXPECT_THAT(describe.output, HasSubstr("running"));
  EXPECT_THAT(describe.output, HasSubstr("file:       " + file));
  EXPECT_THAT(describe.output, HasSubstr("line 10: filter { expr: \"key == \\'k1\\' or v > 10\" }"));
  EXPECT_THAT(describe.output, HasSubstr("sink:       null {"));

  CtlRun again = Ctl({"submit", file});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.output, HasSubstr("job nl-clicks exists (running)"));

  CtlRun stop = Ctl({"stop", "nl-clicks", "--reason", "test over"});
  ASSERT_EQ(stop.code, 0) << stop.output;
  describe = Ctl({"describe", "nl-clicks"});
  EXPECT_THAT(describe.output, HasSubstr("stopped"));
  EXPECT_THAT(describe.output, HasSubstr("test over"));
  EXPECT_EQ(Ctl({"describe", "no-such-job"}).code, 1);
}

TEST_F(JobsTest, ARefusedJobNamesItsMistakeAndLeavesNothingBehind) {
  WaitForLeader();
  // Caught by sluicectl before the cluster is asked.
  CtlRun bad = Ctl({"submit", JobFile("bad.yaml", "name: j\nsources: [clicks]\nsink: {null: {}}\noperators:\n"
                                               "  - filter: {expr: \"amount >\"}\n")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.output, HasSubstr("bad.yaml: line 5: operators[0].filter.expr: column 9: expected a value"));
  // Caught by the leader: a source nobody declared, or an invalid inline source.
  bad = Ctl({"submit", JobFile("nosource.yaml", "name: j\nsources: [nope]\nsink: {null: {}}\n")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.output, HasSubstr("nosource.yaml: sources: no source named 'nope'"));
  bad = Ctl({"submit", JobFile("badsource.yaml", "name: j\nsources:\n  - {name: k, kind: kafka}\nsink: {null: {}}\n")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.output, HasSubstr("kafka brokers are required"));
  EXPECT_EQ(Ctl({"submit", dir_.Sub("missing.yaml")}).code, 1);
  CtlRun list = Ctl({"list"});
  EXPECT_EQ(list.code, 0);
  EXPECT_THAT(list.output, ::testing::Not(HasSubstr("running")));  // no job was half-started
}

}  // namespace
}  // namespace sluice
