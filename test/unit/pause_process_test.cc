// Unit tests of PauseProcess (lib/common/drill.h): the pause ends with a
// SIGCONT even when whoever asked for it is interrupted.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "lib/common/drill.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

// The state letter of /proc/PID/stat: 'T' while stopped.
char StateOf(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size()
             ? '?'
             : line[paren + 2];
}

// Waits up to `limit` for `pid`'s state to be (or not be) 'T'.
bool WaitStopped(pid_t pid, bool stopped, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if ((StateOf(pid) == 'T') == stopped)
      return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

pid_t StartSleeper() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execlp("sleep", "sleep", "30", static_cast<char *>(nullptr));
    ::_exit(127);
  }
  return pid;
}

void Reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

TEST(PauseProcess, StopsThenResumes) {
  const pid_t target = StartSleeper();
  ASSERT_GT(target, 0);
  ASSERT_TRUE(PauseProcess(target, 0ms, 700ms).ok());
  EXPECT_TRUE(WaitStopped(target, true, 2000ms));
  EXPECT_TRUE(WaitStopped(target, false, 3000ms)) << "still stopped";
  Reap(target);
}

// The caller (here a child in a process group of its own) asks for a pause
// and is then killed with its whole group by a hang-up, as a Ctrl-C or a
// lost ssh session would: the target must still be resumed.
TEST(PauseProcess, ResumesEvenIfTheCallersGroupIsKilled) {
  const pid_t target = StartSleeper();
  ASSERT_GT(target, 0);
  const pid_t caller = ::fork();
  if (caller == 0) {
    ::setpgid(0, 0);
    if (!PauseProcess(target, 0ms, 1000ms).ok())
      ::_exit(2);
    ::usleep(100'000);
    ::kill(0, SIGHUP); // the caller's group, as a terminal hang-up
    ::kill(0, SIGINT);
    ::_exit(3);
  }
  ASSERT_GT(caller, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(caller, &status, 0), caller);
  EXPECT_TRUE(WIFSIGNALED(status))
      << "the caller should have died of its group's signal";
  EXPECT_TRUE(WaitStopped(target, true, 2000ms));
  EXPECT_TRUE(WaitStopped(target, false, 4000ms))
      << "the pause outlived its caller: target left stopped";
  Reap(target);
}

} // namespace
} // namespace sluice
