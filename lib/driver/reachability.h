// WorkerReachability: which workers the other workers cannot reach, from
// what failed tasks said (a task that could not push its shuffle output to,
// copy its state to or fetch it from another worker names that worker;
// rpc::UnreachablePeers). docs/jobs.md "When workers fail during a batch".
//
// Module sluice::driver owns it; the Scheduler keeps one. A report "R could
// not reach W" marks the link between R and W broken for kBrokenForMs (which
// end is at fault is not known from one report). A worker is *cut off* when
// broken links join it to at least two other live workers and to more than
// half of them: in a cluster of three, the worker whose links to both others
// are broken. The workers that can still reach each other are then kept: a
// cut-off worker runs no task whose output must be pushed to other workers
// and owns no reduce partition, and its state is taken from the other holder.
// A split of two (A cannot reach B, both reach the others) marks nobody, and
// neither does a cluster where every worker would be cut off. A link unheard
// of for kBrokenForMs counts as mended, so a worker whose cut healed gets
// work again, and is marked again at once if it is still cut off.
//
// Thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace sluice::driver {

class WorkerReachability {
 public:
  static constexpr int64_t kBrokenForMs = 10'000;

  // `reporter` could not reach each of `unreachable` at `now_ms`.
  void Report(const std::string& reporter, const std::vector<std::string>& unreachable, int64_t now_ms);

  // Of the `live` workers, those cut off from the others at `now_ms`.
  std::set<std::string> CutOff(const std::set<std::string>& live, int64_t now_ms) const;

 private:
  std::map<std::pair<std::string, std::string>, int64_t> broken_;  // (lower id, higher id) -> last report
};

}  // namespace sluice::driver
