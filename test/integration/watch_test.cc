// sluicectl watch against a cluster of real processes: in a terminal (a tmux
// pane) it shows the leader and the job, its batch in flight with its tasks
// done, rates and delays, refreshes in place, rides out a leader kill (no
// leader, then the new epoch and the failover) and leaves on Ctrl-C with
// the screen and cursor restored; without a terminal, `watch --once` prints
// one plain snapshot. The new leader logs the failover and the driver that
// left.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/harness/certs.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;
using Steady = std::chrono::steady_clock;

constexpr const char* kJob = R"(name: watched
batch_interval: 1s
sources:
  - name: ticks
    kind: generator
    partitions: 2
    rate: 2000
operators:
  - parse: {format: json}
  - filter: "v > 10"
sink:
  null:
)";

// The first number after `label` in `text`, or -1.
int64_t NumberAfter(const std::string& text, const std::string& label) {
  std::smatch m;
  if (std::regex_search(text, m, std::regex(label + " (\\d+)"))) return std::stoll(m[1]);
  return -1;
}

// Single quotes for sh.
std::string Quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

class SluicectlWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = LocalCluster::Start({.dir = dir_.path(), .drivers = 3, .workers = 2, .zk_session_timeout_ms = 8000});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    ASSERT_TRUE(WaitUntil([&] { return cluster_->Sluicectl({"list"}, dir_.Sub("list.log")) == 0; },
                          milliseconds(20'000), milliseconds(200)));
    ASSERT_TRUE(WriteFile(dir_.Sub("job.yaml"), kJob).ok());
    ASSERT_EQ(cluster_->Sluicectl({"submit", dir_.Sub("job.yaml")}, dir_.Sub("submit.log")), 0)
        << ReadFile(dir_.Sub("submit.log")).value_or("");
    ASSERT_TRUE(WaitUntil(
        [&] {
          std::optional<proto::JobInfo> j = cluster_->DescribeJob("watched");
          return j && j->last_committed_batch() >= 2;
        },
        milliseconds(30'000), milliseconds(200)));
  }

  // The sluicectl command line, for a shell.
  std::string SluicectlCommand(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {kSluicectlPath, "--coordinator", cluster_->coordinator()};
    for (std::string& f : TlsFlags("admin")) argv.push_back(std::move(f));
    argv.insert(argv.end(), args.begin(), args.end());
    std::string cmd;
    for (const std::string& a : argv) cmd += (cmd.empty() ? "" : " ") + Quoted(a);
    return cmd;
  }

  TempDir dir_{"watch"};
  std::unique_ptr<LocalCluster> cluster_;
};

TEST_F(SluicectlWatchTest, OnceWithoutATerminalPrintsOnePlainSnapshot) {
  const std::string log = dir_.Sub("once.log");
  ASSERT_EQ(cluster_->Sluicectl({"watch", "--once"}, log), 0) << ReadFile(log).value_or("");
  const std::string out = ReadFile(log).value_or("");
  EXPECT_THAT(out, HasSubstr("sluicectl watch (all jobs)"));
  EXPECT_THAT(out, HasSubstr("drivers 3  workers 2"));
  EXPECT_THAT(out, HasSubstr("JOB watched  running  batch every 1000 ms  committed "));
  EXPECT_THAT(out, HasSubstr("input rate:  "));
  EXPECT_THAT(out, HasSubstr("last batch:  "));
  EXPECT_THAT(out, HasSubstr("scheduling delay "));
  EXPECT_THAT(out, HasSubstr("failovers seen: none"));
  EXPECT_THAT(out, Not(HasSubstr("\x1b")));
  std::cout << "watch --once:\n" << out;

  // One job by name; an unknown one is said so.
  const std::string one = dir_.Sub("one.log");
  ASSERT_EQ(cluster_->Sluicectl({"watch", "watched", "--once"}, one), 0);
  EXPECT_THAT(ReadFile(one).value_or(""), HasSubstr("sluicectl watch watched"));
  const std::string none = dir_.Sub("none.log");
  ASSERT_EQ(cluster_->Sluicectl({"watch", "nosuchjob", "--once"}, none), 0);
  EXPECT_THAT(ReadFile(none).value_or(""), HasSubstr("jobs: no job nosuchjob"));
}

// watch given one driver (the leader) by --driver, not the coordinator:
// the leader's status names the others, so when it is killed watch finds
// the new leader among them instead of saying "no leader" for good.
TEST_F(SluicectlWatchTest, OneDriverNamedIsEnoughToFollowTheLeaderThroughItsKill) {
  const int leader = cluster_->LeaderIndex();
  ASSERT_GE(leader, 0);
  std::vector<std::string> argv = {kSluicectlPath};
  for (std::string& f : TlsFlags("admin")) argv.push_back(std::move(f));
  for (const std::string& a : {std::string("watch"), std::string("--driver"), cluster_->driver_address(leader),
                               std::string("--interval"), std::string("0.5")}) {
    argv.push_back(a);
  }
  const std::string log = dir_.Sub("watch-one-driver.log");
  Result<std::unique_ptr<Subprocess>> watch = Subprocess::Start(argv, {.log_path = log});
  ASSERT_TRUE(watch.ok()) << watch.status();
  // The newest whole snapshot: each starts with its title and ends with its
  // failovers section (with a leader; without one, with its header line).
  auto last_snapshot = [&] {
    const std::string out = ReadFile(log).value_or("");
    const std::string title = "sluicectl watch (";
    for (size_t end = out.size(), start; end > 0 && (start = out.rfind(title, end - 1)) != std::string::npos;
         end = start) {
      std::string s = out.substr(start, end - start);
      if (s.find("failovers seen") != std::string::npos || s.find("no leader (") != std::string::npos) return s;
      if (start == 0) break;
    }
    return std::string();
  };
  std::string snapshot;
  ASSERT_TRUE(WaitUntil([&] { return (snapshot = last_snapshot()).find("JOB watched") != std::string::npos; },
                        milliseconds(10'000), milliseconds(200)))
      << ReadFile(log).value_or("");
  const int64_t epoch = NumberAfter(snapshot, "epoch");
  ASSERT_GT(epoch, 0) << snapshot;
  const int64_t before = NumberAfter(snapshot, "committed");

  const Steady::time_point killed = Steady::now();
  cluster_->KillDriver(leader);
  ASSERT_TRUE(WaitUntil(
      [&] {
        snapshot = last_snapshot();
        return NumberAfter(snapshot, "epoch") > epoch && NumberAfter(snapshot, "committed") > before;
      },
      milliseconds(30'000), milliseconds(200)))
      << "watch did not find the new leader; its last snapshot:\n" << snapshot;
  const int64_t shown_ms = std::chrono::duration_cast<milliseconds>(Steady::now() - killed).count();
  std::cout << "the new leader's batches shown " << shown_ms << " ms after the kill:\n" << snapshot << "\n";
  const int new_leader = cluster_->LeaderIndex();
  ASSERT_GE(new_leader, 0);
  EXPECT_NE(new_leader, leader);
  EXPECT_THAT(snapshot, HasSubstr("leader " + cluster_->driver_id(new_leader) + " at "));
  EXPECT_THAT(snapshot, HasSubstr("failovers seen (1):"));
  // The session timeout (8 s), an election and catch-up, a batch, a poll.
  EXPECT_LT(shown_ms, 25'000);
  // SIGTERM ends it like Ctrl-C: exit 0.
  ASSERT_TRUE((*watch)->Signal(SIGTERM).ok());
  Result<int> code = (*watch)->Wait(milliseconds(5'000));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

class Tmux {
 public:
  explicit Tmux(const std::string& dir) : socket_("sluice-watch-" + std::to_string(getpid())), dir_(dir) {}
  ~Tmux() { Run({"kill-server"}); }

  // tmux -L <socket> args...; its output.
  std::string Run(const std::vector<std::string>& args, int* code = nullptr) {
    std::vector<std::string> argv = {"env", "TERM=xterm-256color", "tmux", "-L", socket_};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = dir_ + "/tmux-" + std::to_string(runs_++) + ".log";
    Result<int> rc = RunCommand(argv, log, std::chrono::seconds(10));
    if (code != nullptr) *code = rc.ok() ? *rc : -1;
    return ReadFile(log).value_or("");
  }
  std::string Capture() { return Run({"capture-pane", "-p", "-t", "w"}); }
  // A pane format variable, e.g. pane_dead.
  std::string Format(const std::string& f) {
    std::string s = Run({"display-message", "-p", "-t", "w", "#{" + f + "}"});
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }

 private:
  std::string socket_;
  std::string dir_;
  int runs_ = 0;
};

TEST_F(SluicectlWatchTest, InATerminalRefreshesInPlaceRidesOutALeaderKillAndLeavesOnCtrlC) {
  if (system("command -v tmux >/dev/null 2>&1") != 0) GTEST_SKIP() << "tmux is not installed";
  Tmux tmux(dir_.path());
  int code = 0;
  // A pane that stays after its command exits, so its exit status can be read.
  tmux.Run({"new-session", "-d", "-s", "w", "-x", "160", "-y", "40"}, &code);
  ASSERT_EQ(code, 0);
  tmux.Run({"set-option", "-t", "w", "remain-on-exit", "on"}, &code);
  ASSERT_EQ(code, 0);
  // The shell says how watch exited, and the pane (still alive) shows
  // whether the screen and cursor were restored.
  tmux.Run({"respawn-pane", "-k", "-t", "w",
            SluicectlCommand({"watch", "--interval", "0.5"}) + "; echo watch-exit=$?; sleep 60"},
           &code);
  ASSERT_EQ(code, 0);

  std::string screen;
  ASSERT_TRUE(WaitUntil([&] { return (screen = tmux.Capture()).find("JOB watched") != std::string::npos; },
                        milliseconds(10'000), milliseconds(200)))
      << screen;
  EXPECT_EQ(tmux.Format("alternate_on"), "1");
  EXPECT_THAT(screen, HasSubstr("drivers 3  workers 2"));
  EXPECT_THAT(screen, HasSubstr("input rate:  "));
  EXPECT_THAT(screen, HasSubstr("rate limit: "));
  EXPECT_THAT(screen, HasSubstr("scheduling delay "));
  EXPECT_THAT(screen, HasSubstr("processing "));
  EXPECT_THAT(screen, HasSubstr("total delay "));
  EXPECT_THAT(screen, HasSubstr("records:     "));
  const int64_t epoch = NumberAfter(screen, "epoch");
  ASSERT_GT(epoch, 0) << screen;

  // It refreshes: the committed batch advances on the same screen.
  const int64_t first = NumberAfter(screen, "committed");
  ASSERT_TRUE(WaitUntil([&] { return NumberAfter(screen = tmux.Capture(), "committed") >= first + 2; },
                        milliseconds(10'000), milliseconds(200)))
      << screen;

  // A batch in flight with its tasks: held there by pausing a worker (for
  // less than the session timeout, so it stays a member).
  const std::regex in_flight(R"(in flight:   batch (\d+) \[[#.]{20}\] (\d+)/(\d+) tasks  running)");
  std::smatch m;
  ASSERT_TRUE(cluster_->worker(1)->Signal(SIGSTOP).ok());
  const bool seen = WaitUntil(
      [&] {
        screen = tmux.Capture();
        return std::regex_search(screen, m, in_flight);
      },
      milliseconds(6'000), milliseconds(100));
  ASSERT_TRUE(cluster_->worker(1)->Signal(SIGCONT).ok());
  ASSERT_TRUE(seen) << screen;
  EXPECT_LE(std::stoll(m[2]), std::stoll(m[3]));
  EXPECT_GT(std::stoll(m[3]), 0);
  std::cout << "screen with a batch in flight:\n" << screen << "\n";

  // Kill -9 the leader: the view says there is none, then shows the new
  // epoch, the failover, and batches committing again.
  const int leader = cluster_->LeaderIndex();
  ASSERT_GE(leader, 0);
  const int64_t before = NumberAfter(tmux.Capture(), "committed");
  const Steady::time_point killed = Steady::now();
  cluster_->KillDriver(leader);
  ASSERT_TRUE(WaitUntil([&] { return (screen = tmux.Capture()).find("no leader (") != std::string::npos; },
                        milliseconds(15'000), milliseconds(100)))
      << screen;
  std::cout << "screen without a leader:\n" << screen << "\n";
  ASSERT_TRUE(WaitUntil(
      [&] {
        screen = tmux.Capture();
        return NumberAfter(screen, "epoch") > epoch && NumberAfter(screen, "committed") > before;
      },
      milliseconds(30'000), milliseconds(100)))
      << screen;
  const int64_t shown_ms = std::chrono::duration_cast<milliseconds>(Steady::now() - killed).count();
  std::cout << "a newer committed batch shown " << shown_ms << " ms after the leader's kill\n";
  // The session timeout (8 s), an election and catch-up, a batch, a refresh.
  EXPECT_LT(shown_ms, 25'000);
  EXPECT_THAT(screen, HasSubstr("failovers seen (1):"));
  const int new_leader = cluster_->LeaderIndex();
  ASSERT_GE(new_leader, 0);
  EXPECT_THAT(screen,
              HasSubstr("leader " + cluster_->driver_id(leader) + " -> " + cluster_->driver_id(new_leader) +
                        " (epoch " + std::to_string(NumberAfter(screen, "epoch")) + "), no leader answered for "));
  EXPECT_THAT(screen, HasSubstr("leader " + cluster_->driver_id(new_leader) + " at "));
  std::cout << "screen after the failover:\n" << screen << "\n";
  // The new leader's log says so, and names the driver that left.
  const std::string log = ReadFile(cluster_->driver_log(new_leader)).value_or("");
  EXPECT_THAT(log, HasSubstr("now LEADER with epoch " + std::to_string(NumberAfter(screen, "epoch"))));
  EXPECT_THAT(log, HasSubstr("driver " + cluster_->driver_id(leader) + " left; drivers now ["));

  // Ctrl-C: the process exits 0, the normal screen and the cursor are back.
  EXPECT_EQ(tmux.Format("cursor_flag"), "0");
  tmux.Run({"send-keys", "-t", "w", "C-c"});
  ASSERT_TRUE(WaitUntil([&] { return (screen = tmux.Capture()).find("watch-exit=") != std::string::npos; },
                        milliseconds(5'000), milliseconds(100)))
      << screen;
  EXPECT_THAT(screen, HasSubstr("watch-exit=0"));
  EXPECT_THAT(screen, Not(HasSubstr("JOB watched")));  // the screen from before watch
  EXPECT_EQ(tmux.Format("alternate_on"), "0");
  EXPECT_EQ(tmux.Format("cursor_flag"), "1");
}

}  // namespace
}  // namespace sluice::testing
