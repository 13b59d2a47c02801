// The golden files of the persisted formats (test/golden/): what the
// writer puts in them, and how the reader turns each back into text.
//
// Part of test/unit (golden_writer and golden_test). Write* make, with the
// current build, a driver WAL, a state store and a block log in `dir`; Dump*
// open a copy of one with the current build's readers and print everything
// they read back, in a stable text (the .txt beside each golden directory).
// Not thread-safe (one caller).
#pragma once

#include <string>

#include "lib/common/status.h"

namespace sluice::golden {

// The formats' directories: test/golden/<name>/v<N>/db, the database, and
// test/golden/<name>/v<N>/expected.txt, the text read back from it.
inline constexpr char kWal[] = "wal";
inline constexpr char kState[] = "state";
inline constexpr char kBlockLog[] = "block_log";

[[nodiscard]] Status WriteWal(const std::string& dir);
[[nodiscard]] Status WriteState(const std::string& dir);
[[nodiscard]] Status WriteBlockLog(const std::string& dir);

// Each reads the database at `dir` in place (callers open a copy).
[[nodiscard]] Result<std::string> DumpWal(const std::string& dir);
[[nodiscard]] Result<std::string> DumpState(const std::string& dir);
[[nodiscard]] Result<std::string> DumpBlockLog(const std::string& dir);

// Copies the RocksDB directory `from` to `to` without RocksDB's LOCK and
// LOG files (the golden directories never hold them).
[[nodiscard]] Status CopyDb(const std::string& from, const std::string& to);

}  // namespace sluice::golden
