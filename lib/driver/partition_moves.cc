#include "lib/driver/partition_moves.h"

#include <algorithm>

#include "lib/driver/driver_probe.h"
#include "lib/driver/worker_proxy.h"
#include "lib/engine/keyed.h"
#include "lib/engine/state_namespace.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {
namespace {

// A READY move that the WAL has not completed by then is given up (its
// target's copy may have gone stale); a later round may start it again.
constexpr int64_t kReadyTimeoutMs = 60'000;
constexpr int64_t kRoundIntervalMs = 1'000;

const char* RoleName(MoveRole role) { return role == MoveRole::kOwner ? "owner" : "replica"; }

const proto::ReduceHolders* HoldersOf(const proto::JobState& job, int32_t partition) {
  for (const proto::ReduceHolders& h : job.reduce_holders()) {
    if (h.partition() == partition) return &h;
  }
  return nullptr;
}

}  // namespace

PartitionMoves::~PartitionMoves() {
  std::vector<std::shared_ptr<Move>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, m] : moves_) all.push_back(m);
    all.insert(all.end(), ended_.begin(), ended_.end());
    moves_.clear();
    ended_.clear();
  }
  for (const auto& m : all) m->cancel->Cancel();
  for (const auto& m : all) {
    if (m->thread.joinable()) m->thread.join();
  }
}

std::vector<PartitionMove> PartitionMoves::Round(const proto::ClusterState& state,
                                                 const std::vector<proto::MemberInfo>& live,
                                                 const std::set<std::string>& usable,
                                                 const std::set<std::string>& draining, int64_t epoch, bool plan) {
  std::vector<std::shared_ptr<Move>> to_join;
  std::vector<PartitionMove> started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = clock_->UnixMillis();
    if (epoch != epoch_) {
      // A new term: the WAL's holders are all there is (the moves of an
      // earlier term of this driver were never recorded).
      for (auto& [key, m] : moves_) {
        m->cancel->Cancel();
        ended_.push_back(m);
      }
      moves_.clear();
      epoch_ = epoch;
    }
    for (auto it = moves_.begin(); it != moves_.end();) {
      Move& m = *it->second;
      const PartitionMove& mv = m.move;
      auto job = state.jobs().find(mv.job);
      // A rescale replaces the partitions a move was about: it ends there.
      bool end = job == state.jobs().end() || job->second.stopped() || !usable.contains(mv.to) || m.failed ||
                 job->second.state_layout() != m.layout;
      bool done = false;
      if (!end && !m.warming) {
        const proto::ReduceHolders* h = HoldersOf(job->second, mv.partition);
        const size_t slot = mv.role == MoveRole::kOwner ? 0 : 1;
        done = h != nullptr && h->workers_size() > static_cast<int>(slot) && h->workers(slot) == mv.to;
        end = done || now - m.started_ms > kReadyTimeoutMs;
      }
      if (!end) {
        ++it;
        continue;
      }
      if (done) {
        ++completed_[mv.job];
        if (probe_ != nullptr) probe_->PartitionMoved(mv.job);
        spdlog::info("job {} reduce partition {}: moved to worker {} as {} in {:.1f} s", mv.job, mv.partition, mv.to,
                     RoleName(mv.role), static_cast<double>(now - m.started_ms) / 1000);
      } else {
        spdlog::info("job {} reduce partition {}: move to worker {} as {} given up{}", mv.job, mv.partition, mv.to,
                     RoleName(mv.role), m.failed ? " (its copy failed)" : "");
      }
      m.cancel->Cancel();
      ended_.push_back(it->second);
      it = moves_.erase(it);
    }
    std::erase_if(ended_, [&](const std::shared_ptr<Move>& m) {
      if (!m->finished && m->thread.joinable()) return false;
      to_join.push_back(m);
      return true;
    });
    if (plan || now - last_round_ms_ >= kRoundIntervalMs) {
      last_round_ms_ = now;
      RebalanceInput input;
      for (const proto::MemberInfo& m : live) {
        if (usable.contains(m.id())) input.workers.push_back(m.id());
      }
      std::sort(input.workers.begin(), input.workers.end());
      input.draining = draining;
      for (const auto& [key, m] : moves_) input.in_flight.push_back(m->move);
      std::vector<std::string> job_ids;
      for (const auto& [id, job] : state.jobs()) job_ids.push_back(id);
      std::sort(job_ids.begin(), job_ids.end());  // a deterministic order of moves
      for (const std::string& id : job_ids) {
        const proto::JobState& job = state.jobs().at(id);
        if (job.stopped() || !engine::IsKeyed(job.spec())) continue;
        Result<std::optional<engine::KeyedStage>> stage = engine::KeyedStageOf(job.spec());
        if (!stage.ok() || !*stage) continue;
        // A rescale not yet run (the spec's count is not the holders'): its
        // first batch re-splits the state anyway, so nothing moves before.
        if (job.holders_partitions() > 0 && job.holders_partitions() != (*stage)->reduce_partitions) continue;
        for (const proto::ReduceHolders& h : job.reduce_holders()) {
          if (h.partition() < 0 || h.partition() >= (*stage)->reduce_partitions || h.workers().empty()) continue;
          input.partitions.push_back(PartitionHolders{
              id, h.partition(), (*stage)->stateful(), std::vector<std::string>(h.workers().begin(), h.workers().end())});
        }
      }
      for (const PartitionMove& mv : PlanMoves(input)) {
        auto m = std::make_shared<Move>();
        m->move = mv;
        m->started_ms = now;
        m->layout = state.jobs().at(mv.job).state_layout();
        const proto::JobState& job = state.jobs().at(mv.job);
        const proto::ReduceHolders* h = HoldersOf(job, mv.partition);
        const bool holder = h != nullptr && std::find(h->workers().begin(), h->workers().end(), mv.to) != h->workers().end();
        const bool stateful = std::any_of(input.partitions.begin(), input.partitions.end(), [&](const auto& p) {
          return p.job == mv.job && p.partition == mv.partition && p.stateful;
        });
        spdlog::info("rebalance: job {} reduce partition {}: {} {} -> {}{}", mv.job, mv.partition, RoleName(mv.role),
                     mv.from.empty() ? "(none)" : mv.from, mv.to,
                     !stateful ? " (stateless)" : holder ? " (holds the state already)" : " (warming)");
        // A stateless partition has nothing to copy, and a holder already
        // has the state as of the newest batch.
        if (stateful && !holder) StartWarm(m, job, live, epoch);
        moves_[{mv.job, mv.partition}] = m;
        started.push_back(mv);
      }
    }
  }
  for (const auto& m : to_join) {
    if (m->thread.joinable()) m->thread.join();
  }
  return started;
}

