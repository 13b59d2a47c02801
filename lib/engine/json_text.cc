#include "lib/engine/json_text.h"

#include <cmath>
#include <cstdint>
#include <iterator>

#include "fmt/format.h"

namespace sluice::engine {

namespace {

bool NeedsEscape(char c) { return c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20; }

}  // namespace

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  // Runs of characters that need no escape are appended whole.
  size_t run = 0;
  while (run < s.size() && !NeedsEscape(s[run])) ++run;
  out->append(s.data(), run);
  for (char c : s.substr(run)) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(*out), "\\u{:04x}", static_cast<int>(c));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void AppendJsonNumber(double d, std::string* out) {
  if (!std::isfinite(d)) {
    out->append("null");
  } else if (d == std::trunc(d) && std::fabs(d) < 9007199254740992.0) {
    fmt::format_to(std::back_inserter(*out), "{}", static_cast<int64_t>(d));
  } else {
    fmt::format_to(std::back_inserter(*out), "{}", d);
  }
}

}  // namespace sluice::engine
