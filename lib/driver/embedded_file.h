// EmbeddedFile: a file compiled into the binary (cmake/EmbedFiles.cmake
// generates the array that holds them), so the driver serves its status
// page's script and charts with no file or network at run time.
//
// Module sluice::driver owns it. Immutable; thread-safe.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace sluice::driver {

struct EmbeddedFile {
  std::string_view name;  // its path under the embedded root, e.g. "app.js"
  std::string_view data;
};

// The status page's files (lib/driver/status_page/ and Debian's dygraphs).
std::span<const EmbeddedFile> StatusPageFiles();

}  // namespace sluice::driver
