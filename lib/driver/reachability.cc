#include "lib/driver/reachability.h"

#include <algorithm>

namespace sluice::driver {

void WorkerReachability::Report(const std::string &reporter,
                                const std::vector<std::string> &unreachable,
                                int64_t now_ms) {
  std::erase_if(broken_, [now_ms](const auto &link) {
    return now_ms - link.second.last_ms >= kBrokenForMs;
  });
  for (const std::string &w : unreachable) {
    if (w == reporter || w.empty())
      continue;
    Link &link = broken_[reporter < w ? std::make_pair(reporter, w)
                                      : std::make_pair(w, reporter)];
    link.last_ms = std::max(link.last_ms, now_ms);
    ++link.reports;
  }
}

std::set<std::string>
WorkerReachability::CutOff(const std::set<std::string> &live,
                           int64_t now_ms) const {
  std::set<std::string> kept = live;
  std::set<std::string> cut;
  while (kept.size() > 2) {
    struct Count {
      int links = 0;
      int64_t reports = 0;
      auto operator<=>(const Count &) const = default;
    };
    std::map<std::string, Count> counts;
    for (const auto &[ends, link] : broken_) {
      if (now_ms - link.last_ms >= kBrokenForMs || !kept.contains(ends.first) ||
          !kept.contains(ends.second))
        continue;
      for (const std::string &end : {ends.first, ends.second}) {
        ++counts[end].links;
        counts[end].reports += link.reports;
      }
    }
    const int others = static_cast<int>(kept.size()) - 1;
    const std::string *worst = nullptr;
    bool tied = false;
    for (const auto &[worker, count] : counts) {
      if (count.links < 2 || 2 * count.links <= others)
        continue;
      if (worst == nullptr || count > counts[*worst]) {
        worst = &worker;
        tied = false;
      } else if (count == counts[*worst]) {
        tied = true;
      }
    }
    if (worst == nullptr || tied)
      break; // nobody, or the links cannot tell who
    cut.insert(*worst);
    kept.erase(*worst);
  }
  return cut;
}

} // namespace sluice::driver
