// ReadZkAuthFile: the credentials Sluice presents to ZooKeeper, from the file
// named by zk-auth-file (one line `user:password`, mode 600).
//
// Module sluice::common owns it; the daemons check the file at start
// (DaemonOptions::Validate) and sluicectl reads the same file. Thread-safe.
#pragma once

#include <string>

#include "lib/common/status.h"

namespace sluice {

// "user:password" from `path`: its first line, without a trailing "\r\n".
// INVALID_ARGUMENT naming `path` if it cannot be read, is empty, has no ':'
// (or an empty user or password), or is readable by group or others.
[[nodiscard]] Result<std::string> ReadZkAuthFile(const std::string& path);

}  // namespace sluice
