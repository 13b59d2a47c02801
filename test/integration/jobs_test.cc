// Jobs through sluicectl against real processes: a job
// file is checked, submitted, committed in the replicated WAL, survives a
// leader kill, and stops; mistakes are refused with their file, line and
// field, and nothing of a refused job is left behind.
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/driver_client.h"
#include "lib/source/generator_source.h"
#include "test/harness/certs.h"
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
    // Plugins from the examples' build directory and from <dir>/plugins;
    // output under <dir>.
    auto cluster = LocalCluster::Start({.dir = dir_.path(),
                                        .drivers = 3,
                                        .workers = 1,
                                        .plugin_dirs = std::string(testing::kPluginDir) + "," + dir_.Sub("plugins")});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
  }

  CtlRun Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {testing::kSluicectlPath, "--coordinator", cluster_->coordinator()};
    for (std::string& f : testing::TlsFlags("admin")) argv.push_back(std::move(f));
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = dir_.Sub("ctl" + std::to_string(runs_++) + ".log");
    Result<int> code = testing::RunCommand(argv, log, std::chrono::seconds(30));
    return {code.ok() ? *code : -1, testing::ReadFile(log).value_or("")};
  }

  // docs/examples/<name>, writing under <dir>/output instead of the
  // packaged output-dirs.
  std::string Example(const std::string& name) {
    std::string text = testing::ReadFile(std::string(testing::kSourceDir) + "/docs/examples/" + name).value_or("");
    for (size_t at; (at = text.find(kPackagedOutput)) != std::string::npos;) {
      text.replace(at, std::string_view(kPackagedOutput).size(), dir_.Sub("output"));
    }
    return JobFile(name, text);
  }
  static constexpr const char* kPackagedOutput = "/var/lib/sluice/output";

  std::string JobFile(const std::string& name, const std::string& text) {
    const std::string path = dir_.Sub(name);
    EXPECT_TRUE(testing::WriteFile(path, text).ok());
    return path;
  }

  // The job's last committed batch, from sluicectl list (-1 if not listed).
  int64_t Committed(const std::string& job) {
    std::istringstream lines(Ctl({"list"}).output);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream cols(line);
      std::string id, state, interval;
      int64_t planned = 0, committed = 0;
      if (cols >> id >> state >> interval >> planned >> committed && id == job) return committed;
    }
    return -1;
  }

  // The leader's whole committed WAL (the tests write far fewer than 10,000 records).
  void ReadLeaderWal(proto::ReadWalResponse* wal) {
    std::string leader;
    for (int i = 0; i < cluster_->num_drivers(); ++i) {
      Result<proto::DriverStatus> st = testing::GetDriverStatus(cluster_->driver_address(i));
      if (st.ok() && st->role() == proto::DRIVER_ROLE_LEADER) leader = cluster_->driver_address(i);
    }
    ASSERT_FALSE(leader.empty());
    proto::ReadWalRequest request;
    request.set_from_seq(1);
    request.set_max_records(10'000);
    Result<proto::ReadWalResponse> read = rpc::DriverClient(testing::Channels(), leader).ReadWal(request);
    ASSERT_TRUE(read.ok()) << read.status();
    *wal = *std::move(read);
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
  EXPECT_THAT(bad.output, HasSubstr("source 'k': kafka.brokers: must not be empty"));
  // A valid job of a shape this release cannot run: refused by the leader.
  bad = Ctl({"submit", JobFile("keyed.yaml", "name: j\nsources: [clicks]\nsink: {null: {}}\noperators:\n"
                                             "  - parse: {format: json}\n  - key_by: user\n"
                                             "  - aggregate: [{fn: count}]\n  - filter: \"count > 1\"\n")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.output, HasSubstr("keyed.yaml: line 8: operators[3]: the keyed stage (key_by ... "
                                    "aggregate/update_state) must be the job's last operators"));
  EXPECT_EQ(Ctl({"submit", dir_.Sub("missing.yaml")}).code, 1);
  CtlRun list = Ctl({"list"});
  EXPECT_EQ(list.code, 0);
  EXPECT_THAT(list.output, ::testing::Not(HasSubstr("running")));  // no job was half-started
}

// The worked example of docs/jobs.md is a job the cluster takes.
TEST_F(JobsTest, TheDocumentedExampleRuns) {
  WaitForLeader();
  CtlRun submit = Ctl({"submit", Example("clicks.yaml")});
  ASSERT_EQ(submit.code, 0) << submit.output;
  EXPECT_EQ(submit.output, "clicks\n");
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return Ctl({"describe", "clicks"}).output.find("running   1000ms    1") != std::string::npos; },
      milliseconds(20'000), milliseconds(200)))
      << Ctl({"describe", "clicks"}).output;
  EXPECT_THAT(Ctl({"sources"}).output, HasSubstr("click-stream"));
  EXPECT_EQ(Ctl({"stop", "clicks"}).code, 0);
}

// The keyed examples of docs/jobs.md run as documented: windows emitted
// with every aggregation, running totals that only grow.
TEST_F(JobsTest, TheDocumentedKeyedExamplesRun) {
  WaitForLeader();
  for (const std::string job : {"clicks-per-user", "running-totals"}) {
    CtlRun submit = Ctl({"submit", Example(job + ".yaml")});
    ASSERT_EQ(submit.code, 0) << submit.output;
  }
  // Lines of the files a job has written so far.
  auto lines_of = [](const std::string& dir) {
    std::vector<std::string> lines;
    if (!std::filesystem::exists(dir)) return lines;
    for (const auto& f : std::filesystem::directory_iterator(dir)) {
      if (!f.is_regular_file() || f.path().filename().string().starts_with(".")) continue;
      std::istringstream in(testing::ReadFile(f.path().string()).value_or(""));
      for (std::string line; std::getline(in, line);) lines.push_back(line);
    }
    return lines;
  };
  // Windows close once the watermark (max event time - 1 s) passes their end + 1 s.
  ASSERT_TRUE(testing::WaitUntil([&] { return lines_of(dir_.Sub("output/clicks-per-user")).size() >= 50; },
                                 milliseconds(30'000), milliseconds(500)))
      << Ctl({"describe", "clicks-per-user"}).output;
  for (const std::string& line : lines_of(dir_.Sub("output/clicks-per-user"))) {
    EXPECT_THAT(line, ::testing::MatchesRegex(R"(\{"key":\["k[0-9]{8}"\],"window_start":[0-9]+,"window_end":[0-9]+,)"
                                              R"("count":[0-9]+,"avg_v":[0-9.e+]+,"max_v":[0-9]+,"ids":[0-9]+\})"));
  }
  ASSERT_TRUE(testing::WaitUntil([&] { return lines_of(dir_.Sub("output/running-totals")).size() >= 30; },
                                 milliseconds(30'000), milliseconds(500)));
  CtlRun describe = Ctl({"describe", "running-totals"});
  EXPECT_THAT(describe.output, HasSubstr("state:      10 keys"));
  for (const std::string job : {"clicks-per-user", "running-totals"}) EXPECT_EQ(Ctl({"stop", job}).code, 0);
}

// A plugin is loaded by the workers by its name from their plugin-dirs and
// runs as a step of the pipeline; the file sink writes CSV when asked. A job whose
// task keeps failing (its sink directory cannot be made) is stopped as
// FAILED with the task's error after max_task_failures attempts, and
// nothing is committed past it.
TEST_F(JobsTest, APluginRunsOnTheWorkersAndAFailingTaskFailsTheJob) {
  WaitForLeader();
  const std::string out = dir_.Sub("shout");
  CtlRun submit = Ctl({"submit", JobFile("shout.yaml", fmt::format(R"(name: shout
batch_interval: 300ms
sources:
  - {{name: ev, kind: generator, partitions: 1, rate: 500, keys: 3}}
operators:
  - parse: {{format: json}}
  - plugin: {{name: uppercase_plugin, config: {{field: key, as: shouted}}}}
  - project: {{fields: [key, shouted]}}
sink:
  file: {{path: {}, format: csv}}
)",
                                                                   out))});
  ASSERT_EQ(submit.code, 0) << submit.output;
  ASSERT_TRUE(testing::WaitUntil([&] { return Committed("shout") >= 3; }, milliseconds(30'000), milliseconds(300)))
      << Ctl({"describe", "shout"}).output;
  ASSERT_EQ(Ctl({"stop", "shout"}).code, 0);
  int64_t rows = 0;
  for (const auto& f : std::filesystem::directory_iterator(out)) {
    EXPECT_TRUE(f.path().string().ends_with(".csv")) << f.path();
    std::istringstream lines(testing::ReadFile(f.path().string()).value_or(""));
    for (std::string line; std::getline(lines, line); ++rows) {
      ASSERT_THAT(line, ::testing::MatchesRegex("k0000000[0-2],K0000000[0-2]")) << f.path();
      EXPECT_EQ(line[8], line[18]);
    }
  }
  EXPECT_GT(rows, 0);

  // A regular file where the sink's directory should be: every attempt fails.
  ASSERT_TRUE(testing::WriteFile(dir_.Sub("not-a-dir"), "").ok());
  submit = Ctl({"submit", JobFile("doomed.yaml", fmt::format(R"(name: doomed
batch_interval: 300ms
max_task_failures: 2
sources: [ev]
sink:
  file: {{path: {}/out}}
)",
                                                             dir_.Sub("not-a-dir")))});
  ASSERT_EQ(submit.code, 0) << submit.output;
  ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"describe", "doomed"}).output.find("stopped") != std::string::npos; },
                                 milliseconds(30'000), milliseconds(300)));
  const std::string described = Ctl({"describe", "doomed"}).output;
  EXPECT_THAT(described, HasSubstr("stopped:    FAILED: UNAVAILABLE: batch 1 task 0: file sink: cannot create"));
  EXPECT_EQ(Committed("doomed"), 0) << described;
}

// Confinement (docs/security.md "Confined user code and output"): a plugin
// given by path, a sink or dead-letter directory outside output-dirs or with
// "..", are refused at submit, by sluicectl and by the leader itself; a
// plugin named in a plugin dir runs; a plugin dir's symlink to a library
// elsewhere, and an output dir's symlink to a directory elsewhere, pass the
// leader's lexical check but fail the job on the worker, with the reason in
// describe.
TEST_F(JobsTest, PluginsAndOutputStayInTheirConfiguredDirectories) {
  WaitForLeader();
  auto job = [&](const std::string& name, const std::string& operators, const std::string& sink,
                 const std::string& extra = "") {
    return JobFile(name + ".yaml", "name: " + name + "\nbatch_interval: 300ms\nmax_task_failures: 1\n" + extra +
                                       "sources:\n  - {name: cev, kind: generator, partitions: 1, rate: 200, keys: 3}\n"
                                       "operators:\n  - parse: {format: json}\n" +
                                       operators + "sink:\n  " + sink + "\n");
  };
  CtlRun bad = Ctl({"submit", job("evil", "  - plugin: {path: /tmp/evil.so}\n", "null: {}")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.output, HasSubstr("evil.yaml: line 8: operators[1].plugin.path: '/tmp/evil.so' is a path: plugins "
                                    "are loaded by name from the workers' plugin-dirs: use name: evil and install the "
                                    "library in one of them"));
  // The same from a client that skips sluicectl's checks: the leader refuses it.
  std::string leader;
  for (int i = 0; i < cluster_->num_drivers(); ++i) {
    Result<proto::DriverStatus> st = testing::GetDriverStatus(cluster_->driver_address(i));
    if (st.ok() && st->role() == proto::DRIVER_ROLE_LEADER) leader = cluster_->driver_address(i);
  }
  ASSERT_FALSE(leader.empty());
  proto::SubmitJobRequest request;
  request.mutable_spec()->set_name("evil");
  request.mutable_spec()->set_batch_interval_ms(300);
  request.mutable_spec()->add_sources("cev");
  request.mutable_spec()->mutable_sink()->mutable_null();
  request.mutable_spec()->add_operators()->mutable_plugin()->set_path("/tmp/evil.so");
  Result<proto::SubmitJobResponse> direct = rpc::DriverClient(testing::Channels(), leader).SubmitJob(request);
  EXPECT_EQ(direct.status().code(), absl::StatusCode::kInvalidArgument) << direct.status();
  EXPECT_THAT(std::string(direct.status().message()), HasSubstr("'/tmp/evil.so' is a path: plugins are loaded by name"));

  const std::string elsewhere = "/tmp/sluice-outside-" + std::to_string(::getpid());
  bad = Ctl({"submit", job("outside", "", "file: {path: " + elsewhere + "}")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.output, HasSubstr("outside.yaml: sink.file.path: '" + elsewhere +
                                    "' is outside output-dirs: file sinks and dead letters write at or under one of " +
                                    dir_.path()));
  bad = Ctl({"submit", job("dotdot", "", "file: {path: " + dir_.Sub("out/../../etc") + "}")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.output, HasSubstr("has a '..' component, which is never allowed"));
  bad = Ctl({"submit", job("dead", "", "null: {}", "dead_letters: " + elsewhere + "\n")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.output, HasSubstr("dead.yaml: dead_letters: '" + elsewhere + "' is outside output-dirs"));
  EXPECT_FALSE(std::filesystem::exists(elsewhere));

  // By name, from the second plugin dir (a copy of the example there).
  std::filesystem::create_directories(dir_.Sub("plugins"));
  std::filesystem::copy_file(std::string(testing::kPluginDir) + "/uppercase_plugin.so", dir_.Sub("plugins/libshout.so"));
  CtlRun ok = Ctl({"submit", job("named", "  - plugin: {name: shout, config: {field: key}}\n",
                                 "file: {path: " + dir_.Sub("named") + "}")});
  ASSERT_EQ(ok.code, 0) << ok.output;
  // Until a committed batch wrote something: under load the first batches may
  // be empty (the generator's first blocks not yet reported).
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        std::error_code ec;
        return Committed("named") >= 2 && std::filesystem::exists(dir_.Sub("named"), ec) &&
               !std::filesystem::is_empty(dir_.Sub("named"), ec);
      },
      milliseconds(30'000), milliseconds(300)))
      << Ctl({"describe", "named"}).output;
  ASSERT_EQ(Ctl({"stop", "named"}).code, 0);
  std::string written;
  for (const auto& f : std::filesystem::directory_iterator(dir_.Sub("named"))) {
    if (f.is_regular_file()) written += testing::ReadFile(f.path().string()).value_or("");
  }
  EXPECT_THAT(written, ::testing::ContainsRegex("\"key\":\"K0000000[0-2]\""));

  // A name no plugin dir has: the task fails with a clear error, the worker lives on.
  ok = Ctl({"submit", job("missing", "  - plugin: {name: nothere}\n", "null: {}")});
  ASSERT_EQ(ok.code, 0) << ok.output;
  ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"describe", "missing"}).output.find("stopped") != std::string::npos; },
                                 milliseconds(30'000), milliseconds(300)));
  EXPECT_THAT(Ctl({"describe", "missing"}).output,
              HasSubstr("operators[1].plugin: plugin 'nothere': no nothere.so or libnothere.so in plugin-dirs " +
                        std::string(testing::kPluginDir) + ", " + dir_.Sub("plugins") + " on this worker"));
  ASSERT_NE(cluster_->worker(0), nullptr);
  EXPECT_TRUE(cluster_->worker(0)->Running());

  // A symlink out of the plugin dir: accepted by name, refused by the worker.
  TempDir outside("confine-outside");
  std::filesystem::copy_file(std::string(testing::kPluginDir) + "/uppercase_plugin.so", outside.Sub("evil.so"));
  std::filesystem::create_symlink(outside.Sub("evil.so"), dir_.Sub("plugins/evil.so"));
  ok = Ctl({"submit", job("linked", "  - plugin: {name: evil, config: {field: key}}\n", "null: {}")});
  ASSERT_EQ(ok.code, 0) << ok.output;
  ASSERT_TRUE(testing::WaitUntil([&] { return Ctl({"describe", "linked"}).output.find("stopped") != std::string::npos; },
                                 milliseconds(30'000), milliseconds(300)));
  std::string described = Ctl({"describe", "linked"}).output;
  EXPECT_THAT(described, HasSubstr("FAILED: FAILED_PRECONDITION: batch 1 task 0: "));
  EXPECT_THAT(described, HasSubstr("operators[1].plugin: plugin 'evil': " + dir_.Sub("plugins/evil.so") + " is " +
                                   std::filesystem::canonical(outside.Sub("evil.so")).string() +
                                   ", outside the plugin dir"));
  EXPECT_EQ(Committed("linked"), 0);

  // A symlink out of the output dir: the worker writes nothing through it.
  std::filesystem::create_directory_symlink(outside.path(), dir_.Sub("escape"));
  ok = Ctl({"submit", job("escaped", "", "file: {path: " + dir_.Sub("escape/out") + "}")});
  ASSERT_EQ(ok.code, 0) << ok.output;
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return Ctl({"describe", "escaped"}).output.find("stopped") != std::string::npos; }, milliseconds(30'000),
      milliseconds(300)));
  described = Ctl({"describe", "escaped"}).output;
  EXPECT_THAT(described, HasSubstr(dir_.Sub("escape/out") + " is " +
                                   std::filesystem::canonical(outside.path()).string() +
                                   "/out on this worker, outside output-dirs"));
  EXPECT_FALSE(std::filesystem::exists(outside.Sub("out")));
}

// A cluster whose daemons have neither plugin-dirs nor output-dirs refuses
// every plugin and every file sink or dead-letter directory at submit,
// naming the option; jobs that need neither still run.
TEST(JobsWithoutConfinementDirs, PluginsFileSinksAndDeadLettersAreRefusedNamingTheOption) {
  TempDir dir("confine-none");
  auto started = LocalCluster::Start({.dir = dir.path(), .drivers = 1, .workers = 1, .plugin_dirs = "", .output_dirs = ""});
  ASSERT_TRUE(started.ok()) << started.status();
  LocalCluster& cluster = **started;
  ASSERT_TRUE(testing::WaitUntil([&] { return cluster.LeaderIndex() >= 0; }, milliseconds(20'000), milliseconds(100)));
  auto submit = [&](const std::string& name, const std::string& rest) {
    const std::string path = dir.Sub(name + ".yaml");
    EXPECT_TRUE(testing::WriteFile(path, "name: " + name + "\nsources:\n  - {name: g, kind: generator, partitions: 1}\n" + rest).ok());
    const std::string log = dir.Sub(name + ".log");
    const int code = cluster.Sluicectl({"submit", path}, log);
    return CtlRun{code, testing::ReadFile(log).value_or("")};
  };
  CtlRun r = submit("p", "operators:\n  - plugin: {name: uppercase_plugin, config: {field: key}}\nsink: {null: {}}\n");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("operators[0].plugin.name: plugin 'uppercase_plugin' refused: this cluster loads no "
                                  "plugins; an operator sets plugin-dirs on the drivers and workers"));
  r = submit("f", "sink: {file: {path: " + dir.Sub("out") + "}}\n");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("sink.file.path: '" + dir.Sub("out") + "' refused: this cluster writes no files; an "
                                  "operator sets output-dirs on the drivers and workers"));
  r = submit("d", "dead_letters: " + dir.Sub("dl") + "\nsink: {null: {}}\n");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.output, HasSubstr("dead_letters: '" + dir.Sub("dl") + "' refused: this cluster writes no files"));
  r = submit("n", "sink: {null: {}}\n");
  EXPECT_EQ(r.code, 0) << r.output;
}

// End to end: generated JSON events, filtered and projected by tasks on the
// workers, into the file sink; every committed batch's output holds exactly
// the events of its ranges that pass the filter — checked against the
// generator's own text — once each.
TEST_F(JobsTest, BatchesRunOnWorkersIntoTheFileSinkExactlyOnce) {
  WaitForLeader();
  const std::string out = dir_.Sub("out");
  CtlRun submit = Ctl({"submit", JobFile("e2e.yaml", fmt::format(R"(name: e2e
batch_interval: 300ms
sources:
  - {{name: ev, kind: generator, partitions: 2, rate: 3000, keys: 10, payload_bytes: 200}}
operators:
  - parse: {{format: json}}
  - filter: "key == 'k00000003'"
  - project: {{fields: [id, key]}}
sink:
  file: {{path: {}}}
)", out))});
  ASSERT_EQ(submit.code, 0) << submit.output;
  ASSERT_TRUE(testing::WaitUntil([&] { return Committed("e2e") >= 4; }, milliseconds(30'000), milliseconds(300)))
      << Ctl({"describe", "e2e"}).output;
  // describe shows each committed batch's counts and its delays.
  const std::string described = Ctl({"describe", "e2e"}).output;
  EXPECT_THAT(described, HasSubstr("SCHED_DELAY PROCESSING  TOTAL_DELAY TASKS")) << described;
  EXPECT_THAT(described, ::testing::ContainsRegex("\n    [0-9]+ +[1-9][0-9]* +[0-9]+ +0 +[0-9]+ +[0-9]+ +[0-9]+ +[1-9]")) << described;
  ASSERT_EQ(Ctl({"stop", "e2e"}).code, 0);

  // The committed batches and their ranges, from the WAL.
  proto::ReadWalResponse wal;
  ASSERT_NO_FATAL_FAILURE(ReadLeaderWal(&wal));
  std::map<int64_t, proto::BatchPlanned> planned;
  std::set<int64_t> committed;
  proto::SourceSpec source;
  for (const proto::DriverLogEntry& e : wal.records()) {
    const proto::DriverRecord& r = e.record();
    if (r.has_batch_planned() && r.batch_planned().job_id() == "e2e") planned[r.batch_planned().batch_id()] = r.batch_planned();
    if (r.has_batch_committed() && r.batch_committed().job_id() == "e2e") committed.insert(r.batch_committed().batch_id());
    if (r.has_source_registered() && r.source_registered().spec().name() == "ev") source = r.source_registered().spec();
  }
  ASSERT_GE(committed.size(), 3u);
  source::GeneratorSource gen({.name = "ev",
                               .seed = source.generator().seed(),
                               .partitions = 2,
                               .rate_per_partition = source.generator().rate_per_partition(),
                               .num_keys = source.generator().num_keys(),
                               .payload_size = source.generator().payload_bytes(),
                               .available_from_unix_ms = source.generator().available_from_unix_ms()},
                              Clock::Real());
  std::set<std::string> expected;
  for (int64_t b : committed) {
    for (const proto::PartitionRange& r : planned[b].ranges()) {
      for (int64_t o = r.start_offset(); o < r.end_offset(); ++o) {
        const std::string e = gen.EventString(r.partition(), o);
        if (e.find("\"key\":\"k00000003\"") != std::string::npos) {
          expected.insert(e.substr(0, e.find("\",\"key\"") + 1));  // {"id":"pppp-oooooooooooo"
        }
      }
    }
  }
  ASSERT_FALSE(expected.empty());
  // Every output line of a committed batch, once.
  std::multiset<std::string> seen;
  for (int64_t b : committed) {
    for (int t = 0; t < planned[b].ranges_size(); ++t) {
      const std::string path = fmt::format("{}/e2e-batch-{:08d}-part-{:04d}.jsonl", out, b, t);
      Result<std::string> text = testing::ReadFile(path);
      ASSERT_TRUE(text.ok()) << path;
      std::istringstream lines(*text);
      for (std::string line; std::getline(lines, line);) {
        EXPECT_THAT(line, ::testing::EndsWith(",\"key\":\"k00000003\"}"));
        seen.insert(line.substr(0, line.find("\",\"key\"") + 1));
      }
    }
  }
  EXPECT_EQ(seen.size(), expected.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);
  // No temporary files left behind by the sink.
  for (const auto& f : std::filesystem::directory_iterator(out)) {
    EXPECT_FALSE(f.path().filename().string().ends_with(".tmp")) << f.path();
  }
}

// Batches are planned from the accepted blocks: consecutive, contiguous per
// partition, committed in the WAL, no more than max_batches_in_flight ahead
// of the last committed one.
TEST_F(JobsTest, BatchesArePlannedContiguouslyFromAcceptedBlocks) {
  WaitForLeader();
  CtlRun submit = Ctl({"submit", JobFile("gen.yaml", R"(name: planned
batch_interval: 300ms
max_batches_in_flight: 3
sources:
  - {name: gen, kind: generator, partitions: 2, rate: 2000}
sink: {null: {}}
)")});
  ASSERT_EQ(submit.code, 0) << submit.output;
  // Batches commit as they run (a null sink); planned-but-not-committed
  // never exceeds max_batches_in_flight.
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        std::istringstream cols(Ctl({"list"}).output.substr(Ctl({"list"}).output.find("planned ")));
        std::string id, state, interval;
        int64_t p = 0, c = 0;
        cols >> id >> state >> interval >> p >> c;
        EXPECT_LE(p - c, 3) << "planned " << p << " committed " << c;
        return c >= 3;
      },
      milliseconds(20'000), milliseconds(200)));
  // The first batches may be empty (the receivers start after the submit);
  // wait until a batch with data has committed too.
  proto::ReadWalResponse wal;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        wal.Clear();
        ReadLeaderWal(&wal);
        std::set<int64_t> committed;
        for (const proto::DriverLogEntry& e : wal.records()) {
          if (e.record().has_batch_committed() && e.record().batch_committed().job_id() == "planned") {
            committed.insert(e.record().batch_committed().batch_id());
          }
        }
        for (const proto::DriverLogEntry& e : wal.records()) {
          const proto::DriverRecord& r = e.record();
          if (r.has_batch_planned() && r.batch_planned().job_id() == "planned" &&
              r.batch_planned().ranges_size() > 0 && committed.contains(r.batch_planned().batch_id())) {
            return true;
          }
        }
        return false;
      },
      milliseconds(20'000), milliseconds(200)));
  ASSERT_FALSE(HasFatalFailure());
  std::vector<proto::BatchPlanned> batches;
  std::map<int, std::vector<proto::BlockInfo>> blocks;  // accepted, per partition
  for (const proto::DriverLogEntry& e : wal.records()) {
    const proto::DriverRecord& r = e.record();
    if (r.has_batch_planned() && r.batch_planned().job_id() == "planned") batches.push_back(r.batch_planned());
    if (r.has_blocks_added()) {
      for (const proto::BlockInfo& b : r.blocks_added().blocks()) blocks[b.range().partition()].push_back(b);
    }
  }
  ASSERT_GE(batches.size(), 3u);
  std::map<int, int64_t> next;  // partition -> where the next batch must start
  for (int p = 0; p < 2; ++p) {
    ASSERT_FALSE(blocks[p].empty());
    next[p] = blocks[p].front().range().start_offset();
  }
  for (size_t i = 0; i < batches.size(); ++i) {
    EXPECT_EQ(batches[i].batch_id(), static_cast<int64_t>(i + 1));
    if (i > 0) {
      EXPECT_EQ(batches[i].batch_time_unix_ms() - batches[i - 1].batch_time_unix_ms(), 300);
    }
    for (const proto::PartitionRange& r : batches[i].ranges()) {
      EXPECT_EQ(r.start_offset(), next[r.partition()]) << "batch " << i + 1 << " partition " << r.partition();
      EXPECT_GT(r.end_offset(), r.start_offset());
      // Every range ends on a block boundary that was accepted before it.
      EXPECT_TRUE(std::any_of(blocks[r.partition()].begin(), blocks[r.partition()].end(),
                              [&](const proto::BlockInfo& b) { return b.range().end_offset() == r.end_offset(); }));
      next[r.partition()] = r.end_offset();
    }
  }
  EXPECT_GT(next[0] + next[1], 0);
}

}  // namespace
}  // namespace sluice
