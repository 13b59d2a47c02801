// Loading custom operators from shared libraries (lib/engine/plugin_api.h).
//
// Module sluice::engine owns it; Pipeline::Create is its caller. The path
// it is given is the one the worker's PathPolicy resolved the plugin's name
// to (lib/engine/confinement.h: inside a plugin dir), never a job's own. A
// library is dlopen()ed (RTLD_NOW | RTLD_LOCAL) the first time its path is
// asked for, its entry points checked, and the handle kept for the life of the
// process: an Operator's code must never be unmapped under a running
// Pipeline, so nothing is ever dlclose()d. A path that failed is tried
// again next time (the file may have been deployed since). A library
// replaced in place under a running worker keeps its first version in that
// worker; docs/jobs.md tells users to deploy new versions under new names.
//
// Errors name the path and say what to fix:
//   FAILED_PRECONDITION  the file on this worker: missing, not a shared
//                        library (or its dependencies missing), not a
//                        Sluice plugin (a symbol missing), another API version
//   INVALID_ARGUMENT     a relative path; create() refusing the config
//
// Thread-safe: Pipelines are created on many threads at once.
#pragma once

#include <memory>
#include <string_view>

#include "lib/common/status.h"
#include "lib/engine/expr.h"
#include "lib/engine/plugin_api.h"
#include "proto/job.pb.h"

namespace sluice::engine {

// An engine value as a plugin sees it, and back (strings are views, copied
// by neither).
inline plugin::Value ToPlugin(const Value& v) {
  if (const auto* s = std::get_if<std::string_view>(&v)) return plugin::Value::String(*s);
  if (const double* d = std::get_if<double>(&v)) return plugin::Value::Number(*d);
  if (const bool* b = std::get_if<bool>(&v)) return plugin::Value::Bool(*b);
  return plugin::Value::Null();
}

inline Value FromPlugin(const plugin::Value& v) {
  switch (v.type) {
    case plugin::Type::kString:
      return v.string.view();
    case plugin::Type::kNumber:
      return v.number;
    case plugin::Type::kBool:
      return v.boolean;
    default:
      return Null{};
  }
}

// Loads `op.path` (resolved from op.name; once per process) and creates one Operator from
// `op.config`. `job` and `line` are handed to the plugin for its messages.
[[nodiscard]] Result<std::unique_ptr<plugin::Operator>> CreatePluginOperator(const proto::PluginOp& op,
                                                                            std::string_view job, int line);

// The same for `update_state: {plugin: ...}` (op.path, op.config): one
// StateUpdater (sluice_plugin_v1_create_state_updater).
[[nodiscard]] Result<std::unique_ptr<plugin::StateUpdater>> CreatePluginStateUpdater(const proto::PluginOp& op,
                                                                                    std::string_view job, int line);

}  // namespace sluice::engine
