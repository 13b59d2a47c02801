// WorkerReachability: which workers the other workers cannot reach, from
// what failed tasks said (a task that could not push its shuffle output to,
// copy its state to or fetch it from another worker names that worker;
// rpc::UnreachablePeers). docs/jobs.md "When workers fail during a batch".
//
// Module sluice::driver owns it; the Scheduler keeps one. A report "R could
// not reach W" marks the link between R and W broken for kBrokenForMs (which
// end is at fault is not known from one report). The cut-off workers are
// found one at a time: of the workers still kept, the one whose broken links
// join it to at least two others and to more than half of them, the most
// links (then the most reports) first, is cut off, and the links among the
// rest are counted again. In a cluster of three, the worker whose links to
// both others are broken is cut off; a spurious report between the other two
// (e.g. a slow state copy while the partitions move) then leaves them kept,
// and in four a worker cut from all three does not drag two of the others
// with it. A split of two (A cannot reach B, both reach the others) marks
// nobody, and neither do links that cannot tell the workers apart (every
// link of three broken, as often reported). A link unheard of for
// kBrokenForMs counts as mended, so a worker whose cut healed gets work
// again, and is marked again at once if it is still cut off. The workers
// that can still reach each other are kept: a cut-off worker runs no task
// whose output must be pushed to other workers and owns no reduce partition,
// and its state is taken from the other holder.
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
  struct Link {
    int64_t last_ms = 0;  // the last report
    int64_t reports = 0;  // since it broke
  };
  std::map<std::pair<std::string, std::string>, Link> broken_;  // (lower id, higher id)
};

}  // namespace sluice::driver
