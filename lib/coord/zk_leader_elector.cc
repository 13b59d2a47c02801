#include "lib/coord/zk_leader_elector.h"

#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "google/protobuf/text_format.h"
#include "spdlog/spdlog.h"

namespace sluice::coord {

int64_t CandidateSequence(const std::string& name) {
  if (name.rfind("n_", 0) != 0 || name.size() < 12) return -1;
  const std::string digits = name.substr(name.size() - 10);
  if (!std::all_of(digits.begin(), digits.end(), ::isdigit)) return -1;
  return std::stoll(digits);
}

// All state lives here and every step runs on the session's event thread;
// tasks hold a weak_ptr, so a task that outlives the elector does nothing.
class ZkLeaderElector::Impl : public std::enable_shared_from_this<ZkLeaderElector::Impl> {
 public:
  Impl(ZkSession* session, std::string root, proto::LeaderInfo self)
      : session_(session), root_(std::move(root)), self_(std::move(self)) {
    std::random_device rd;
    token_ = fmt::format("{:016x}", (static_cast<uint64_t>(rd()) << 32) | rd());
    const int timeout = session_->session_timeout_ms();
    lease_ = std::chrono::milliseconds(timeout / 2);
    renew_every_ = std::chrono::milliseconds(std::max(50, timeout / 6));
  }

  void SetCallbacks(Callbacks cb) {
    std::lock_guard<std::mutex> lock(mu_);
    callbacks_ = std::move(cb);
  }

  void OnEvent(ZkSession::Event event) {
    switch (event) {
      case ZkSession::Event::kDisconnected:
        // Keep the term: if the same session comes back, no one else can
        // have led meanwhile (our znode lived on). IsLeader() is false while
        // disconnected, and the lease lapses before the server could expire
        // the session, so nothing is issued in the gap.
        spdlog::warn("election: {} lost its ZooKeeper connection{}", self_.id(),
                     leading_.load() ? "; suspended until it is back" : "");
        break;
      case ZkSession::Event::kExpired:
        Lose("ZooKeeper session expired");
        my_node_.clear();
        break;
      case ZkSession::Event::kConnected:  // a new session: our old znode is gone
        my_node_.clear();
        Check();
        break;
      case ZkSession::Event::kReconnected:
        Check();
        break;
    }
  }

  // Where do we stand? Creates our candidate znode if needed, then leads or
  // watches the predecessor.
  void Check() {
    if (stopped_.load() || !session_->connected()) return;
    const std::string dir = root_ + "/election";
    if (my_node_.empty() && !CreateCandidate(dir)) return RetryLater();
    const auto check_started = session_->clock()->Now();
    Result<std::vector<std::string>> children = session_->GetChildren(dir);
    if (!children.ok()) return RetryLater();
    std::vector<std::pair<int64_t, std::string>> candidates;
    for (const std::string& c : *children) {
      int64_t seq = CandidateSequence(c);
      if (seq >= 0) candidates.emplace_back(seq, c);
    }
    std::sort(candidates.begin(), candidates.end());
    const std::string mine = my_node_.substr(dir.size() + 1);
    auto it = std::find_if(candidates.begin(), candidates.end(),
                           [&](const auto& c) { return c.second == mine; });
    if (it == candidates.end()) {  // deleted under us: stand again
      Lose("election znode vanished");
      my_node_.clear();
      return Post([](Impl* self) { self->Check(); });
    }
    if (it == candidates.begin()) {
      if (!leading_.load()) BecomeLeader(check_started);
      return;
    }
    Lose("another candidate is ahead");
    const std::string predecessor = dir + "/" + std::prev(it)->second;
    std::weak_ptr<Impl> weak = weak_from_this();
    Status st = session_->Exists(predecessor, [weak] {
      if (auto self = weak.lock()) self->Check();
    });
    if (absl::IsNotFound(st)) return Post([](Impl* self) { self->Check(); });
    if (!st.ok()) RetryLater();
  }

