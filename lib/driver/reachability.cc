#include "lib/driver/reachability.h"

#include <algorithm>

namespace sluice::driver {

void WorkerReachability::Report(const std::string& reporter, const std::vector<std::string>& unreachable,
                                int64_t now_ms) {
  for (const std::string& w : unreachable) {
    if (w == reporter || w.empty()) continue;
    int64_t& at = broken_[reporter < w ? std::make_pair(reporter, w) : std::make_pair(w, reporter)];
    at = std::max(at, now_ms);
  }
  std::erase_if(broken_, [now_ms](const auto& link) { return now_ms - link.second >= kBrokenForMs; });
}

std::set<std::string> WorkerReachability::CutOff(const std::set<std::string>& live, int64_t now_ms) const {
  std::map<std::string, int> broken_links;
  for (const auto& [link, at] : broken_) {
    if (now_ms - at >= kBrokenForMs || !live.contains(link.first) || !live.contains(link.second)) continue;
    ++broken_links[link.first];
    ++broken_links[link.second];
  }
  const int others = static_cast<int>(live.size()) - 1;
  std::set<std::string> cut;
  for (const auto& [worker, n] : broken_links) {
    if (n >= 2 && 2 * n > others) cut.insert(worker);
  }
  if (cut.size() == live.size()) cut.clear();  // nobody to keep: the links say nothing useful
  return cut;
}

}  // namespace sluice::driver
