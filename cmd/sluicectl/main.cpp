// sluicectl: the command-line client of a Sluice cluster. See lib/ctl.
//
// Settings come from the command line, then from a config file of the same
// `key = value` lines as the daemons' (keys are the long flags: coordinator,
// zk-auth-file, timeout-ms, driver, worker): --config FILE, else $SLUICECTL_CONFIG, else
// /etc/sluice/sluicectl.conf if it exists. The command line wins; the file's
// coordinator is not used when the command names --driver or --worker.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sys/stat.h>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/ctl/ctl.h"
#include "spdlog/spdlog.h"

namespace {

constexpr const char* kSystemConfig = "/etc/sluice/sluicectl.conf";

bool HasFlag(int argc, char** argv, const char* flag) {
  const size_t n = std::strlen(flag);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) break;
    if (std::strncmp(argv[i], flag, n) == 0 && (argv[i][n] == '\0' || argv[i][n] == '=')) return true;
  }
  return false;
}

// Whether a parsed subcommand's `name` option was given.
bool GivenInSubcommand(const CLI::App& app, const std::string& name) {
  for (const CLI::App* sub : app.get_subcommands()) {
    const CLI::Option* opt = sub->get_option_no_throw(name);
    if ((opt != nullptr && opt->count() > 0) || GivenInSubcommand(*sub, name)) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // a client prints results, not progress
  CLI::App app("Sluice cluster client: status, jobs, failover drills", "sluicectl");
  app.footer(std::string("Settings not given as flags are read from --config FILE, $SLUICECTL_CONFIG or ") +
             kSystemConfig + " (key = value; keys: coordinator, zk-auth-file, timeout-ms, driver, worker).");
  sluice::ctl::Ctl ctl(sluice::Clock::Real());
  ctl.Register(app);
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  if (!HasFlag(argc, argv, "--config")) {
    std::string path;
    bool must_exist = false;
    if (const char* env = std::getenv("SLUICECTL_CONFIG"); env != nullptr && *env != '\0') {
      path = env;
      must_exist = true;
    } else if (struct stat st; ::stat(kSystemConfig, &st) == 0) {
      path = kSystemConfig;
    }
    if (!path.empty()) {
      sluice::Result<std::vector<sluice::ConfigEntry>> entries = sluice::ReadConfigFile(path);
      sluice::Status st = entries.status();
      if (st.ok()) {
        if (GivenInSubcommand(app, "--driver") || GivenInSubcommand(app, "--worker")) {
          std::erase_if(*entries, [](const sluice::ConfigEntry& e) { return e.key == "coordinator"; });
        }
        st = sluice::ApplyConfig(app, *entries, path);
      }
      if (!st.ok() && (must_exist || !absl::IsNotFound(st))) {
        std::cerr << "sluicectl: error: " << st.message() << std::endl;
        return sluice::kExitUsage;
      }
    }
  }
  return ctl.Run(app, std::cout, std::cerr);
}
