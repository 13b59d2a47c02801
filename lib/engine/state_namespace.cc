#include "lib/engine/state_namespace.h"

#include <charconv>

namespace sluice::engine {
namespace {
constexpr char kLayoutSeparator = '\x1f';
}  // namespace

std::string StateNamespace(std::string_view job_id, int64_t layout) {
  std::string ns(job_id);
  if (layout == 0) return ns;
  ns += kLayoutSeparator;
  ns += std::to_string(layout);
  return ns;
}

ParsedStateNamespace ParseStateNamespace(std::string_view ns) {
  const size_t sep = ns.rfind(kLayoutSeparator);
  if (sep == std::string_view::npos || sep + 1 == ns.size()) return {std::string(ns), 0};
  const std::string_view digits = ns.substr(sep + 1);
  int64_t layout = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), layout);
  if (ec != std::errc() || end != digits.data() + digits.size() || layout <= 0 || digits[0] == '0') {
    return {std::string(ns), 0};
  }
  return {std::string(ns.substr(0, sep)), layout};
}

}  // namespace sluice::engine
