#include "lib/common/service_notify.h"

#include <systemd/sd-daemon.h>
#include <sys/stat.h>

#include <cstdlib>

#include "spdlog/spdlog.h"

namespace sluice {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// A status line is one line.
std::string OneLine(const std::string& s) {
  std::string out = s;
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

// The test hook's file if it names `loop`, else "".
std::string WedgeFile(const std::string& loop) {
#ifdef SLUICE_FAULT_POINTS
  if (Env("SLUICE_TEST_WEDGE_LOOP") == loop) return Env("SLUICE_TEST_WEDGE_FILE");
#else
  (void)loop;
#endif
  return "";
}

}  // namespace

LoopBeat::LoopBeat(std::string name) : name_(std::move(name)), wedge_file_(WedgeFile(name_)) {}

void LoopBeat::Beat() {
  if (!wedge_file_.empty()) {
    struct stat st;
    bool logged = false;
    while (::stat(wedge_file_.c_str(), &st) == 0) {
      if (!logged) spdlog::warn("test hook: loop {} wedged while {} exists", name_, wedge_file_);
      logged = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (logged) spdlog::warn("test hook: loop {} released", name_);
  }
  count_.fetch_add(1, std::memory_order_relaxed);
}

LoopBeat* Liveness::Register(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  loops_.push_back(Loop{std::make_unique<LoopBeat>(name), 0, std::chrono::steady_clock::now()});
  return loops_.back().beat.get();
}

std::vector<std::string> Liveness::Stalled(std::chrono::steady_clock::time_point now,
                                           std::chrono::milliseconds max_gap) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> stalled;
  for (Loop& l : loops_) {
    const uint64_t count = l.beat->count();
    if (count != l.seen) {
      l.seen = count;
      l.moved = now;
    } else if (now - l.moved > max_gap) {
      stalled.push_back(l.beat->name());
    }
  }
  return stalled;
}

ServiceNotifier::ServiceNotifier() {
  enabled_ = !Env("NOTIFY_SOCKET").empty();
  uint64_t usec = 0;
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = std::chrono::microseconds(usec);
  }
}

ServiceNotifier::~ServiceNotifier() { StopWatchdog(); }

void ServiceNotifier::Send(const std::string& message) {
  if (!enabled_) return;
  int rc = sd_notify(0, message.c_str());
  if (rc < 0) spdlog::debug("sd_notify({}): error {}", message, -rc);
}

void ServiceNotifier::Ready(const std::string& status) {
  const std::string line = OneLine(status);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ready_sent_) return;
    ready_sent_ = true;
    last_status_ = line;
  }
  spdlog::info("ready: {}", line);
  Send("READY=1\nSTATUS=" + line);
}

void ServiceNotifier::Status(const std::string& status) {
  const std::string line = OneLine(status);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (line == last_status_) return;
    last_status_ = line;
  }
  spdlog::info("status: {}", line);
  Send("STATUS=" + line);
}

void ServiceNotifier::Stopping(const std::string& status) {
  const std::string line = OneLine(status);
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_status_ = line;
  }
  Send("STOPPING=1\nSTATUS=" + line);
}

void ServiceNotifier::StartWatchdog(Liveness* liveness) {
  if (!enabled_ || watchdog_.count() == 0 || watchdog_thread_.joinable()) return;
  spdlog::info("watchdog: every {} ms, while every main loop makes progress",
               std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_).count() / 2);
  watchdog_thread_ = std::thread([this, liveness] { WatchdogLoop(liveness); });
}

void ServiceNotifier::StopWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (watchdog_thread_.joinable()) watchdog_thread_.join();
}

void ServiceNotifier::WatchdogLoop(Liveness* liveness) {
  const auto check_every = std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_ / 4);
  const auto max_gap = std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_ / 2);
  bool withholding = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    std::vector<std::string> stalled = liveness->Stalled(std::chrono::steady_clock::now(), max_gap);
    if (stalled.empty()) {
      if (withholding) spdlog::warn("watchdog: every main loop makes progress again");
      withholding = false;
      Send("WATCHDOG=1");
    } else if (!withholding) {
      withholding = true;
      std::string names;
      for (const std::string& n : stalled) names += (names.empty() ? "" : ", ") + n;
      spdlog::error("watchdog: loop(s) {} made no progress for {} ms; withholding WATCHDOG=1", names,
                    max_gap.count());
    }
    lock.lock();
    cv_.wait_for(lock, check_every, [this] { return stopping_; });
  }
}

}  // namespace sluice
