#include "lib/storage/rocksdb_open.h"

#include <filesystem>

#include "rocksdb/env.h"

namespace sluice::storage {

Result<std::unique_ptr<rocksdb::DB>> OpenRocksDb(const std::string& path, rocksdb::Options options,
                                                 rocksdb::Env* env, std::shared_ptr<StoreHealth> health) {
  options.env = env != nullptr ? env : rocksdb::Env::Default();
  if (health != nullptr) options.listeners.push_back(health);
  // Every level above `path`, outermost first.
  std::filesystem::path parents;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  for (const std::filesystem::path& part : parent) {
    parents /= part;
    rocksdb::Status s = options.env->CreateDirIfMissing(parents.string());
    if (!s.ok()) {
      return absl::InternalError(fmt::format("cannot create {} for the database {}: {}", parents.string(), path,
                                             s.ToString()));
    }
  }
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &db);
  if (!s.ok()) {
    const std::string message = fmt::format("cannot open the database {}: {}", path, s.ToString());
    return s.IsCorruption() ? absl::DataLossError(message) : absl::InternalError(message);
  }
  if (health != nullptr) health->Attach(db);
  return std::unique_ptr<rocksdb::DB>(db);
}

}  // namespace sluice::storage
