// Coordinator: the one factory of the coordination roles, chosen by a
// configuration string.
//
// Module sluice::coord owns coordination: leader election, leader detection
// and group membership, on ZooKeeper (the ZooKeeper C client) or in-process
// (standalone). A process makes one Coordinator from `--coordinator` and asks
// it for the roles it plays:
//
//   zookeeper://HOST:PORT[,HOST:PORT...]/ROOT   ZooKeeper; everything under ROOT
//   standalone                                  in-process; this process leads
//   standalone://HOST:PORT                      in-process; the leader is the
//                                               driver at HOST:PORT
//
// Under ROOT (docs/design.md): election/n_<token>_<seq> (ephemeral sequential),
// epoch (persistent counter), workers/<id> and drivers/<id> (ephemeral).
//
// Thread-safe. The Coordinator must outlive every role it made.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "lib/common/clock.h"
#include "lib/common/daemon_options.h"
#include "lib/common/status.h"
#include "lib/coord/leader_detector.h"
#include "lib/coord/leader_elector.h"
#include "lib/coord/membership.h"

namespace sluice::coord {

struct CoordinatorSpec {
  enum class Kind { kZooKeeper, kStandalone };
  Kind kind = Kind::kStandalone;
  std::string hosts;           // ZooKeeper: "host:port,host:port"
  std::string root;            // ZooKeeper: "/sluice/prod"
  std::string leader_address;  // standalone://HOST:PORT: the fixed leader

  // INVALID_ARGUMENT naming the flag and the accepted forms.
  [[nodiscard]] static Result<CoordinatorSpec> Parse(const std::string& text);
};

struct CoordinatorOptions {
  int session_timeout_ms = 10'000;
  std::chrono::milliseconds connect_timeout{15'000};
  // ZooKeeper: "user:password" digest credentials (zk-auth-file); empty:
  // none, znodes world-writable.
  std::string zk_auth;
  // Standalone: file keeping the last epoch across restarts (empty: memory).
  std::string standalone_epoch_file;
  // standalone://DRIVER: how a member joins the driver's group (the daemon
  // supplies the driver's JoinGroup call); without it, memberships are this
  // process's own. The lease is session_timeout_ms.
  std::function<Status(Group, const proto::MemberInfo&, std::chrono::milliseconds lease)> standalone_join;
  Clock* clock = Clock::Real();
};

class ZkSession;

class Coordinator {
 public:
  // Connects (ZooKeeper: waits for a session and creates the root layout).
  // INVALID_ARGUMENT for a bad spec; UNAVAILABLE if ZooKeeper is unreachable.
  [[nodiscard]] static Result<std::unique_ptr<Coordinator>> Create(
      const std::string& spec, const CoordinatorOptions& options);
  // As Create, from a daemon's --coordinator and --zk-* options; a standalone
  // epoch is kept in <data-dir>/standalone-epoch. On ZooKeeper without
  // zk-auth-file, warns once that the znodes are world-writable.
  [[nodiscard]] static Result<std::unique_ptr<Coordinator>> CreateForDaemon(
      const DaemonOptions& daemon, Clock* clock,
      decltype(CoordinatorOptions::standalone_join) standalone_join = {});
  virtual ~Coordinator() = default;

  virtual std::unique_ptr<LeaderElector> NewElector(const proto::LeaderInfo& self) = 0;
  virtual std::unique_ptr<LeaderDetector> NewDetector() = 0;
  virtual std::unique_ptr<Membership> NewMembership(Group group) = 0;
  // Ends the session at once (ephemeral registrations vanish now).
  virtual void Close() = 0;
  // Standalone leader: a member of another process joins or renews (lease 0:
  // leaves). FAILED_PRECONDITION for other coordinators.
  [[nodiscard]] virtual Status AcceptRemoteMember(Group group, const proto::MemberInfo& member,
                                                  std::chrono::milliseconds lease) {
    return absl::FailedPreconditionError("this driver's coordinator is " + spec() +
                                         ": members join it, not the driver");
  }
  // The spec this coordinator was made from.
  virtual const std::string& spec() const = 0;
  // ZooKeeper: "ip:port" of the server the session is connected to now, ""
  // while disconnected. Standalone: always "".
  virtual std::string connected_server() const { return ""; }
  // ZooKeeper: the session (for its probe, session_probe.h). Standalone: null.
  virtual ZkSession* zk_session() { return nullptr; }
};

}  // namespace sluice::coord
