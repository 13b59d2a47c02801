#include "lib/common/fs.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

namespace sluice {

Status EnsureDirectory(const std::string& path, std::string_view what) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec || !std::filesystem::is_directory(path)) {
    return absl::FailedPreconditionError(
        fmt::format("{}: cannot create directory '{}': {}", what, path, ec ? ec.message() : "exists and is not a directory"));
  }
  if (::access(path.c_str(), W_OK | X_OK) != 0) {
    return absl::FailedPreconditionError(fmt::format("{}: directory '{}' is not writable", what, path));
  }
  return absl::OkStatus();
}

Status ValidateId(std::string_view id, std::string_view what) {
  if (id.empty()) return absl::InvalidArgumentError(fmt::format("{}: must be set", what));
  bool ok = !id.empty() && id.size() <= 64 && id.front() != '.';
  for (char c : id) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(fmt::format("{}: '{}' is not a valid id (1-64 of letters, digits, '_', '.', '-')", what, id));
  }
  return absl::OkStatus();
}

}  // namespace sluice
