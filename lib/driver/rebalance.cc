#include "lib/driver/rebalance.h"

#include <algorithm>
#include <map>
#include <utility>

namespace sluice::driver {

std::vector<std::string> HoldersAfter(const std::vector<std::string>& holders, const PartitionMove& move) {
  std::vector<std::string> out;
  if (move.role == MoveRole::kOwner) {
    out.push_back(move.to);
    // The old owner keeps a copy: it becomes the replica.
    if (!holders.empty() && holders[0] != move.to) out.push_back(holders[0]);
    return out;
  }
  if (!holders.empty()) out.push_back(holders[0]);
  if (move.to != (holders.empty() ? "" : holders[0])) out.push_back(move.to);
  return out;
}

namespace {

using Key = std::pair<std::string, int32_t>;

class Planner {
 public:
  explicit Planner(const RebalanceInput& in) : in_(in) {
    std::set<std::string> present(in.workers.begin(), in.workers.end());
    present.insert(in.draining.begin(), in.draining.end());
    for (const PartitionHolders& p : in.partitions) {
      Part& part = parts_[{p.job, p.partition}];
      part.stateful = p.stateful;
      // Holders that are gone are the placement's business (the replica
      // takes over at once); only present ones count here.
      for (const std::string& h : p.holders) {
        if (present.contains(h) && std::find(part.eff.begin(), part.eff.end(), h) == part.eff.end()) {
          part.eff.push_back(h);
        }
      }
      if (!p.stateful && part.eff.size() > 1) part.eff.resize(1);
      order_.push_back({p.job, p.partition});
    }
    for (const PartitionMove& m : in.in_flight) {
      auto it = parts_.find({m.job, m.partition});
      if (it == parts_.end()) continue;
      it->second.eff = HoldersAfter(it->second.eff, m);
      it->second.busy = true;
      ++per_job_[m.job];
      ++total_;
    }
  }

  std::vector<PartitionMove> Run() {
    Mandatory();
    Balance(MoveRole::kOwner);
    Balance(MoveRole::kReplica);
    return out_;
  }

 private:
  struct Part {
    bool stateful = true;
    std::vector<std::string> eff;
    bool busy = false;
  };

  bool Usable(const std::string& w) const {
    return std::find(in_.workers.begin(), in_.workers.end(), w) != in_.workers.end();
  }
  bool Can(const std::string& job) const {
    auto it = per_job_.find(job);
    return total_ < in_.max_total && (it == per_job_.end() ? 0 : it->second) < in_.max_per_job;
  }
  // Partitions each usable worker owns (index 0) or copies (index 1).
  std::map<std::string, int> Counts(MoveRole role) const {
    std::map<std::string, int> n;
    for (const std::string& w : in_.workers) n[w] = 0;
    const size_t i = role == MoveRole::kOwner ? 0 : 1;
    for (const auto& [key, part] : parts_) {
      if (part.eff.size() > i && n.contains(part.eff[i])) ++n[part.eff[i]];
    }
    return n;
  }
  // The usable worker with the fewest, other than `except`; "" if none.
  std::string Least(MoveRole role, const std::string& except) const {
    const std::map<std::string, int> n = Counts(role);
    std::string best;
    for (const std::string& w : in_.workers) {
      if (w == except) continue;
      if (best.empty() || n.at(w) < n.at(best)) best = w;
    }
    return best;
  }
  void Add(const Key& key, MoveRole role, const std::string& to) {
    Part& part = parts_.at(key);
    const size_t i = role == MoveRole::kOwner ? 0 : 1;
    PartitionMove m{key.first, key.second, role, part.eff.size() > i ? part.eff[i] : "", to};
    part.eff = HoldersAfter(part.eff, m);
    if (!part.stateful && part.eff.size() > 1) part.eff.resize(1);
    part.busy = true;
    ++per_job_[key.first];
    ++total_;
    out_.push_back(std::move(m));
  }

  void Mandatory() {
    for (const Key& key : order_) {
      Part& part = parts_.at(key);
      if (part.busy || part.eff.empty() || !Can(key.first)) continue;
      const std::string owner = part.eff[0];
      if (in_.draining.contains(owner)) {
        // The replica already has the state: it takes over without a copy.
        std::string to = part.stateful && part.eff.size() > 1 && Usable(part.eff[1]) ? part.eff[1]
                                                                                     : Least(MoveRole::kOwner, "");
        if (!to.empty()) Add(key, MoveRole::kOwner, to);
        continue;
      }
      if (!part.stateful) continue;
      const bool missing = part.eff.size() < 2;
      if (missing || in_.draining.contains(part.eff[1])) {
        std::string to = Least(MoveRole::kReplica, owner);
        if (!to.empty()) Add(key, MoveRole::kReplica, to);
      }
    }
  }

  void Balance(MoveRole role) {
    const size_t i = role == MoveRole::kOwner ? 0 : 1;
    while (total_ < in_.max_total) {
      const std::map<std::string, int> n = Counts(role);
      if (n.empty()) return;
      std::string most = in_.workers.front(), least = in_.workers.front();
      for (const std::string& w : in_.workers) {
        if (n.at(w) > n.at(most)) most = w;
        if (n.at(w) < n.at(least)) least = w;
      }
      if (n.at(most) - n.at(least) <= 1) return;
      // Sticky: one partition of the most loaded worker, preferably one whose
      // other holder is the target (an owner move is then a swap, no copy).
      const Key* pick = nullptr;
      for (const Key& key : order_) {
        const Part& part = parts_.at(key);
        if (part.busy || part.eff.size() <= i || part.eff[i] != most || !Can(key.first)) continue;
        if (role == MoveRole::kReplica && (!part.stateful || part.eff[0] == least)) continue;
        const bool swap = role == MoveRole::kOwner && part.eff.size() > 1 && part.eff[1] == least;
        if (pick == nullptr || swap) pick = &key;
        if (swap) break;
      }
      if (pick == nullptr) return;
      Add(*pick, role, least);
    }
  }

  const RebalanceInput& in_;
  std::map<Key, Part> parts_;
  std::vector<Key> order_;
  std::map<std::string, int> per_job_;
  int total_ = 0;
  std::vector<PartitionMove> out_;
};

}  // namespace

std::vector<PartitionMove> PlanMoves(const RebalanceInput& input) {
  if (input.workers.empty()) return {};
  return Planner(input).Run();
}

}  // namespace sluice::driver
