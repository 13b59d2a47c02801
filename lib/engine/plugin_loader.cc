#include "lib/engine/plugin_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace sluice::engine {
namespace {

using VersionFn = int (*)();
using CreateFn = plugin::Operator* (*)(const plugin::Config*, char*, size_t);
using CreateStateFn = plugin::StateUpdater* (*)(const plugin::Config*, char*, size_t);

// A library's entry points; a plugin has at least one of the two creates.
struct Library {
  CreateFn create = nullptr;
  CreateStateFn create_state = nullptr;
};

// Loaded libraries by path, for the life of the process (never dlclose()d).
class LibraryCache {
 public:
  static LibraryCache& Get() {
    static LibraryCache* cache = new LibraryCache;  // never destroyed: plugins may run during exit
    return *cache;
  }

  Result<Library> Load(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = loaded_.find(path); it != loaded_.end()) return it->second;
    ASSIGN_OR_RETURN(Library lib, Open(path));
    loaded_.emplace(path, lib);
    return lib;
  }

 private:
  static Result<Library> Open(const std::string& path) {
    if (path.empty() || path[0] != '/') {
      return absl::InvalidArgumentError(fmt::format(
          "'{}' is not an absolute path (a worker loads the realpath its PathPolicy resolved a plugin's name to)",
          path));
    }
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      const int err = errno;
      return absl::FailedPreconditionError(fmt::format(
          "{}: {} on this worker (a plugin must be installed in a plugin dir of every worker)", path,
          err == ENOENT ? "no such file" : std::strerror(err)));
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(fmt::format("{}: not a regular file", path));
    }
    ::dlerror();  // clears an earlier error
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      std::string_view why = ::dlerror() ?: "unknown error";
      if (why.substr(0, path.size() + 2) == path + ": ") why.remove_prefix(path.size() + 2);  // named once is enough
      return absl::FailedPreconditionError(fmt::format("{}: cannot load it as a shared library: {}", path, why));
    }
    // From here on the handle stays open even on error: closing a library
    // whose constructors ran is not always safe, and the cost is one mapping.
    auto symbol = [&](const char* name) -> Result<void*> {
      ::dlerror();
      void* sym = ::dlsym(handle, name);
      if (sym == nullptr) {
        return absl::FailedPreconditionError(fmt::format(
            "{}: not a Sluice plugin: it does not export {}() (see lib/engine/plugin_api.h)", path, name));
      }
      return sym;
    };
    ASSIGN_OR_RETURN(void* version_sym, symbol("sluice_plugin_api_version"));
    const int version = reinterpret_cast<VersionFn>(version_sym)();
    if (version != plugin::kSluicePluginApiVersion) {
      return absl::FailedPreconditionError(fmt::format(
          "{}: built for plugin API version {}, but this worker supports version {}; rebuild it against this "
          "release's plugin_api.h",
          path, version, plugin::kSluicePluginApiVersion));
    }
    Library lib;
    lib.create = reinterpret_cast<CreateFn>(::dlsym(handle, "sluice_plugin_v1_create"));
    lib.create_state = reinterpret_cast<CreateStateFn>(::dlsym(handle, "sluice_plugin_v1_create_state_updater"));
    if (lib.create == nullptr && lib.create_state == nullptr) {
      return symbol("sluice_plugin_v1_create").status();  // names the usual one
    }
    return lib;
  }

  std::mutex mu_;
  std::map<std::string, Library> loaded_;  // guarded by mu_
};

}  // namespace

namespace {

// Calls a create entry point with the op's config; its errors named.
template <typename T, typename Fn>
Result<std::unique_ptr<T>> Create(Fn create, const proto::PluginOp& op, std::string_view job, int line) {
  std::vector<plugin::ConfigEntry> entries;
  entries.reserve(op.config().size());
  for (const auto& [k, v] : op.config()) entries.push_back({std::string_view(k), std::string_view(v)});
  std::sort(entries.begin(), entries.end(),
            [](const plugin::ConfigEntry& a, const plugin::ConfigEntry& b) { return a.key.view() < b.key.view(); });
  plugin::Config config;
  config.entries = entries.data();
  config.size = entries.size();
  config.path = std::string_view(op.path());
  config.job = job;
  config.line = line;

  char error[1024] = {};
  T* created = nullptr;
  try {
    created = create(&config, error, sizeof(error));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(fmt::format("{}: create threw: {}", op.path(), e.what()));
  } catch (...) {
    return absl::InvalidArgumentError(fmt::format("{}: create threw", op.path()));
  }
  error[sizeof(error) - 1] = '\0';
  if (created == nullptr) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {}", op.path(), error[0] != '\0' ? error : "the plugin refused its config (no reason given)"));
  }
  return std::unique_ptr<T>(created);
}

}  // namespace

Result<std::unique_ptr<plugin::Operator>> CreatePluginOperator(const proto::PluginOp& op, std::string_view job,
                                                              int line) {
  ASSIGN_OR_RETURN(Library lib, LibraryCache::Get().Load(op.path()));
  if (lib.create == nullptr) {
    return absl::FailedPreconditionError(fmt::format(
        "{}: not an operator plugin: it does not export sluice_plugin_v1_create() (a state updater belongs in "
        "update_state)",
        op.path()));
  }
  return Create<plugin::Operator>(lib.create, op, job, line);
}

Result<std::unique_ptr<plugin::StateUpdater>> CreatePluginStateUpdater(const proto::PluginOp& op,
                                                                      std::string_view job, int line) {
  ASSIGN_OR_RETURN(Library lib, LibraryCache::Get().Load(op.path()));
  if (lib.create_state == nullptr) {
    return absl::FailedPreconditionError(fmt::format(
        "{}: not a state updater: it does not export sluice_plugin_v1_create_state_updater() (see "
        "lib/engine/plugin_api.h)",
        op.path()));
  }
  return Create<plugin::StateUpdater>(lib.create_state, op, job, line);
}

}  // namespace sluice::engine
