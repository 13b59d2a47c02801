// Subprocess: a child process started by a test, with its output in a log file.
//
// Part of the test harness (sluice::test_harness), which every integration test
// uses to run real processes: ZooKeeper, the Kafka mock broker, driverd, workerd.
// The child gets SIGKILL if the thread that started it dies (PR_SET_PDEATHSIG),
// so a crashed test leaves no daemon behind; the destructor kills and reaps it.
//
// Thread-compatible: one owner drives it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/common/status.h"

namespace sluice::testing {

struct SubprocessOptions {
  // stdout and stderr are appended here; empty: inherited from the test.
  std::string log_path;
  // Extra "NAME=value" entries added to the inherited environment.
  std::vector<std::string> env;
};

// Where a process runs: the address it listens on and the argv prefix that
// puts it on its host (empty: the test's own network, loopback). NetnsHosts
// hands these out.
struct Placement {
  std::string ip = "127.0.0.1";
  std::vector<std::string> exec_prefix;

  std::vector<std::string> Wrap(std::vector<std::string> argv) const {
    argv.insert(argv.begin(), exec_prefix.begin(), exec_prefix.end());
    return argv;
  }
};

class Subprocess {
 public:
  // Starts argv[0] (looked up in PATH if it has no '/').
  [[nodiscard]] static Result<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv, const SubprocessOptions& options = {});
  ~Subprocess();

  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

  // True while the child has not exited (reaps it if it has).
  bool Running();
  // Sends `sig`; FAILED_PRECONDITION if the child has already exited.
  [[nodiscard]] Status Signal(int sig);
  // Waits up to `timeout` for the child to exit. Returns its exit code, or
  // 128 + the signal number that killed it; DEADLINE_EXCEEDED if still running.
  [[nodiscard]] Result<int> Wait(std::chrono::milliseconds timeout);
  // SIGTERM, then SIGKILL after `grace`; returns the exit status as Wait does.
  int Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // SIGKILL and reap.
  void Kill();

 private:
  Subprocess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  bool Reap(int flags);

  pid_t pid_;
  std::string log_path_;
  std::optional<int> exit_status_;
};

// Runs a command to completion and returns its exit status (as Wait does),
// with its output appended to `log_path`; DEADLINE_EXCEEDED (after killing it)
// past `timeout`.
[[nodiscard]] Result<int> RunCommand(const std::vector<std::string>& argv,
                                     const std::string& log_path,
                                     std::chrono::milliseconds timeout);

}  // namespace sluice::testing
