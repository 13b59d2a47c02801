#include "lib/coord/zk_leader_detector.h"

#include <algorithm>
#include <mutex>
#include <set>

#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "lib/coord/zk_leader_elector.h"

namespace sluice::coord {

class ZkLeaderDetector::Impl : public std::enable_shared_from_this<ZkLeaderDetector::Impl> {
 public:
  Impl(ZkSession* session, std::string root) : session_(session), dir_(root + "/election") {}

  // One look at the election. With `watch` (event thread only), arms the
  // watches that call Refresh, at most one per znode at a time.
  Result<std::optional<proto::LeaderInfo>> Lookup(bool watch) {
    std::weak_ptr<Impl> weak = weak_from_this();
    auto dir_watch = [&]() -> ZkSession::Watch {
      if (!watch || dir_watch_armed_) return nullptr;
      dir_watch_armed_ = true;
      return [weak] {
        if (auto self = weak.lock()) {
          self->dir_watch_armed_ = false;
          self->Refresh();
        }
      };
    };
    auto node_watch = [&](const std::string& path) -> ZkSession::Watch {
      if (!watch || node_watch_armed_.count(path)) return nullptr;
      node_watch_armed_.insert(path);
      return [weak, path] {
        if (auto self = weak.lock()) {
          self->node_watch_armed_.erase(path);
          self->Refresh();
        }
      };
    };
    for (int attempt = 0; attempt < 5; ++attempt) {
      Result<std::vector<std::string>> listed = session_->GetChildren(dir_, dir_watch());
      if (!listed.ok()) {
        if (watch) dir_watch_armed_ = false;
        return listed.status();
      }
      const std::vector<std::string>& children = *listed;
      std::string lowest;
      int64_t lowest_seq = -1;
      for (const std::string& c : children) {
        int64_t seq = CandidateSequence(c);
        if (seq >= 0 && (lowest_seq < 0 || seq < lowest_seq)) {
          lowest_seq = seq;
          lowest = c;
        }
      }
      if (lowest.empty()) return std::optional<proto::LeaderInfo>();
      const std::string path = dir_ + "/" + lowest;
      Result<ZkSession::Node> node = session_->Get(path, node_watch(path));
      if (!node.ok() && watch) node_watch_armed_.erase(path);
      if (absl::IsNotFound(node.status())) continue;  // it just left; look again
      if (!node.ok()) return node.status();
      proto::LeaderInfo info;
      if (!google::protobuf::TextFormat::ParseFromString(node->data, &info)) {
        return absl::DataLossError(fmt::format("election znode {} holds no LeaderInfo", lowest));
      }
      return std::optional<proto::LeaderInfo>(info);
    }
    return absl::UnavailableError("the election kept changing while being read");
  }

  // A new session has none of the old watches.
  void ForgetWatches() {
    dir_watch_armed_ = false;
    node_watch_armed_.clear();
  }

  void AddListener(Listener l) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      listeners_.push_back(std::move(l));
      notified_ = false;  // the new listener hears the current leader
    }
    Refresh();
  }

  // Event thread (or first Watch call): read, re-arm, and notify on change.
  void Refresh() {
    Result<std::optional<proto::LeaderInfo>> now = Lookup(/*watch=*/true);
    if (!now.ok()) {
      if (session_->connected()) {
        std::weak_ptr<Impl> weak = weak_from_this();
        session_->PostAfter(std::chrono::milliseconds(250), [weak] {
          if (auto self = weak.lock()) self->Refresh();
        });
      }
      return;  // a reconnect calls Refresh again
    }
    std::vector<Listener> to_call;
    {
      std::lock_guard<std::mutex> lock(mu_);
      bool same = notified_ && last_.has_value() == now->has_value() &&
                  (!last_ || google::protobuf::util::MessageDifferencer::Equals(*last_, **now));
      if (same) return;
      last_ = *now;
      notified_ = true;
      to_call = listeners_;
    }
    for (Listener& l : to_call) l(*now);
  }

 private:
  ZkSession* const session_;
  const std::string dir_;
  bool dir_watch_armed_ = false;          // event thread only
  std::set<std::string> node_watch_armed_;  // event thread only
  std::mutex mu_;
  std::vector<Listener> listeners_;        // guarded by mu_
  std::optional<proto::LeaderInfo> last_;  // guarded by mu_
  bool notified_ = false;                  // guarded by mu_
};

ZkLeaderDetector::ZkLeaderDetector(ZkSession* session, std::string root)
    : session_(session), impl_(std::make_shared<Impl>(session, std::move(root))) {}

ZkLeaderDetector::~ZkLeaderDetector() {
  if (listener_id_ != 0) session_->RemoveListener(listener_id_);
}

Result<std::optional<proto::LeaderInfo>> ZkLeaderDetector::Current() {
  return impl_->Lookup(/*watch=*/false);
}

void ZkLeaderDetector::Watch(Listener listener) {
  if (listener_id_ == 0) {
    std::weak_ptr<Impl> weak = impl_;
    listener_id_ = session_->AddListener([weak](ZkSession::Event e) {
      if (e != ZkSession::Event::kConnected && e != ZkSession::Event::kReconnected) return;
      if (auto self = weak.lock()) {
        if (e == ZkSession::Event::kConnected) self->ForgetWatches();
        self->Refresh();
      }
    });
  }
  std::weak_ptr<Impl> weak = impl_;
  session_->Post([weak, l = std::move(listener)]() mutable {
    if (auto self = weak.lock()) self->AddListener(std::move(l));
  });
}

}  // namespace sluice::coord
