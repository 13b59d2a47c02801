// Limits on input against a real cluster (docs/security.md "Limits on
// input"): a SubmitJob whose filter is 100,000 nested parentheses, and its
// cousins, are INVALID_ARGUMENT from the leader, which stays up and leads;
// sluicectl submit of such a file prints the error and exits 2.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/driver_client.h"
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

std::string Repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

std::string Nested(int depth) { return Repeat("(", depth) + "a" + Repeat(")", depth); }

proto::JobSpec Spec(const std::string& filter) {
  proto::JobSpec spec;
  spec.set_name("deep");
  spec.set_batch_interval_ms(1000);
  spec.add_sources("clicks");
  spec.add_operators()->mutable_filter()->set_expr(filter);
  spec.mutable_sink()->mutable_null();
  return spec;
}

TEST(InputLimitsTest, TheLeaderRefusesHostileJobsAndStaysTheLeader) {
  TempDir dir("limits");
  auto started = LocalCluster::Start({.dir = dir.path(), .drivers = 2, .workers = 1});
  ASSERT_TRUE(started.ok()) << started.status();
  LocalCluster& cluster = **started;
  int leader = -1;
  ASSERT_TRUE(testing::WaitUntil([&] { return (leader = cluster.LeaderIndex()) >= 0; }, milliseconds(20'000),
                                 milliseconds(100)));
  rpc::DriverClient client(testing::Channels(), cluster.driver_address(leader));

  struct Case {
    std::string what;
    proto::JobSpec spec;
    std::string message;
  };
  std::vector<Case> cases = {
      {"100,000 nested parentheses", Spec(Nested(100'000)), "the expression is 200001 bytes, more than the limit"},
      {"parentheses within the length", Spec(Nested(3000)), "nests deeper than the limit of 64"},
      {"deep not", Spec(Repeat("not ", 2000) + "a"), "nests deeper than the limit of 64"},
      {"deep minus", Spec(Repeat("-", 8000) + "1"), "nests deeper than the limit of 64"},
      {"a huge string", Spec("a == '" + std::string(4 << 20, 'x') + "'"), "more than the limit of 1048576 bytes"},
  };
  proto::JobSpec config = Spec("a");
  auto* plugin = config.add_operators()->mutable_plugin();
  plugin->set_name("p");
  (*plugin->mutable_config())["k"] = std::string(100 << 10, 'v');
  cases.push_back({"a huge plugin config", config, "the plugin config is 102401 bytes"});

  for (const Case& c : cases) {
    proto::SubmitJobRequest request;
    *request.mutable_spec() = c.spec;
    Result<proto::SubmitJobResponse> r = client.SubmitJob(request);
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.what << ": " << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message)) << c.what;
  }
  // The leader is up and still leads: no new election, and it answers.
  ASSERT_NE(cluster.driver(leader), nullptr);
  EXPECT_TRUE(cluster.driver(leader)->Running());
  EXPECT_EQ(cluster.LeaderIndex(), leader);
  Result<proto::DriverStatus> status = testing::GetDriverStatus(cluster.driver_address(leader));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->role(), proto::DRIVER_ROLE_LEADER);

  // sluicectl submit of the same job as a file: the error, exit code 2, no crash.
  auto ctl = [&](const std::string& name, const std::string& text, const std::string& message) {
    const std::string path = dir.Sub(name);
    ASSERT_TRUE(testing::WriteFile(path, text).ok());
    const std::string log = dir.Sub(name + ".log");
    EXPECT_EQ(cluster.Sluicectl({"submit", path}, log), 2) << name;
    EXPECT_THAT(testing::ReadFile(log).value_or(""), HasSubstr(message)) << name;
  };
  ctl("deep.yaml", "name: deep\nsources: [clicks]\nsink: {null: {}}\noperators:\n  - filter: \"" + Nested(100'000) + "\"\n",
      "deep.yaml: line 5: operators[0].filter: the expression is 200001 bytes, more than the limit of 8192 bytes");
  ctl("deep-yaml.yaml", "name: deep\nsources: [clicks]\nsink: {null: {}}\noperators: " + Repeat("[", 100'000) + "\n",
      "deep-yaml.yaml: line 4: the job file nests 33 levels deep, more than the limit of 32");
  ctl("deep.json", Repeat("{\"a\": ", 100'000), "deep.json: line 1: the job file nests 33 levels deep");
  EXPECT_EQ(cluster.LeaderIndex(), leader);
}

}  // namespace
}  // namespace sluice
