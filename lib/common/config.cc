#include "lib/common/config.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "CLI/CLI.hpp"
#include "lib/common/version.h"

namespace sluice {
namespace {

std::string_view Trim(std::string_view s) {
  const char* kSpace = " \t\r\n";
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

// CLI11 messages may span lines; our errors are one line.
std::string OneLine(std::string_view s) {
  std::string out;
  for (char c : Trim(s)) {
    if (c == '\n') {
      out += "; ";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

Result<std::vector<ConfigEntry>> ParseConfigText(std::string_view text, std::string_view source) {
  std::vector<ConfigEntry> entries;
  std::map<std::string, int, std::less<>> first_line;
  int line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = Trim(text.substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return absl::InvalidArgumentError(
          fmt::format("{}:{}: expected 'key = value', got '{}'", source, line_no, line));
    }
    std::string_view key = Trim(line.substr(0, eq));
    std::string_view value = Trim(line.substr(eq + 1));
    if (key.empty()) {
      return absl::InvalidArgumentError(fmt::format("{}:{}: missing key before '='", source, line_no));
    }
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    } else if (size_t hash = value.find(" #"); hash != std::string_view::npos) {
      value = Trim(value.substr(0, hash));  // trailing comment
    }
    auto [it, inserted] = first_line.emplace(std::string(key), line_no);
    if (!inserted) {
      return absl::InvalidArgumentError(fmt::format("{}:{}: key '{}' given twice (first on line {})", source, line_no, key, it->second));
    }
    entries.push_back({std::string(key), std::string(value), line_no});
  }
  return entries;
}

Result<std::vector<ConfigEntry>> ReadConfigFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(fmt::format("config file '{}' is a directory", path));
  }
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(fmt::format("cannot read config file '{}'", path));
  std::stringstream buf;
  buf << in.rdbuf();
  return ParseConfigText(buf.str(), path);
}

namespace {

// The option `name` of the subcommand that was parsed, or of its own parsed
// subcommands; `*elsewhere` tells whether some other subcommand has one.
CLI::Option* FindInSubcommands(CLI::App& app, const std::string& name, bool* elsewhere) {
  for (CLI::App* sub : app.get_subcommands({})) {
    CLI::Option* opt = sub->get_option_no_throw(name);
    if (sub->parsed()) {
      if (opt != nullptr) return opt;
      if (CLI::Option* deeper = FindInSubcommands(*sub, name, elsewhere)) return deeper;
    } else {
      *elsewhere |= opt != nullptr;
      FindInSubcommands(*sub, name, elsewhere);
    }
  }
  return nullptr;
}

}  // namespace

Status ApplyConfig(CLI::App& app, const std::vector<ConfigEntry>& entries, std::string_view source) {
  for (const ConfigEntry& e : entries) {
    auto where = [&] { return fmt::format("{}:{}: ", source, e.line); };
    const bool reserved = e.key == "config" || e.key == "help" || e.key == "version";
    CLI::Option* opt = reserved ? nullptr : app.get_option_no_throw("--" + e.key);
    bool elsewhere = false;
    if (opt == nullptr && !reserved) opt = FindInSubcommands(app, "--" + e.key, &elsewhere);
    if (opt == nullptr && elsewhere) continue;  // a key of a subcommand not run now
    if (opt == nullptr) {
      return absl::InvalidArgumentError(fmt::format("{}unknown key '{}'", where(), e.key));
    }
    if (opt->count() > 0) continue;  // the command line wins
    try {
      opt->clear();
      opt->add_result(e.value);
      opt->run_callback();
    } catch (const CLI::Error& ex) {
      return absl::InvalidArgumentError(
          fmt::format("{}{}: {}", where(), e.key, OneLine(ex.what())));
    }
  }
  return absl::OkStatus();
}

std::optional<int> ParseCommandLine(CLI::App& app, int argc, const char* const* argv,
                                    std::ostream& out, std::ostream& err) {
  std::string config_path;
  app.add_option("--config", config_path, "Configuration file: lines 'key = value', keys as the long flags");
  app.set_version_flag("--version", std::string(app.get_name()) + " " + kVersion);
  const std::string name = app.get_name();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e, out, err);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e, out, err);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e, out, err);
  } catch (const CLI::ParseError& e) {
    err << name << ": error: " << OneLine(e.what()) << " (see --help)" << std::endl;
    return kExitUsage;
  }
  if (!config_path.empty()) {
    Result<std::vector<ConfigEntry>> entries = ReadConfigFile(config_path);
    Status st = entries.ok() ? ApplyConfig(app, *entries, config_path) : entries.status();
    if (!st.ok()) {
      err << name << ": error: " << st.message() << std::endl;
      return kExitUsage;
    }
  }
  return std::nullopt;
}

std::optional<int> ParseCommandLine(CLI::App& app, int argc, const char* const* argv) {
  return ParseCommandLine(app, argc, argv, std::cout, std::cerr);
}

Result<HostPort> ParseHostPort(std::string_view text, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        fmt::format("{}: '{}' is not host:port ({})", what, text, why));
  };
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("no ':port'");
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return bad("empty host");
  int port = 0;
  std::string_view digits = text.substr(colon + 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || port < 0 ||
      port > 65535) {
    return bad("port must be 0..65535");
  }
  return HostPort{std::string(host), port};
}

}  // namespace sluice
