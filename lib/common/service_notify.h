// What a daemon tells its service manager (systemd's sd_notify protocol):
// readiness, a status line, stopping, and watchdog pings that prove its main
// loops still make progress. See docs/service.md.
//
// Module sluice::common owns it. ServiceNotifier sends; Liveness holds the
// heartbeat counters of the main loops (one LoopBeat each). Without
// NOTIFY_SOCKET in the environment every call is a no-op.
//
// The watchdog (when systemd sets WATCHDOG_USEC, i.e. WatchdogSec=) checks the
// loops every quarter of the interval and sends WATCHDOG=1 only if each loop
// beat within the last half interval: a loop wedged for longer stops the
// pings, and systemd kills the daemon one interval after the last one.
//
// Test hook (only in builds with SLUICE_FAULT_POINTS, the default of test
// builds): SLUICE_TEST_WEDGE_LOOP=<loop name> and SLUICE_TEST_WEDGE_FILE=<path>
// in the environment make that loop's Beat() block while the file exists.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sluice {

// What a daemon says of itself: whether it serves yet, and one line for people.
struct ServiceState {
  bool ready = false;
  std::string status;
};

// One main loop's heartbeat: the loop calls Beat() once per iteration.
class LoopBeat {
 public:
  explicit LoopBeat(std::string name);
  void Beat();
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  const std::string& name() const { return name_; }

 private:
  const std::string name_;
  std::atomic<uint64_t> count_{0};
  const std::string wedge_file_;  // the test hook names this loop: its file
};

class Liveness {
 public:
  // A loop's beat; valid as long as this Liveness.
  LoopBeat* Register(const std::string& name);
  // Records which loops moved since the last call (at `now`), and returns the
  // names of those that have not moved for longer than `max_gap`.
  std::vector<std::string> Stalled(std::chrono::steady_clock::time_point now,
                                   std::chrono::milliseconds max_gap);

 private:
  struct Loop {
    std::unique_ptr<LoopBeat> beat;
    uint64_t seen = 0;
    std::chrono::steady_clock::time_point moved;
  };
  std::mutex mu_;
  std::vector<Loop> loops_;  // guarded by mu_
};

class ServiceNotifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC from the environment (sd_notify
  // reads NOTIFY_SOCKET again at each send: leave it set).
  ServiceNotifier();
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  bool enabled() const { return enabled_; }
  // The watchdog interval systemd asked for (0: none).
  std::chrono::microseconds watchdog_interval() const { return watchdog_; }

  // Sends READY=1 (once) with the status line.
  void Ready(const std::string& status);
  // Sends STATUS=<status> if it differs from the last one sent.
  void Status(const std::string& status);
  // Sends STOPPING=1 with a status line.
  void Stopping(const std::string& status);
  // Starts pinging WATCHDOG=1 while every loop of `liveness` makes progress
  // (no-op without a watchdog interval). `liveness` must outlive StopWatchdog.
  void StartWatchdog(Liveness* liveness);
  void StopWatchdog();

 private:
  void Send(const std::string& message);
  void WatchdogLoop(Liveness* liveness);

  bool enabled_ = false;
  std::chrono::microseconds watchdog_{0};
  std::mutex mu_;
  bool ready_sent_ = false;      // guarded by mu_
  std::string last_status_;      // guarded by mu_
  bool stopping_ = false;        // guarded by mu_
  std::condition_variable cv_;
  std::thread watchdog_thread_;
};

}  // namespace sluice
