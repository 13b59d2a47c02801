#include "lib/coord/zk_membership.h"

#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "google/protobuf/text_format.h"
#include "spdlog/spdlog.h"

namespace sluice::coord {

const char* GroupName(Group group) { return group == Group::kWorkers ? "workers" : "drivers"; }

class ZkMembership::Impl : public std::enable_shared_from_this<ZkMembership::Impl> {
 public:
  Impl(ZkSession* session, std::string root, Group group)
      : session_(session), dir_(root + "/" + GroupName(group)), group_(group) {}

  // Creates our znode; OK if this session already holds it. ALREADY_EXISTS
  // if another session does.
  Status Register(const proto::MemberInfo& self) {
    std::string data;
    google::protobuf::TextFormat::PrintToString(self, &data);
    const std::string path = dir_ + "/" + self.id();
    Result<std::string> created = session_->Create(path, data, ZOO_EPHEMERAL);
    if (created.ok()) return absl::OkStatus();
    if (!absl::IsAlreadyExists(created.status())) return created.status();
    ASSIGN_OR_RETURN(ZkSession::Node node, session_->Get(path));
    if (node.ephemeral_owner == session_->session_id()) return absl::OkStatus();
    return absl::AlreadyExistsError(fmt::format(
        "{} id '{}' is registered by another session (0x{:x})", GroupName(group_), self.id(),
        node.ephemeral_owner));
  }

  Status Join(const proto::MemberInfo& self) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      self_ = self;
      joined_ = true;
    }
    // The znode of an earlier process with our id lives until its session
    // expires, and a lost connection may come back: wait that long, no longer.
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(session_->session_timeout_ms() + 2000);
    while (true) {
      Status st = Register(self);
      if (st.ok()) {
        spdlog::info("membership: {} joined {}", self.id(), dir_);
        return st;
      }
      if (std::chrono::steady_clock::now() >= deadline) return st;
      if (absl::IsAlreadyExists(st)) {
        spdlog::info("membership: waiting for the old registration of {} to expire", self.id());
      } else if (!absl::IsUnavailable(st)) {
        return st;  // only a taken id or a lost connection are worth waiting for
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  void Leave() {
    std::string id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!joined_) return;
      joined_ = false;
      id = self_.id();
    }
    IgnoreError(session_->Delete(dir_ + "/" + id), "gone with the session anyway");
  }

  // After a session expiry: our znode died with the old session.
  void Rejoin() {
    proto::MemberInfo self;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!joined_) return;
      self = self_;
    }
    Status st = Register(self);
    if (st.ok()) {
      spdlog::info("membership: {} joined {} again in a new session", self.id(), dir_);
      return;
    }
    if (!absl::IsPermissionDenied(st)) {
      spdlog::warn("membership: cannot rejoin {}: {}", dir_, st.ToString());
    } else if (const auto now = std::chrono::steady_clock::now(); now >= next_refusal_log_) {
      // Other credentials than the cluster's: retried, but said once a minute.
      next_refusal_log_ = now + std::chrono::minutes(1);
      spdlog::error("membership: {} cannot rejoin {}: {}", self.id(), dir_, std::string(st.message()));
    }
    std::weak_ptr<Impl> weak = weak_from_this();
    session_->PostAfter(std::chrono::milliseconds(500), [weak] {
      if (auto s = weak.lock()) s->Rejoin();
    });
  }

  Result<std::vector<proto::MemberInfo>> List(ZkSession::Watch watch) {
    ASSIGN_OR_RETURN(std::vector<std::string> children, session_->GetChildren(dir_, std::move(watch)));
    std::sort(children.begin(), children.end());
    std::vector<proto::MemberInfo> members;
    for (const std::string& c : children) {
      Result<ZkSession::Node> node = session_->Get(dir_ + "/" + c);
      if (absl::IsNotFound(node.status())) continue;  // left meanwhile
      if (!node.ok()) return node.status();
      proto::MemberInfo m;
      if (!google::protobuf::TextFormat::ParseFromString(node->data, &m)) {
        spdlog::warn("membership: {}/{} holds no MemberInfo; ignored", dir_, c);
        continue;
      }
      members.push_back(std::move(m));
    }
    return members;
  }

  void AddListener(Listener l) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      listeners_.push_back(std::move(l));
      notified_ = false;
    }
    Refresh();
  }

  void ForgetWatch() { watch_armed_ = false; }

  // Event thread: list (arming one watch at a time) and notify on change.
  void Refresh() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (listeners_.empty()) return;
    }
    ZkSession::Watch watch;
    if (!watch_armed_) {
      watch_armed_ = true;
      std::weak_ptr<Impl> weak = weak_from_this();
      watch = [weak] {
        if (auto s = weak.lock()) {
          s->watch_armed_ = false;
          s->Refresh();
        }
      };
    }
    const bool armed_now = static_cast<bool>(watch);
    Result<std::vector<proto::MemberInfo>> members = List(std::move(watch));
    if (!members.ok()) {
      if (armed_now) watch_armed_ = false;
      if (session_->connected()) {
        std::weak_ptr<Impl> weak = weak_from_this();
        session_->PostAfter(std::chrono::milliseconds(250), [weak] {
          if (auto s = weak.lock()) s->Refresh();
        });
      }
      return;
    }
    std::string fingerprint;
    for (const proto::MemberInfo& m : *members) fingerprint += m.SerializeAsString() + "\n";
    std::vector<Listener> to_call;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (notified_ && fingerprint == last_fingerprint_) return;
      notified_ = true;
      last_fingerprint_ = fingerprint;
      to_call = listeners_;
    }
    for (Listener& l : to_call) l(*members);
  }

 private:
  ZkSession* const session_;
  const std::string dir_;
  const Group group_;
  bool watch_armed_ = false;  // event thread only
  std::chrono::steady_clock::time_point next_refusal_log_;  // event thread only

  std::mutex mu_;
  proto::MemberInfo self_;          // guarded by mu_
  bool joined_ = false;             // guarded by mu_
  std::vector<Listener> listeners_; // guarded by mu_
  std::string last_fingerprint_;    // guarded by mu_
  bool notified_ = false;           // guarded by mu_
};

ZkMembership::ZkMembership(ZkSession* session, std::string root, Group group)
    : session_(session), impl_(std::make_shared<Impl>(session, std::move(root), group)) {
  std::weak_ptr<Impl> weak = impl_;
  listener_id_ = session_->AddListener([weak](ZkSession::Event e) {
    auto self = weak.lock();
    if (!self) return;
    if (e == ZkSession::Event::kConnected) {
      self->ForgetWatch();
      self->Rejoin();
      self->Refresh();
    } else if (e == ZkSession::Event::kReconnected) {
      self->Refresh();
    }
  });
}

ZkMembership::~ZkMembership() { session_->RemoveListener(listener_id_); }

Status ZkMembership::Join(const proto::MemberInfo& self) { return impl_->Join(self); }
void ZkMembership::Leave() { impl_->Leave(); }
Result<std::vector<proto::MemberInfo>> ZkMembership::Members() { return impl_->List(nullptr); }

void ZkMembership::Watch(Listener listener) {
  std::weak_ptr<Impl> weak = impl_;
  session_->Post([weak, l = std::move(listener)]() mutable {
    if (auto self = weak.lock()) self->AddListener(std::move(l));
  });
}

}  // namespace sluice::coord
