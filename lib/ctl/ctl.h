// Ctl: the commands of sluicectl.
//
// Module sluice::ctl owns the client side of the cluster's administration: it
// declares sluicectl's subcommands and flags on a CLI::App and runs the one the
// user chose, talking gRPC to the daemons. cmd/sluicectl/main.cpp only wires it.
//
//   sluicectl [--coordinator SPEC] status [--driver HOST:PORT[,...]] [--worker HOST:PORT[,...]]
//
// With --coordinator (zookeeper://...), the drivers and workers are found
// through the cluster's membership; --driver/--worker add addresses by hand.
//
// Exit codes: 0 success, 1 the cluster answered with an error or could not be
// reached, 2 bad usage.
//
// Thread-compatible.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "lib/common/clock.h"

namespace CLI {
class App;
}

namespace sluice::ctl {

class Ctl {
 public:
  explicit Ctl(Clock* clock) : clock_(clock) {}

  // Declares the subcommands and their flags on `app`.
  void Register(CLI::App& app);
  // Runs the subcommand that `app` parsed; returns the exit code.
  int Run(const CLI::App& app, std::ostream& out, std::ostream& err);

 private:
  int RunStatus(std::ostream& out, std::ostream& err);

  Clock* clock_;
  std::vector<std::string> drivers_;
  std::vector<std::string> workers_;
  std::string coordinator_;
  int timeout_ms_ = 3000;
  CLI::App* status_cmd_ = nullptr;
};

}  // namespace sluice::ctl
