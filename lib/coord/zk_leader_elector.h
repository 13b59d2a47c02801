// ZkLeaderElector: LeaderElector on ZooKeeper (docs/design.md "ZooKeeper layout").
//
// Module sluice::coord owns it. Each candidate creates an ephemeral sequential
// znode <root>/election/n_<token>_<seq> holding its LeaderInfo (text proto);
// the lowest sequence leads, and each other candidate watches only its
// predecessor (no herd effect). The new leader bumps <root>/epoch with a
// versioned set (compare-and-swap) and writes the epoch into its znode.
//
// Lease: while leading it re-confirms its znode every session_timeout/6; it
// counts as leader (IsLeader) only while connected and within
// session_timeout/2 of the sending of its last confirmed call: well before the
// server could expire the session (a full timeout after it last heard from
// us), and whatever the process's threads were doing (a SIGSTOP stops the
// renewals, not the monotonic clock).
//
// Thread-safe; see LeaderElector.
#pragma once

#include <memory>
#include <string>

#include "lib/coord/leader_elector.h"
#include "lib/coord/zk_session.h"
#include "proto/common.pb.h"

namespace sluice::coord {

class ZkLeaderElector final : public LeaderElector {
 public:
  // `session` must outlive the elector. `self.epoch` is ignored.
  ZkLeaderElector(ZkSession* session, std::string root, proto::LeaderInfo self);
  ~ZkLeaderElector() override;

  [[nodiscard]] Status Start(Callbacks callbacks) override;
  void Stop() override;
  bool IsLeader() const override;
  int64_t epoch() const override;

  class Impl;

 private:
  ZkSession* session_;
  std::shared_ptr<Impl> impl_;
  int listener_id_ = 0;
};

// The sequence number of an election znode name ("n_<token>_0000000042" -> 42);
// -1 if the name is not a candidate's.
int64_t CandidateSequence(const std::string& name);

}  // namespace sluice::coord
