#include "lib/common/drill.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "spdlog/spdlog.h"

namespace sluice {
namespace {

constexpr std::chrono::milliseconds kAnswerFirst{50};

// Async-signal-safe: what a child forked from a threaded process may call.
void SleepMs(int64_t ms) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(ms / 1000);
  ts.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000L;
  while (::nanosleep(&ts, &ts) != 0) {
  }
}

}  // namespace

Status ObeyDrill(DrillFault fault, std::chrono::milliseconds pause, bool allowed, std::string_view daemon) {
  if (!allowed) {
    return absl::FailedPreconditionError("drills are off on this daemon: set allow-drills = true in its config");
  }
  switch (fault) {
    case DrillFault::kKill:
    case DrillFault::kTerm: {
      const int sig = fault == DrillFault::kKill ? SIGKILL : SIGTERM;
      spdlog::warn("{}: failover drill: {} in {} ms, as asked over RPC (allow-drills is on)", daemon,
                   sig == SIGKILL ? "SIGKILL" : "SIGTERM", kAnswerFirst.count());
      std::thread([sig] {
        std::this_thread::sleep_for(kAnswerFirst);
        ::kill(::getpid(), sig);
      }).detach();
      return absl::OkStatus();
    }
    case DrillFault::kPause:
      if (pause.count() <= 0 || pause > std::chrono::minutes(10)) {
        return absl::InvalidArgumentError("drill: pause_ms must be in 1..600000");
      }
      spdlog::warn("{}: failover drill: paused (SIGSTOP) for {} ms, as asked over RPC (allow-drills is on)",
                   daemon, pause.count());
      return PauseProcess(::getpid(), kAnswerFirst, pause);
    case DrillFault::kUnspecified:
      break;
  }
  return absl::InvalidArgumentError("drill: unknown fault");
}

Status PauseProcess(int pid, std::chrono::milliseconds after, std::chrono::milliseconds pause) {
  const pid_t target = static_cast<pid_t>(pid);
  const pid_t child = ::fork();
  if (child < 0) return absl::InternalError(fmt::format("pausing pid {}: fork failed: {}", pid, std::strerror(errno)));
  if (child == 0) {
    // The intermediate child exits at once so the caller can reap it; the
    // grandchild, adopted by init, does the pause (and outlives the caller
    // if need be). Both are forks of a threaded process: nothing but
    // async-signal-safe calls from here on.
    // It leaves the caller's session and blocks every signal it can, so the
    // Ctrl-C, hang-up or group kill that ends the caller does not end it
    // before its SIGCONT: a process stopped for good (a ZooKeeper server, a
    // leader) is worse than the drill it was part of.
    if (::fork() == 0) {
      ::setsid();
      sigset_t all;
      ::sigfillset(&all);
      ::sigprocmask(SIG_SETMASK, &all, nullptr);
      SleepMs(after.count());
      ::kill(target, SIGSTOP);
      SleepMs(pause.count());
      ::kill(target, SIGCONT);
    }
    ::_exit(0);
  }
  ::waitpid(child, nullptr, 0);
  return absl::OkStatus();
}

}  // namespace sluice
