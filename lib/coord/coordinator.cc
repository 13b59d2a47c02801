#include "lib/coord/coordinator.h"

#include <thread>

#include "lib/common/config.h"
#include "lib/common/zk_auth_file.h"
#include "lib/coord/standalone_coordinator.h"
#include "lib/coord/zk_leader_detector.h"
#include "lib/coord/zk_leader_elector.h"
#include "lib/coord/zk_membership.h"
#include "lib/coord/zk_session.h"
#include "spdlog/spdlog.h"

namespace sluice::coord {
namespace {

constexpr const char* kForms =
    "expected zookeeper://HOST:PORT[,HOST:PORT...]/ROOT, standalone or standalone://HOST:PORT";

bool ValidRoot(const std::string& root) {
  if (root.size() < 2 || root.front() != '/' || root.back() == '/') return false;
  if (root.find("//") != std::string::npos) return false;
  for (char c : root) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

class ZkCoordinator final : public Coordinator {
 public:
  ZkCoordinator(std::string spec, std::unique_ptr<ZkSession> session, std::string root)
      : spec_(std::move(spec)), session_(std::move(session)), root_(std::move(root)) {}
  std::unique_ptr<LeaderElector> NewElector(const proto::LeaderInfo& self) override {
    return std::make_unique<ZkLeaderElector>(session_.get(), root_, self);
  }
  std::unique_ptr<LeaderDetector> NewDetector() override {
    return std::make_unique<ZkLeaderDetector>(session_.get(), root_);
  }
  std::unique_ptr<Membership> NewMembership(Group group) override {
    return std::make_unique<ZkMembership>(session_.get(), root_, group);
  }
  void Close() override { session_->Close(); }
  const std::string& spec() const override { return spec_; }
  std::string connected_server() const override { return session_->connected_server(); }
  ZkSession* zk_session() override { return session_.get(); }

 private:
  const std::string spec_;
  std::unique_ptr<ZkSession> session_;
  const std::string root_;
};

class StandaloneCoordinator final : public Coordinator {
 public:
  StandaloneCoordinator(std::string spec, std::shared_ptr<StandaloneGroup> group,
                        std::optional<proto::LeaderInfo> fixed_leader, CoordinatorOptions options)
      : spec_(std::move(spec)), group_(std::move(group)), fixed_(std::move(fixed_leader)), options_(std::move(options)) {}
  std::unique_ptr<LeaderElector> NewElector(const proto::LeaderInfo& self) override {
    return std::make_unique<StandaloneLeaderElector>(group_, self);
  }
  std::unique_ptr<LeaderDetector> NewDetector() override {
    return std::make_unique<StandaloneLeaderDetector>(group_, fixed_);
  }
  std::unique_ptr<Membership> NewMembership(Group group) override {
    if (fixed_ && options_.standalone_join) {
      return std::make_unique<StandaloneRemoteMembership>(group, fixed_->rpc_address(), options_.standalone_join,
                                                          std::chrono::milliseconds(options_.session_timeout_ms));
    }
    return std::make_unique<StandaloneMembership>(group_, group);
  }
  void Close() override {}
  Status AcceptRemoteMember(Group group, const proto::MemberInfo& member, std::chrono::milliseconds lease) override {
    if (fixed_) {
      return absl::FailedPreconditionError(
          fmt::format("this process follows the driver at {}; join that one", fixed_->rpc_address()));
    }
    return group_->JoinLeased(group, member, lease);
  }
  const std::string& spec() const override { return spec_; }

 private:
  const std::string spec_;
  std::shared_ptr<StandaloneGroup> group_;
  std::optional<proto::LeaderInfo> fixed_;
  const CoordinatorOptions options_;
};

}  // namespace

Result<CoordinatorSpec> CoordinatorSpec::Parse(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(fmt::format("coordinator: '{}' {}; {}", text, why, kForms));
  };
  CoordinatorSpec spec;
  if (text == "standalone") return spec;
  const std::string kStandalone = "standalone://";
  if (text.rfind(kStandalone, 0) == 0) {
    spec.leader_address = text.substr(kStandalone.size());
    if (!ParseHostPort(spec.leader_address, "coordinator").ok()) return bad("has no valid HOST:PORT");
    return spec;
  }
  const std::string kZk = "zookeeper://";
  if (text.rfind(kZk, 0) != 0) return bad("is not a known coordinator");
  spec.kind = Kind::kZooKeeper;
  std::string rest = text.substr(kZk.size());
  size_t slash = rest.find('/');
  if (slash == std::string::npos) return bad("names no root path (e.g. /sluice/prod)");
  spec.hosts = rest.substr(0, slash);
  spec.root = rest.substr(slash);
  if (spec.hosts.empty()) return bad("names no ZooKeeper server");
  size_t start = 0;
  while (start <= spec.hosts.size()) {
    size_t comma = spec.hosts.find(',', start);
    if (comma == std::string::npos) comma = spec.hosts.size();
    std::string server = spec.hosts.substr(start, comma - start);
    Result<HostPort> hp = ParseHostPort(server, "coordinator");
    if (!hp.ok() || hp->port == 0) return bad(fmt::format("has a bad server '{}'", server));
    start = comma + 1;
  }
  if (!ValidRoot(spec.root)) {
    return bad(fmt::format("has a bad root path '{}' (absolute, no trailing '/')", spec.root));
  }
  return spec;
}

Result<std::unique_ptr<Coordinator>> Coordinator::Create(const std::string& text,
                                                         const CoordinatorOptions& options) {
  ASSIGN_OR_RETURN(CoordinatorSpec spec, CoordinatorSpec::Parse(text));
  if (spec.kind == CoordinatorSpec::Kind::kStandalone) {
    ASSIGN_OR_RETURN(std::shared_ptr<StandaloneGroup> group,
                     StandaloneGroup::Create(options.standalone_epoch_file));
    std::optional<proto::LeaderInfo> fixed;
    if (!spec.leader_address.empty()) {
      fixed.emplace();
      fixed->set_rpc_address(spec.leader_address);
    }
    return std::unique_ptr<Coordinator>(new StandaloneCoordinator(text, group, fixed, options));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ZkSession> session,
                   ZkSession::Connect({.hosts = spec.hosts,
                                       .session_timeout_ms = options.session_timeout_ms,
                                       .connect_timeout = options.connect_timeout,
                                       .auth = options.zk_auth},
                                      options.clock));
  // A connection lost right after connecting is retried within the connect
  // timeout: a ZooKeeper hiccup at start-up is no reason to exit.
  const auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
  for (const char* dir : {"election", "workers", "drivers"}) {
    while (true) {
      Status st = session->EnsurePath(spec.root + "/" + dir, spec.root);
      if (st.ok()) break;
      if (!absl::IsUnavailable(st) || std::chrono::steady_clock::now() >= deadline) {
        return Annotate(st, "creating the cluster layout in ZooKeeper");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  // The epoch is made by the first leader; one from before the cluster had
  // credentials is secured here, like the layout.
  if (Status st = session->Secure(spec.root + "/epoch"); !st.ok()) {
    spdlog::warn("zookeeper: {}", std::string(st.message()));
  }
  return std::unique_ptr<Coordinator>(new ZkCoordinator(text, std::move(session), spec.root));
}

}  // namespace sluice::coord

namespace sluice::coord {

Result<std::unique_ptr<Coordinator>> Coordinator::CreateForDaemon(
    const DaemonOptions& daemon, Clock* clock, decltype(CoordinatorOptions::standalone_join) standalone_join) {
  std::string zk_auth;
  if (!daemon.zk_auth_file.empty()) {
    ASSIGN_OR_RETURN(zk_auth, ReadZkAuthFile(daemon.zk_auth_file));
  } else if (daemon.coordinator.rfind("zookeeper://", 0) == 0) {
    spdlog::warn("zookeeper: no zk-auth-file: the cluster's znodes are world-writable (whoever reaches ZooKeeper "
                 "can delete the leader's znode or change the epoch); set zk-auth-file (docs/security.md)");
  }
  return Create(daemon.coordinator,
                {.session_timeout_ms = daemon.zk_session_timeout_ms,
                 .connect_timeout = std::chrono::milliseconds(daemon.zk_connect_timeout_ms),
                 .zk_auth = std::move(zk_auth),
                 .standalone_epoch_file = daemon.data_dir + "/standalone-epoch",
                 .standalone_join = std::move(standalone_join),
                 .clock = clock});
}

}  // namespace sluice::coord
