#include "lib/engine/confinement.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "CLI/CLI.hpp"

namespace sluice::engine {
namespace {

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// `path` as "/a/b": empty and "." components dropped. INVALID_ARGUMENT for a
// relative path or one with a ".." component (never resolved lexically:
// "/out/link/.." is not "/out" once link is a symlink).
Result<std::string> Normalise(std::string_view path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(fmt::format("'{}' is not an absolute path", path));
  }
  std::string out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    const std::string_view part = path.substr(i, j - i);
    if (part == "..") {
      return absl::InvalidArgumentError(fmt::format("'{}' has a '..' component, which is never allowed", path));
    }
    if (!part.empty() && part != ".") {
      out += '/';
      out += part;
    }
    i = j + 1;
  }
  return out.empty() ? "/" : out;
}

// `path` is `dir` or below it, both normalised: "/data/outside" is not under
// "/data/out".
bool IsWithin(std::string_view path, std::string_view dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.substr(0, dir.size()) == dir && path[dir.size()] == '/');
}

Result<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) {
    return absl::FailedPreconditionError(fmt::format("cannot resolve {}: {}", path, std::strerror(errno)));
  }
  return std::string(buf);
}

// A normalised absolute path as the filesystem has it now: the realpath of
// its nearest ancestor that exists (a dangling symlink counts as existing,
// and cannot be resolved), then the components that do not exist yet.
Result<std::string> ResolveExisting(const std::string& normalised) {
  std::string prefix = normalised;
  std::string rest;
  struct stat st;
  while (::lstat(prefix.c_str(), &st) != 0) {
    if (errno != ENOENT && errno != ENOTDIR) {
      return absl::FailedPreconditionError(fmt::format("cannot inspect {}: {}", prefix, std::strerror(errno)));
    }
    const size_t slash = prefix.rfind('/');
    rest = prefix.substr(slash) + rest;
    prefix = slash == 0 ? "/" : prefix.substr(0, slash);
    if (prefix == "/") break;
  }
  ASSIGN_OR_RETURN(std::string real, RealPath(prefix));
  return real == "/" && !rest.empty() ? rest : real + rest;
}

// No directory listed (`--plugin-dirs ''` lists an empty one).
bool None(const std::vector<std::string>& dirs) {
  return std::all_of(dirs.begin(), dirs.end(), [](const std::string& d) { return d.empty(); });
}

