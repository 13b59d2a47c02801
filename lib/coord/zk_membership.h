// ZkMembership: Membership on ZooKeeper.
//
// Module sluice::coord owns it. A member is an ephemeral znode
// <root>/<group>/<id> holding its MemberInfo (text proto); it vanishes when the
// member's session ends. After a session expiry the member registers again in
// the new session by itself. Watchers re-read the folder on every change.
//
// Thread-safe; see Membership.
#pragma once

#include <memory>
#include <string>

#include "lib/coord/membership.h"
#include "lib/coord/zk_session.h"

namespace sluice::coord {

class ZkMembership final : public Membership {
 public:
  // `session` must outlive this object.
  ZkMembership(ZkSession* session, std::string root, Group group);
  ~ZkMembership() override;

  [[nodiscard]] Status Join(const proto::MemberInfo& self) override;
  void Leave() override;
  [[nodiscard]] Result<std::vector<proto::MemberInfo>> Members() override;
  void Watch(Listener listener) override;

  class Impl;

 private:
  ZkSession* session_;
  std::shared_ptr<Impl> impl_;
  int listener_id_ = 0;
};

}  // namespace sluice::coord
