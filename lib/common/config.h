// Command-line flags and configuration files of the Sluice binaries.
//
// Module sluice::common owns it. A binary declares each option once, on a
// CLI::App (CLI11). ParseCommandLine() reads the command line, then the file
// named by --config, whose lines are
//
//     # a comment
//     rpc-address = 127.0.0.1:7100
//     data-dir = "/var/lib/sluice/driver-1"
//
// Keys are the long flag names without the leading dashes. A flag given on the
// command line wins over the same key in the file. Every error is one line that
// names what is wrong: the flag, or the file, line and key.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/common/status.h"

namespace CLI {
class App;
}

namespace sluice {

// Exit code of a binary given a bad flag, a bad config file or a bad value.
inline constexpr int kExitUsage = 2;

// One `key = value` line of a config file.
struct ConfigEntry {
  std::string key;
  std::string value;
  int line = 0;  // 1-based
};

// Parses config text; `source` names it in errors ("driverd.conf:3: ...").
// Rejects lines without '=', empty keys, and a key given twice.
[[nodiscard]] Result<std::vector<ConfigEntry>> ParseConfigText(std::string_view text,
                                                               std::string_view source);
[[nodiscard]] Result<std::vector<ConfigEntry>> ReadConfigFile(const std::string& path);

// Applies `entries` to the options of `app` that the command line did not set.
// A key that is not an option of `app` is looked up in the subcommand that was
// parsed (sluicectl's `driver = ...`), and skipped if only another subcommand
// has it. An unknown key or a value the option refuses is an INVALID_ARGUMENT
// error "source:line: key: reason".
[[nodiscard]] Status ApplyConfig(CLI::App& app, const std::vector<ConfigEntry>& entries,
                                 std::string_view source);

// Adds --config to `app`, parses argv, then applies the config file if one was
// named. Prints --help/--version to `out` and errors (one line, prefixed with the
// program name) to `err`. Returns std::nullopt when the program should go on, or
// the exit code to leave with: 0 after --help/--version, kExitUsage on an error.
std::optional<int> ParseCommandLine(CLI::App& app, int argc, const char* const* argv,
                                    std::ostream& out, std::ostream& err);
// As above, on std::cout / std::cerr.
std::optional<int> ParseCommandLine(CLI::App& app, int argc, const char* const* argv);

// Splits "host:port" ("[v6]:port" too); INVALID_ARGUMENT naming `what` if malformed.
struct HostPort {
  std::string host;
  int port = 0;
};
[[nodiscard]] Result<HostPort> ParseHostPort(std::string_view text, std::string_view what);

}  // namespace sluice