Status CheckList(const std::vector<std::string>& dirs, const char* option) {
  for (const std::string& d : dirs) {
    if (d.empty()) continue;
    if (Result<std::string> n = Normalise(d); !n.ok()) {
      return absl::InvalidArgumentError(fmt::format("{}: {}", option, std::string(n.status().message())));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsPluginName(std::string_view name) {
  if (name.empty() || name == "." || name.find("..") != std::string_view::npos) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

std::string PluginPathRefusal(std::string_view path) {
  std::string_view stem = path.substr(path.rfind('/') == std::string_view::npos ? 0 : path.rfind('/') + 1);
  if (const size_t so = stem.find(".so"); so != std::string_view::npos) stem = stem.substr(0, so);
  if (stem.size() > 3 && stem.substr(0, 3) == "lib") stem.remove_prefix(3);
  const std::string name = IsPluginName(stem) ? std::string(stem) : "NAME";
  return fmt::format(
      "'{}' is a path: plugins are loaded by name from the workers' plugin-dirs: use name: {} and install the "
      "library in one of them",
      path, name);
}

bool HasPlugins(const proto::JobSpec& spec) {
  for (const proto::OperatorSpec& op : spec.operators()) {
    if (op.has_plugin() || (op.has_update_state() && !op.update_state().plugin().empty())) return true;
  }
  return false;
}

void PathPolicy::Register(CLI::App& app) {
  app.add_option("--plugin-dirs", plugin_dirs,
                 "Absolute directories (comma-separated) that plugins are loaded from, by name, searched in "
                 "order; none: jobs with plugins are refused")
      ->delimiter(',');
  app.add_option("--output-dirs", output_dirs,
                 "Absolute directories (comma-separated) that file sinks and dead letters may write at or under; "
                 "none: jobs that write files are refused")
      ->delimiter(',');
}

Status PathPolicy::Validate() const {
  RETURN_IF_ERROR(CheckList(plugin_dirs, "plugin-dirs"));
  return CheckList(output_dirs, "output-dirs");
}

Status PathPolicy::CheckJobSpec(const proto::JobSpec& spec) const {
  const std::string& file = spec.file().empty() ? "job" : spec.file();
  for (int i = 0; i < spec.operators_size(); ++i) {
    const proto::OperatorSpec& op = spec.operators(i);
    auto bad = [&](const std::string& field, const std::string& why) {
      return absl::InvalidArgumentError(
          fmt::format("{}: line {}: operators[{}].{}: {}", file, op.line(), i, field, why));
    };
    std::string name;
    if (op.has_plugin()) {
      if (!op.plugin().path().empty()) return bad("plugin.path", PluginPathRefusal(op.plugin().path()));
      name = op.plugin().name();
    } else if (op.has_update_state() && !op.update_state().plugin().empty()) {
      name = op.update_state().plugin();
      if (name.find('/') != std::string::npos) return bad("update_state.plugin", PluginPathRefusal(name));
    } else {
      continue;
    }
    const std::string field = op.has_plugin() ? "plugin.name" : "update_state.plugin";
    if (!IsPluginName(name)) {
      return bad(field, fmt::format("'{}' is not a plugin name ([A-Za-z0-9_.-]+, without '..')", name));
    }
    if (None(plugin_dirs)) {
      return bad(field, fmt::format("plugin '{}' refused: this cluster loads no plugins; an operator sets "
                                    "plugin-dirs on the drivers and workers to the directories they are "
                                    "installed in",
                                    name));
    }
  }
  auto check_output = [&](const std::string& field, const std::string& path) -> Status {
    if (None(output_dirs)) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: {}: '{}' refused: this cluster writes no files; an operator sets output-dirs on the drivers and "
          "workers to the directories file sinks and dead letters may write under",
          file, field, path));
    }
    Result<std::string> n = Normalise(path);
    if (!n.ok()) {
      return absl::InvalidArgumentError(fmt::format("{}: {}: {} (output paths are absolute, under output-dirs: {})",
                                                    file, field, std::string(n.status().message()), Join(output_dirs)));
    }
    for (const std::string& dir : output_dirs) {
      if (Result<std::string> d = Normalise(dir); d.ok() && IsWithin(*n, *d)) return absl::OkStatus();
    }
    return absl::InvalidArgumentError(
        fmt::format("{}: {}: '{}' is outside output-dirs: file sinks and dead letters write at or under one of {}",
                    file, field, path, Join(output_dirs)));
  };
  if (spec.sink().has_file()) RETURN_IF_ERROR(check_output("sink.file.path", spec.sink().file().path()));
  if (!spec.dead_letters().empty()) RETURN_IF_ERROR(check_output("dead_letters", spec.dead_letters()));
  return absl::OkStatus();
}

Result<std::string> PathPolicy::ResolvePlugin(std::string_view name) const {
  if (!IsPluginName(name)) {
    return absl::FailedPreconditionError(
        fmt::format("'{}' is not a plugin name ([A-Za-z0-9_.-]+, without '..')", name));
  }
  if (None(plugin_dirs)) {
    return absl::FailedPreconditionError(
        fmt::format("plugin '{}': this worker has no plugin-dirs, so it loads no plugins", name));
  }
  std::vector<std::string> files = {fmt::format("{}.so", name), fmt::format("lib{}.so", name)};
  if (name.ends_with(".so")) files.insert(files.begin(), std::string(name));
  for (const std::string& listed : plugin_dirs) {
    Result<std::string> normalised = Normalise(listed);
    if (!normalised.ok()) continue;  // Validate refused it
    const std::string& dir = *normalised;
    for (const std::string& f : files) {
      const std::string candidate = dir + "/" + f;
      struct stat st;
      if (::lstat(candidate.c_str(), &st) != 0) continue;
      Result<std::string> real_dir = RealPath(dir);
      Result<std::string> real = RealPath(candidate);
      if (!real_dir.ok() || !real.ok()) {
        return absl::FailedPreconditionError(fmt::format(
            "plugin '{}': {}", name, std::string((!real_dir.ok() ? real_dir.status() : real.status()).message())));
      }
      if (*real == *real_dir || !IsWithin(*real, *real_dir)) {
        return absl::FailedPreconditionError(fmt::format(
            "plugin '{}': {} is {}, outside the plugin dir {}: a plugin must be a file inside a plugin dir "
            "(no symlink out of it)",
            name, candidate, *real, *real_dir));
      }
      return *real;
    }
  }
  std::string looked_for;
  for (size_t i = 0; i < files.size(); ++i) looked_for += (i == 0 ? "" : i + 1 == files.size() ? " or " : ", ") + files[i];
  return absl::FailedPreconditionError(
      fmt::format("plugin '{}': no {} in plugin-dirs {} on this worker", name, looked_for, Join(plugin_dirs)));
}

Status PathPolicy::CheckOutputPath(const std::string& path) const {
  if (None(output_dirs)) {
    return absl::FailedPreconditionError(
        fmt::format("{}: this worker has no output-dirs, so it writes no files", path));
  }
  Result<std::string> n = Normalise(path);
  if (!n.ok()) return absl::FailedPreconditionError(n.status().message());
  ASSIGN_OR_RETURN(std::string real, ResolveExisting(*n));
  for (const std::string& dir : output_dirs) {
    Result<std::string> d = Normalise(dir);
    if (!d.ok()) continue;
    Result<std::string> real_dir = ResolveExisting(*d);
    if (real_dir.ok() && IsWithin(real, *real_dir)) return absl::OkStatus();
  }
  return absl::FailedPreconditionError(fmt::format(
      "{} is {} on this worker, outside output-dirs {}: file sinks and dead letters write at or under one of "
      "them (no symlink out of them)",
      path, real, Join(output_dirs)));
}

Status PathPolicy::ResolvePlugins(proto::JobSpec* spec) const {
  const std::string& file = spec->file().empty() ? "job" : spec->file();
  for (int i = 0; i < spec->operators_size(); ++i) {
    proto::OperatorSpec* op = spec->mutable_operators(i);
    const bool is_op = op->has_plugin();
    if (!is_op && !(op->has_update_state() && !op->update_state().plugin().empty())) continue;
    std::string* path = is_op ? op->mutable_plugin()->mutable_path() : op->mutable_update_state()->mutable_plugin();
    const std::string name = is_op ? op->plugin().name() : op->update_state().plugin();
    Result<std::string> resolved = absl::FailedPreconditionError("");
    if ((is_op && !path->empty()) || name.find('/') != std::string::npos) {
      resolved = absl::FailedPreconditionError(PluginPathRefusal(is_op ? *path : name));
    } else {
      resolved = ResolvePlugin(name);
    }
    if (!resolved.ok()) {
      return absl::FailedPreconditionError(fmt::format("{}: line {}: operators[{}].{}: {}", file, op->line(), i,
                                                       is_op ? "plugin" : "update_state.plugin",
                                                       std::string(resolved.status().message())));
    }
    *path = std::move(*resolved);
  }
  return absl::OkStatus();
}

Status PathPolicy::CheckOutputs(const proto::JobSpec& spec) const {
  if (spec.sink().has_file()) RETURN_IF_ERROR(CheckOutputPath(spec.sink().file().path()));
  // The dead letters' default directory is checked too: a symlink named
  // dead-letters in the sink's directory must not lead out of it.
  std::string dead = spec.dead_letters();
  if (dead.empty() && spec.sink().has_file()) dead = spec.sink().file().path() + "/dead-letters";
  if (!dead.empty()) RETURN_IF_ERROR(CheckOutputPath(dead));
  return absl::OkStatus();
}

}  // namespace sluice::engine
