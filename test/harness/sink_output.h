// Reading what a job's file sink wrote, in the integration tests: the lines
// of every output file with the batch that wrote it, and the few JSON fields
// the tests check (without a JSON parser: the sinks' lines are flat).
//
// Header only, for test programs (it reports an unreadable file as a test
// failure). Thread-compatible.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "spdlog/fmt/fmt.h"
#include "test/harness/util.h"

namespace sluice::testing {

// The batch of a sink file, <job>-batch-00000012-part-0003.jsonl -> 12; -1
// for another name.
inline int64_t BatchOfFile(const std::string& name) {
  const size_t at = name.find("-batch-");
  return at == std::string::npos ? -1 : std::strtoll(name.c_str() + at + 7, nullptr, 10);
}

// Every line of every output file of `dir` up to batch `last` (the files of
// committed batches), with the file's batch, in batch order. Files being
// written (or cut short by a kill -9) start with "." and are left out.
inline std::vector<std::pair<int64_t, std::string>> OutputLines(
    const std::string& dir, int64_t last = std::numeric_limits<int64_t>::max()) {
  std::vector<std::pair<int64_t, std::string>> lines;
  if (!std::filesystem::exists(dir)) return lines;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (!f.is_regular_file()) continue;
    const std::string name = f.path().filename().string();
    if (name.starts_with(".") || BatchOfFile(name) > last) continue;
    Result<std::string> text = ReadFile(f.path().string());
    EXPECT_TRUE(text.ok()) << name;
    if (!text.ok()) continue;
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);) lines.emplace_back(BatchOfFile(name), line);
  }
  std::stable_sort(lines.begin(), lines.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return lines;
}

// The text after `"name":` in a flat JSON line, up to the next , or }.
inline std::string_view FieldOf(std::string_view line, std::string_view name) {
  const std::string pattern = fmt::format("\"{}\":", name);
  const size_t at = line.find(pattern);
  if (at == std::string_view::npos) return {};
  const size_t start = at + pattern.size();
  const size_t end = line.find_first_of(",}", start);
  return line.substr(start, end - start);
}

// The first part of a keyed output line's key: {"key":["w12"],...} -> w12.
inline std::string KeyOf(std::string_view line) {
  const size_t at = line.find("\"key\":[\"");
  if (at == std::string_view::npos) return "";
  const size_t start = at + 8;
  return std::string(line.substr(start, line.find('"', start) - start));
}

}  // namespace sluice::testing
