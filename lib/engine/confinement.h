// PathPolicy: where a job's user code may come from and where its output may
// go (docs/security.md "Confined user code and output").
//
// Module sluice::engine owns it; driverd and workerd each hold one, made from
// the same two options. The leader checks a job against it at submit
// (CheckJobSpec: INVALID_ARGUMENT naming the rule); each worker checks again
// at the moment it acts (ResolvePlugins, CheckOutputs: FAILED_PRECONDITION),
// since the worker's disk, not the driver's, is the one that counts:
//
//   plugin-dirs  a plugin is named (`name: uppercase_plugin`), never given by
//                path; the worker loads NAME.so or libNAME.so from the first
//                plugin dir that has one, and only if its realpath is inside
//                that dir's realpath (no symlink out).
//   output-dirs  a file sink's path and a dead-letter directory are at or
//                under one of them: lexically at submit (no `..` at all), by
//                the realpath of the nearest existing ancestor on the worker.
//
// With a list empty, everything that needs it is refused. Plain data, not
// changed once the daemon starts: the checks are thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "lib/common/status.h"
#include "proto/job.pb.h"

namespace CLI {
class App;
}

namespace sluice::engine {

struct PathPolicy {
  std::vector<std::string> plugin_dirs;  // absolute; searched in order
  std::vector<std::string> output_dirs;  // absolute

  // Declares --plugin-dirs and --output-dirs (comma-separated; config keys
  // plugin-dirs, output-dirs) on `app`.
  void Register(CLI::App& app);
  // INVALID_ARGUMENT naming the option: a relative directory, one with `..`.
  [[nodiscard]] Status Validate() const;

  // At submit: plugins named (never by path) and plugin-dirs configured;
  // file sink and dead-letter directories lexically inside output-dirs.
  [[nodiscard]] Status CheckJobSpec(const proto::JobSpec& spec) const;

  // On the worker: the realpath of the library for plugin `name`;
  // FAILED_PRECONDITION when missing or outside the plugin dirs.
  [[nodiscard]] Result<std::string> ResolvePlugin(std::string_view name) const;
  // On the worker: `path` (absolute) is at or under an output dir, by the
  // realpath of its nearest existing ancestor. FAILED_PRECONDITION if not.
  [[nodiscard]] Status CheckOutputPath(const std::string& path) const;

  // On the worker, before a task runs: every plugin of `spec` resolved, its
  // PluginOp.path and UpdateStateOp.plugin replaced by the library's realpath
  // (what the plugin loader opens).
  [[nodiscard]] Status ResolvePlugins(proto::JobSpec* spec) const;
  // On the worker, before a task writes: the file sink's directory and the
  // dead-letter directory (its default <path>/dead-letters too), each
  // through CheckOutputPath.
  [[nodiscard]] Status CheckOutputs(const proto::JobSpec& spec) const;
};

// A plugin name: [A-Za-z0-9_.-]+, not "." or "..", no "..".
bool IsPluginName(std::string_view name);

// The refusal for a plugin given by path (job file and submit): says to use
// name: <the file's stem> and install the library in a plugin dir.
std::string PluginPathRefusal(std::string_view path);

// Whether `spec` loads any plugin.
bool HasPlugins(const proto::JobSpec& spec);

}  // namespace sluice::engine
