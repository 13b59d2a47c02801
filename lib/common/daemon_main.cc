#include "lib/common/daemon_main.h"

#include <cstring>

namespace sluice {
namespace {

constexpr const char* kNotSettings[] = {"help", "version", "config", "check-config"};

bool IsSetting(const std::string& key) {
  for (const char* k : kNotSettings) {
    if (key == k) return false;
  }
  return true;
}

}  // namespace

void PrintEffectiveSettings(const CLI::App& app, std::ostream& out) {
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_lnames().empty()) continue;
    const std::string& key = opt->get_lnames().front();
    if (!IsSetting(key)) continue;
    std::string value;
    if (opt->count() > 0) {
      for (const std::string& r : opt->results()) value += (value.empty() ? "" : ",") + r;
      if (opt->get_expected_min() == 0 && value.empty()) value = "true";  // a bare flag
    } else {
      value = opt->get_default_str();
      if (opt->get_expected_min() == 0 && value.empty()) value = "false";
    }
    out << key << " = " << value << "\n";
  }
}

ConfigReloader::ConfigReloader(const CLI::App& app, int argc, const char* const* argv) {
  const CLI::Option* config = app.get_option_no_throw("--config");
  if (config != nullptr && config->count() > 0) config_path_ = config->as<std::string>();
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--log-level") == 0 || std::strncmp(argv[i], "--log-level=", 12) == 0) {
      log_level_on_command_line_ = true;
    }
  }
  if (config_path_.empty()) return;
  Result<std::vector<ConfigEntry>> entries = ReadConfigFile(config_path_);
  if (entries.ok()) {
    for (const ConfigEntry& e : *entries) file_values_[e.key] = e.value;
  }
}

void ConfigReloader::Reload() {
  if (config_path_.empty()) {
    spdlog::info("reload: no --config file; nothing to reload");
    return;
  }
  Result<std::vector<ConfigEntry>> entries = ReadConfigFile(config_path_);
  if (!entries.ok()) {
    spdlog::error("reload: {}; keeping the running configuration", std::string(entries.status().message()));
    return;
  }
  std::map<std::string, std::string> now;
  for (const ConfigEntry& e : *entries) now[e.key] = e.value;
  int changed = 0;
  for (const auto& [key, value] : now) {
    auto old = file_values_.find(key);
    if (old != file_values_.end() && old->second == value) continue;
    ++changed;
    if (key != "log-level") {
      spdlog::warn("reload: {} changed in {}; it takes effect at the next start", key, config_path_);
      continue;
    }
    if (log_level_on_command_line_) {
      spdlog::warn("reload: log-level is set on the command line, which wins over {}", config_path_);
      continue;
    }
    spdlog::level::level_enum level = spdlog::level::from_str(value);
    if (level == spdlog::level::off && value != "off") {
      spdlog::error("reload: {}: log-level: unknown level '{}' ({}); keeping {}", config_path_, value, kLogLevels,
                    spdlog::level::to_string_view(spdlog::default_logger()->level()));
      continue;
    }
    spdlog::default_logger()->set_level(level);
    // Logged at the new level itself: its letter in the log shows the change took.
    spdlog::log(level, "reload: log level is now {}", value);
  }
  for (const auto& [key, value] : file_values_) {
    if (now.count(key) == 0) {
      ++changed;
      spdlog::warn("reload: {} removed from {}; the running value stays until the next start", key,
                   config_path_);
    }
  }
  if (changed == 0) spdlog::info("reload: {} unchanged", config_path_);
  file_values_ = std::move(now);
}

}  // namespace sluice
