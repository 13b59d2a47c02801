// ZkLeaderDetector: LeaderDetector on ZooKeeper.
//
// Module sluice::coord owns it. The leader is the lowest candidate under
// <root>/election; its znode holds its LeaderInfo (epoch set once it has
// bumped the epoch). Watches the election folder and the leader's znode.
//
// Thread-safe; see LeaderDetector.
#pragma once

#include <memory>
#include <string>

#include "lib/coord/leader_detector.h"
#include "lib/coord/zk_session.h"

namespace sluice::coord {

class ZkLeaderDetector final : public LeaderDetector {
 public:
  // `session` must outlive the detector.
  ZkLeaderDetector(ZkSession* session, std::string root);
  ~ZkLeaderDetector() override;

  [[nodiscard]] Result<std::optional<proto::LeaderInfo>> Current() override;
  void Watch(Listener listener) override;

  class Impl;

 private:
  ZkSession* session_;
  std::shared_ptr<Impl> impl_;
  int listener_id_ = 0;
};

}  // namespace sluice::coord