void PartitionMoves::StartWarm(const std::shared_ptr<Move>& m, const proto::JobState& job,
                               const std::vector<proto::MemberInfo>& live, int64_t epoch) {
  proto::WarmStateRequest request;
  request.set_epoch(epoch);
  // The state of a rescaled job lives under its layout's namespace.
  request.set_job_id(engine::StateNamespace(m->move.job, job.state_layout()));
  request.set_partition(m->move.partition);
  request.set_base_batch(job.last_committed_batch());
  std::string address;
  const proto::ReduceHolders* h = HoldersOf(job, m->move.partition);
  // The holders in the WAL's order, the owner first: the copy comes from the
  // worker that will replicate to the target, which then keeps the changes
  // since it (FetchStateRequest.keep_changes).
  for (const proto::MemberInfo& w : live) {
    if (w.id() == m->move.to) address = w.rpc_address();
  }
  if (h != nullptr) {
    for (const std::string& id : h->workers()) {
      auto w = std::find_if(live.begin(), live.end(), [&](const proto::MemberInfo& l) { return l.id() == id; });
      if (w != live.end()) *request.add_holders() = *w;
    }
  }
  if (address.empty() || request.holders().empty()) {
    m->failed = true;
    return;
  }
  m->warming = true;
  m->thread = std::thread([this, m, address, request] {
    proto::WarmStateResponse response;
    Status st = workers_->WarmState(address, request, &response, m->cancel.get());
    if (!st.ok() && !m->cancel->cancelled()) {
      spdlog::warn("job {} reduce partition {}: warming worker {}: {}", request.job_id(), request.partition(),
                   m->move.to, st.ToString());
    }
    std::lock_guard<std::mutex> lock(mu_);
    m->warming = false;
    m->started_ms = clock_->UnixMillis();  // READY's 60 s count from now, not from the warm's start
    m->failed = !st.ok();
    m->finished = true;
  });
}

std::map<int32_t, PartitionMove> PartitionMoves::Ready(const std::string& job) {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<int32_t, PartitionMove> out;
  for (const auto& [key, m] : moves_) {
    if (key.first == job && !m->warming && !m->failed) out[key.second] = m->move;
  }
  return out;
}

std::vector<PartitionMoves::InFlight> PartitionMoves::List() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<InFlight> out;
  for (const auto& [key, m] : moves_) out.push_back({m->move, m->warming});
  return out;
}

std::map<std::string, int64_t> PartitionMoves::Completed() {
  std::lock_guard<std::mutex> lock(mu_);
  return completed_;
}

}  // namespace sluice::driver
