#include "lib/common/zk_auth_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace sluice {

Result<std::string> ReadZkAuthFile(const std::string& path) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(fmt::format("zk-auth-file: {}: {}", path, why));
  };
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return bad(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return bad("not a regular file");
  if ((st.st_mode & 077) != 0) {
    return bad(fmt::format("readable by group or others (mode {:03o}); chmod 600 it", st.st_mode & 0777));
  }
  std::ifstream in(path);
  if (!in) return bad(std::strerror(errno));
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.empty()) return bad("empty; it must hold one line user:password");
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return bad("has no ':'; it must hold one line user:password");
  if (colon == 0 || colon + 1 == line.size()) return bad("the user and the password must not be empty");
  return line;
}

}  // namespace sluice
