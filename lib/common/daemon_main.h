// RunDaemonMain: the whole main() of a Sluice daemon, shared by driverd and workerd.
//
// Module sluice::common owns it. It limits malloc's arenas (memory.h),
// blocks termination signals, declares the daemon's options as flags, parses
// the command line and config file, checks the values, sets up logging,
// starts the daemon and runs it until SIGINT or SIGTERM, then stops it. Meanwhile it tells systemd (service_notify.h) when
// the daemon serves (READY=1), what it is doing (STATUS=), that it stops
// (STOPPING=1), and pings the watchdog while the daemon's main loops make
// progress. SIGHUP re-reads the config file: the log level changes at once,
// other changed keys are logged as taking effect at the next start; then the
// daemon's Reload() re-reads its TLS certificate files.
// --check-config prints the effective settings and exits without starting.
// Exit codes: 0 after a clean stop, --help, --version or a valid
// --check-config; 2 (kExitUsage) on a bad flag, file or value; 1 if the
// daemon cannot start. See docs/service.md.
//
// Options must have Register(CLI::App&), Validate(), log_level() and a
// DaemonOptions `daemon`;
// Daemon is constructed from (Options, Clock*) and has Start(), Stop(), Reload(),
// SetLiveness(Liveness*) (before Start) and ServiceState() const.
#pragma once

#include <signal.h>

#include <iostream>
#include <map>
#include <string>

#include "CLI/CLI.hpp"
#include "lib/common/clock.h"
#include "lib/common/config.h"
#include "lib/common/logging.h"
#include "lib/common/memory.h"
#include "lib/common/service_notify.h"
#include "lib/common/signals.h"
#include "spdlog/spdlog.h"

namespace sluice {

// Prints every option of `app` as a config-file line, `key = value` (the
// command line's or the file's value, else the default).
void PrintEffectiveSettings(const CLI::App& app, std::ostream& out);

// What SIGHUP reloads. Made after the command line is parsed.
class ConfigReloader {
 public:
  // `argv` tells which options the command line set (those win over the file).
  ConfigReloader(const CLI::App& app, int argc, const char* const* argv);
  // Re-reads the config file: applies log-level, logs every other key that
  // changed. Never fails the daemon: errors are logged.
  void Reload();

 private:
  std::string config_path_;
  bool log_level_on_command_line_ = false;
  std::map<std::string, std::string> file_values_;  // as last read
};

template <typename Options, typename Daemon>
int RunDaemonMain(const std::string& name, const std::string& description, int argc, char** argv) {
  LimitMallocArenas();
  BlockTerminationSignals();
  CLI::App app(description, name);
  Options options;
  options.Register(app);
  bool check_config = false;
  app.add_flag("--check-config", check_config,
               "Check the configuration, print the effective settings and exit: 0 if valid, 2 if not");
  if (std::optional<int> code = ParseCommandLine(app, argc, argv)) return *code;
  if (Status st = options.Validate(); !st.ok()) {
    std::cerr << name << ": error: " << st.message() << std::endl;
    return kExitUsage;
  }
  if (Status st = InitLogging(name, options.log_level()); !st.ok()) {
    std::cerr << name << ": error: " << st.message() << std::endl;
    return kExitUsage;
  }
  // Last: a wrong value is named before missing certificates are.
  if (Status st = options.daemon.tls.Validate(); !st.ok()) {
    std::cerr << name << ": error: " << st.message() << std::endl;
    return kExitUsage;
  }
  if (check_config) {
    std::cout << "# " << name << ": the configuration is valid; effective settings:\n";
    PrintEffectiveSettings(app, std::cout);
    return 0;
  }
  ConfigReloader reloader(app, argc, argv);
  ServiceNotifier notifier;
  Liveness liveness;
  LoopBeat* main_beat = liveness.Register("main");
  Daemon daemon(options, Clock::Real());
  daemon.SetLiveness(&liveness);
  notifier.Status("starting");
  if (Status st = daemon.Start(); !st.ok()) {
    spdlog::critical("cannot start: {}", st.ToString());
    notifier.Stopping("cannot start: " + st.ToString());
    // A value that only turns out wrong when used is still a configuration error.
    return absl::IsInvalidArgument(st) ? kExitUsage : 1;
  }
  notifier.StartWatchdog(&liveness);
  int sig = 0;
  while (true) {
    main_beat->Beat();
    ServiceState state = daemon.ServiceState();
    if (state.ready) {
      notifier.Ready(state.status);
    }
    notifier.Status(state.status);
    sig = WaitForTerminationSignal(std::chrono::milliseconds(250));
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP received: reloading the configuration");
      reloader.Reload();
      daemon.Reload();
      continue;
    }
    if (sig != 0) break;
  }
  spdlog::info("signal {} received, stopping", sig);
  notifier.Stopping("stopping on signal " + std::to_string(sig));
  notifier.StopWatchdog();
  daemon.Stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace sluice
