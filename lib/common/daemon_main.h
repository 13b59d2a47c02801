// RunDaemonMain: the whole main() of a Sluice daemon, shared by driverd and workerd.
//
// Module sluice::common owns it. It limits malloc's arenas (memory.h),
// blocks termination signals, declares the daemon's options as flags, parses
// the command line and config file, checks the values, sets up logging,
// starts the daemon and runs it until SIGINT, SIGTERM or SIGHUP, then stops
// it. Exit codes: 0 after a clean stop or
// --help/--version, 2 (kExitUsage) on a bad flag or value, 1 if the daemon
// cannot start.
//
// Options must have Register(CLI::App&), Validate() and log_level();
// Daemon is constructed from (Options, Clock*) and has Start() and Stop().
#pragma once

#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "lib/common/clock.h"
#include "lib/common/config.h"
#include "lib/common/logging.h"
#include "lib/common/memory.h"
#include "lib/common/signals.h"
#include "spdlog/spdlog.h"

namespace sluice {

template <typename Options, typename Daemon>
int RunDaemonMain(const std::string& name, const std::string& description, int argc, char** argv) {
  LimitMallocArenas();
  BlockTerminationSignals();
  CLI::App app(description, name);
  Options options;
  options.Register(app);
  if (std::optional<int> code = ParseCommandLine(app, argc, argv)) return *code;
  if (Status st = options.Validate(); !st.ok()) {
    std::cerr << name << ": error: " << st.message() << std::endl;
    return kExitUsage;
  }
  if (Status st = InitLogging(name, options.log_level()); !st.ok()) {
    std::cerr << name << ": error: " << st.message() << std::endl;
    return kExitUsage;
  }
  Daemon daemon(options, Clock::Real());
  if (Status st = daemon.Start(); !st.ok()) {
    spdlog::critical("cannot start: {}", st.ToString());
    return 1;
  }
  int sig = WaitForTerminationSignal();
  spdlog::info("signal {} received, stopping", sig);
  daemon.Stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace sluice
