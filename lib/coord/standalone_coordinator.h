// The standalone (in-process) coordination backend: LeaderElector,
// LeaderDetector and Membership without ZooKeeper, for single-node mode
// (--coordinator=standalone) and unit tests. Mesos' standalone
// contender/detector play the same part.
//
// Module sluice::coord owns it. All electors, detectors and memberships made
// from one StandaloneGroup share its state: the first candidate leads, the
// next takes over when it stops, and every term gets a new epoch. The epoch
// survives restarts if the group is given a file to keep it in.
//
// A process that is not the driver (a worker, sluicectl) uses
// `standalone://HOST:PORT`: its detector reports that fixed address as the
// leader, and its membership (StandaloneRemoteMembership) joins the driver's
// group through a call the daemon supplies (the driver's JoinGroup RPC),
// renewed well within a lease; the driver's group drops a member whose lease
// lapses (JoinLeased), as ZooKeeper drops an expired session's nodes.
//
// Thread-safe. Callbacks run on the group's own executor thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lib/common/serial_executor.h"
#include "lib/coord/leader_detector.h"
#include "lib/coord/leader_elector.h"
#include "lib/coord/membership.h"

namespace sluice::coord {

class StandaloneGroup {
 public:
  // `epoch_file`: where the last epoch is kept across restarts (empty: memory).
  [[nodiscard]] static Result<std::shared_ptr<StandaloneGroup>> Create(std::string epoch_file);
  ~StandaloneGroup();

  // Candidates (in order of arrival; the first leads).
  int AddCandidate(proto::LeaderInfo self, LeaderElector::Callbacks callbacks);
  void RemoveCandidate(int id);
  bool Leads(int id);
  int64_t Epoch(int id);

  std::optional<proto::LeaderInfo> Leader();
  void WatchLeader(LeaderDetector::Listener listener);

  [[nodiscard]] Status Join(Group group, const proto::MemberInfo& self);
  void Leave(Group group, const std::string& id);
  std::vector<proto::MemberInfo> Members(Group group);
  void WatchMembers(Group group, Membership::Listener listener);
  // A member of another process: joins, or renews, until `lease` from now
  // (0: leaves now). ALREADY_EXISTS if the id is held by a member of this
  // process.
  [[nodiscard]] Status JoinLeased(Group group, const proto::MemberInfo& self, std::chrono::milliseconds lease);

 private:
  struct Candidate {
    int id;
    proto::LeaderInfo info;  // epoch set while leading
    LeaderElector::Callbacks callbacks;
    bool leading = false;
  };
  StandaloneGroup(std::string epoch_file, int64_t last_epoch)
      : epoch_file_(std::move(epoch_file)), epoch_(last_epoch) {}
  // Elects the first candidate if nobody leads. Requires mu_.
  void ElectLocked();
  void NotifyLeaderLocked();
  void NotifyMembersLocked(Group group);
  void ExpireLease(Group group, const std::string& id);

  const std::string epoch_file_;
  std::mutex mu_;
  int64_t epoch_;                                            // guarded by mu_
  int next_id_ = 1;                                          // guarded by mu_
  std::vector<Candidate> candidates_;                        // guarded by mu_
  std::vector<LeaderDetector::Listener> leader_listeners_;   // guarded by mu_
  std::map<Group, std::map<std::string, proto::MemberInfo>> members_;      // guarded by mu_
  std::map<Group, std::vector<Membership::Listener>> member_listeners_;   // guarded by mu_
  // Members of other processes: when each lease ends.
  std::map<Group, std::map<std::string, std::chrono::steady_clock::time_point>> leases_;  // guarded by mu_
  SerialExecutor executor_;  // runs callbacks; last, so it stops first
};

class StandaloneLeaderElector final : public LeaderElector {
 public:
  StandaloneLeaderElector(std::shared_ptr<StandaloneGroup> group, proto::LeaderInfo self)
      : group_(std::move(group)), self_(std::move(self)) {}
  ~StandaloneLeaderElector() override { Stop(); }
  [[nodiscard]] Status Start(Callbacks callbacks) override;
  void Stop() override;
  bool IsLeader() const override { return id_ != 0 && group_->Leads(id_); }
  int64_t epoch() const override { return id_ != 0 ? group_->Epoch(id_) : last_epoch_; }

 private:
  std::shared_ptr<StandaloneGroup> group_;
  proto::LeaderInfo self_;
  int id_ = 0;
  int64_t last_epoch_ = 0;
};

class StandaloneLeaderDetector final : public LeaderDetector {
 public:
  // With `fixed_leader`, reports that leader instead of the group's.
  StandaloneLeaderDetector(std::shared_ptr<StandaloneGroup> group,
                           std::optional<proto::LeaderInfo> fixed_leader)
      : group_(std::move(group)), fixed_(std::move(fixed_leader)) {}
  [[nodiscard]] Result<std::optional<proto::LeaderInfo>> Current() override;
  void Watch(Listener listener) override;

 private:
  std::shared_ptr<StandaloneGroup> group_;
  std::optional<proto::LeaderInfo> fixed_;
};

class StandaloneMembership final : public Membership {
 public:
  StandaloneMembership(std::shared_ptr<StandaloneGroup> group, Group which)
      : group_(std::move(group)), which_(which) {}
  ~StandaloneMembership() override { Leave(); }
  [[nodiscard]] Status Join(const proto::MemberInfo& self) override;
  void Leave() override;
  [[nodiscard]] Result<std::vector<proto::MemberInfo>> Members() override {
    return group_->Members(which_);
  }
  void Watch(Listener listener) override { group_->WatchMembers(which_, std::move(listener)); }

 private:
  std::shared_ptr<StandaloneGroup> group_;
  const Group which_;
  std::mutex mu_;
  std::string joined_id_;  // guarded by mu_
};

// The membership of a process that follows a standalone driver: Join
// returns at once and keeps the registration alive from its own thread,
// calling `join` (the driver's JoinGroup) every third of the lease (at most
// every second), through the driver's restarts. Members() and Watch() are
// the driver's to answer: FAILED_PRECONDITION / nothing.
class StandaloneRemoteMembership final : public Membership {
 public:
  using JoinFn = std::function<Status(Group, const proto::MemberInfo&, std::chrono::milliseconds lease)>;
  StandaloneRemoteMembership(Group which, std::string driver, JoinFn join, std::chrono::milliseconds lease)
      : which_(which), driver_(std::move(driver)), join_(std::move(join)), lease_(lease) {}
  ~StandaloneRemoteMembership() override { Leave(); }
  [[nodiscard]] Status Join(const proto::MemberInfo& self) override;
  void Leave() override;
  [[nodiscard]] Result<std::vector<proto::MemberInfo>> Members() override;
  void Watch(Listener listener) override {}

 private:
  void Loop(proto::MemberInfo self);

  const Group which_;
  const std::string driver_;
  const JoinFn join_;
  const std::chrono::milliseconds lease_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace sluice::coord
