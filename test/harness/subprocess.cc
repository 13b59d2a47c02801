#include "test/harness/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

extern char** environ;

namespace sluice::testing {

Result<std::unique_ptr<Subprocess>> Subprocess::Start(const std::vector<std::string>& argv,
                                                      const SubprocessOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("Subprocess: empty argv");
  // Everything the child needs is built before fork(): after it, only
  // async-signal-safe calls are allowed in a multi-threaded parent.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  for (const std::string& e : options.env) env_storage.push_back(e);
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  int log_fd = -1;
  if (!options.log_path.empty()) {
    log_fd = ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      return absl::FailedPreconditionError(
          fmt::format("cannot open log {}: {}", options.log_path, std::strerror(errno)));
    }
  }
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    if (log_fd >= 0) ::close(log_fd);
    return absl::InternalError(fmt::format("fork: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    if (log_fd >= 0) {
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
    }
    ::execvpe(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
  return std::unique_ptr<Subprocess>(new Subprocess(pid, options.log_path));
}

Subprocess::~Subprocess() { Kill(); }

bool Subprocess::Reap(int flags) {
  if (exit_status_) return true;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, flags);
  if (r == pid_) {
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
  }
  if (r < 0 && errno == ECHILD) {
    exit_status_ = -1;
    return true;
  }
  return false;
}

bool Subprocess::Running() { return !Reap(WNOHANG); }

Status Subprocess::Signal(int sig) {
  if (!Running()) {
    return absl::FailedPreconditionError(fmt::format("process {} has exited", pid_));
  }
  if (::kill(pid_, sig) != 0) {
    return absl::InternalError(fmt::format("kill({}, {}): {}", pid_, sig, std::strerror(errno)));
  }
  return absl::OkStatus();
}

Result<int> Subprocess::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Reap(WNOHANG)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(fmt::format("process {} still running", pid_));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return *exit_status_;
}

int Subprocess::Stop(std::chrono::milliseconds grace) {
  if (Running()) {
    ::kill(pid_, SIGCONT);  // a stopped process cannot act on SIGTERM
    ::kill(pid_, SIGTERM);
  }
  Result<int> r = Wait(grace);
  if (r.ok()) return *r;
  Kill();
  return *exit_status_;
}

void Subprocess::Kill() {
  if (exit_status_) return;
  ::kill(pid_, SIGKILL);
  Reap(0);
}

Result<int> RunCommand(const std::vector<std::string>& argv, const std::string& log_path,
                       std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(auto proc, Subprocess::Start(argv, {.log_path = log_path}));
  Result<int> r = proc->Wait(timeout);
  if (!r.ok()) {
    proc->Kill();
    return absl::DeadlineExceededError(
        fmt::format("{} did not finish within {} ms", argv[0], timeout.count()));
  }
  return r;
}

}  // namespace sluice::testing