  void Stop() {
    // Runs on the caller's thread: deleting our znode hands over at once.
    // A candidate znode being created meanwhile on the coordinator's thread
    // is either seen here or deleted by its creator (SetMyNode): under mu_,
    // one of the two comes first. Left behind in a live session, it would
    // head the election for nobody, and no driver would ever lead.
    std::string node;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped_ = true;
      node = my_node_copy_;
    }
    Lose("stopping");
    if (!node.empty() && session_->Delete(node).ok()) return;
    // A candidate of ours may still be there: one whose create's reply was
    // lost (so `node` is empty), or whose delete failed on a lost
    // connection. The session may live on (a fenced leader re-enters the
    // election in it), so remove them by our token, for up to 2 s.
    const std::string dir = root_ + "/election";
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (true) {
      Result<std::vector<std::string>> children = session_->GetChildren(dir);
      bool left = !children.ok();
      for (const std::string& c : children.ok() ? *children : std::vector<std::string>{}) {
        if (c.find(token_) == std::string::npos) continue;
        Status st = session_->Delete(dir + "/" + c);
        left |= !st.ok() && !absl::IsNotFound(st);
      }
      if (!left) return;
      if (std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    spdlog::warn("election: {} could not make sure its candidate znode is gone; it goes with its session",
                 self_.id());
  }

  bool IsLeader() const {
    if (!leading_.load() || !session_->connected()) return false;
    std::lock_guard<std::mutex> lock(mu_);
    return session_->clock()->Now() - lease_start_ < lease_;
  }

  int64_t epoch() const { return epoch_.load(); }

 private:
  bool CreateCandidate(const std::string& dir) {
    // A create whose reply was lost may have succeeded: look for our token first.
    Result<std::vector<std::string>> children = session_->GetChildren(dir);
    if (children.ok()) {
      for (const std::string& c : *children) {
        if (c.find(token_) != std::string::npos) {
          return SetMyNode(dir + "/" + c);
        }
      }
    }
    std::string data;
    google::protobuf::TextFormat::PrintToString(self_, &data);
    Result<std::string> created =
        session_->Create(dir + "/n_" + token_ + "_", data, ZOO_EPHEMERAL_SEQUENTIAL);
    if (!created.ok()) {
      LogRefusal(created.status(), "create candidate znode");
      return false;
    }
    if (!SetMyNode(*created)) return false;
    spdlog::info("election: {} is candidate {}", self_.id(), *created);
    return true;
  }

  // Takes `node` as our candidate; false (and the znode deleted) if Stop()
  // has run meanwhile and so could not delete it.
  bool SetMyNode(const std::string& node) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopped_.load()) {
        my_node_ = node;
        my_node_copy_ = node;
        return true;
      }
    }
    IgnoreError(session_->Delete(node), "a znode of a closed session goes with it");
    return false;
  }

  // Bumps the epoch (CAS) and starts a term. `confirmed_at`: when the call
  // that showed us first was sent; the lease counts from there.
  void BecomeLeader(Clock::TimePoint confirmed_at) {
    const std::string path = root_ + "/epoch";
    int64_t epoch = 0;
    for (int attempt = 0; attempt < 10 && epoch == 0; ++attempt) {
      Result<ZkSession::Node> node = session_->Get(path);
      if (absl::IsNotFound(node.status())) {
        Result<std::string> created = session_->Create(path, "1", 0);
        if (created.ok()) epoch = 1;
        if (absl::IsPermissionDenied(created.status())) {
          LogRefusal(created.status(), "create the epoch");
          return RetryLater();
        }
        continue;
      }
      if (!node.ok()) return RetryLater();
      // The epoch znode is what fences every older leader: one that does not
      // hold a number below the largest is never guessed over (a forged or
      // damaged value would otherwise end the process, or wrap the epoch).
      int64_t current = 0;
      if (!node->data.empty() && (!absl::SimpleAtoi(node->data, &current) || current < 0 ||
                                  current == std::numeric_limits<int64_t>::max())) {
        if (!bad_epoch_logged_) {
          spdlog::error("election: {} holds '{}', not an epoch: not leading until it is repaired (it must hold "
                        "the last epoch, a number)",
                        path, node->data.substr(0, 40));
          bad_epoch_logged_ = true;
        }
        return RetryLater();
      }
      bad_epoch_logged_ = false;
      Status st = session_->Set(path, std::to_string(current + 1), node->version);
      if (st.ok()) {
        epoch = current + 1;
      } else if (!absl::IsAborted(st)) {
        if (absl::IsPermissionDenied(st)) LogRefusal(st, "bump the epoch");
        return RetryLater();
      }
    }
    if (epoch == 0) return RetryLater();
    proto::LeaderInfo info = self_;
    info.set_epoch(epoch);
    std::string data;
    google::protobuf::TextFormat::PrintToString(info, &data);
    IgnoreError(session_->Set(my_node_, data, -1), "detectors fall back to epoch 0");
    if (stopped_.load()) return;
    Callbacks cb;
    {
      std::lock_guard<std::mutex> lock(mu_);
      lease_start_ = confirmed_at;
      cb = callbacks_;
    }
    epoch_ = epoch;
    leading_ = true;
    spdlog::info("election: {} leads with epoch {}", self_.id(), epoch);
    if (cb.elected) cb.elected(epoch);
    ScheduleRenew(epoch);
  }

  void ScheduleRenew(int64_t term) {
    std::weak_ptr<Impl> weak = weak_from_this();
    session_->PostAfter(renew_every_, [weak, term] {
      if (auto self = weak.lock()) self->Renew(term);
    });
  }

  // Re-confirms our znode; the lease counts from when the call was sent.
  void Renew(int64_t term) {
    if (!leading_.load() || epoch_.load() != term) return;
    const auto sent = session_->clock()->Now();
    Status st = session_->Exists(my_node_);
    if (st.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      lease_start_ = sent;
    } else if (absl::IsNotFound(st)) {
      Lose("election znode vanished");
      my_node_.clear();
      return Post([](Impl* self) { self->Check(); });
    }
    ScheduleRenew(term);
  }

  void Lose(const char* why) {
    if (!leading_.exchange(false)) return;
    spdlog::warn("election: {} no longer leads (epoch {}): {}", self_.id(), epoch_.load(), why);
    Callbacks cb;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cb = callbacks_;
    }
    if (cb.lost) cb.lost();
  }

  bool bad_epoch_logged_ = false;  // event thread only
  std::chrono::steady_clock::time_point next_refusal_log_;  // event thread only

  // A refusal (NOAUTH: other credentials than the cluster's) is retried
  // every 250 ms like any failure but logged once a minute, as an error.
  void LogRefusal(const Status& st, const char* what) {
    if (!absl::IsPermissionDenied(st)) {
      spdlog::warn("election: cannot {}: {}", what, st.ToString());
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now < next_refusal_log_) return;
    next_refusal_log_ = now + std::chrono::minutes(1);
    spdlog::error("election: {} cannot {}: {}", self_.id(), what, std::string(st.message()));
  }

  void RetryLater() {
    std::weak_ptr<Impl> weak = weak_from_this();
    session_->PostAfter(std::chrono::milliseconds(250), [weak] {
      if (auto self = weak.lock()) self->Check();
    });
  }

  void Post(void (*fn)(Impl*)) {
    std::weak_ptr<Impl> weak = weak_from_this();
    session_->Post([weak, fn] {
      if (auto self = weak.lock()) fn(self.get());
    });
  }

  ZkSession* const session_;
  const std::string root_;
  const proto::LeaderInfo self_;
  std::string token_;
  std::chrono::milliseconds lease_{0};
  std::chrono::milliseconds renew_every_{0};

  std::string my_node_;  // event thread only
  std::atomic<bool> leading_{false};
  std::atomic<int64_t> epoch_{0};
  std::atomic<bool> stopped_{false};

  mutable std::mutex mu_;
  Callbacks callbacks_;            // guarded by mu_
  Clock::TimePoint lease_start_;   // guarded by mu_
  std::string my_node_copy_;       // guarded by mu_; for Stop() on another thread
};

ZkLeaderElector::ZkLeaderElector(ZkSession* session, std::string root, proto::LeaderInfo self)
    : session_(session), impl_(std::make_shared<Impl>(session, std::move(root), std::move(self))) {}

ZkLeaderElector::~ZkLeaderElector() { Stop(); }

Status ZkLeaderElector::Start(Callbacks callbacks) {
  impl_->SetCallbacks(std::move(callbacks));
  std::weak_ptr<Impl> weak = impl_;
  listener_id_ = session_->AddListener([weak](ZkSession::Event e) {
    if (auto self = weak.lock()) self->OnEvent(e);
  });
  session_->Post([weak] {
    if (auto self = weak.lock()) self->Check();
  });
  return absl::OkStatus();
}

void ZkLeaderElector::Stop() {
  if (listener_id_ != 0) session_->RemoveListener(listener_id_);
  listener_id_ = 0;
  impl_->Stop();
}

bool ZkLeaderElector::IsLeader() const { return impl_->IsLeader(); }
int64_t ZkLeaderElector::epoch() const { return impl_->epoch(); }

}  // namespace sluice::coord
