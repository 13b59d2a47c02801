// sluicectl: the command-line client of a Sluice cluster. See lib/ctl.
#include <iostream>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/ctl/ctl.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // a client prints results, not progress
  CLI::App app("Sluice cluster client: status, jobs, failover drills", "sluicectl");
  sluice::ctl::Ctl ctl(sluice::Clock::Real());
  ctl.Register(app);
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  return ctl.Run(app, std::cout, std::cerr);
}
