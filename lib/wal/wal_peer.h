// WalPeer: every call a driver makes to another driver's WAL goes through
// here (the leader replicating, a new leader catching up).
//
// Module sluice::wal owns it. The real implementation is a thin adapter over
// rpc::WalPeerClient; tests put fakes or fault-injecting decorators in its
// place. Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "lib/common/status.h"
#include "proto/wal.pb.h"

namespace sluice::rpc {
class ChannelCache;
}  // namespace sluice::rpc

namespace sluice::wal {

class WalPeer {
 public:
  virtual ~WalPeer() = default;
  [[nodiscard]] virtual Status Append(const proto::WalAppendRequest& request,
                                      proto::WalAppendResponse* response) = 0;
  [[nodiscard]] virtual Status Fetch(const proto::WalFetchRequest& request,
                                     proto::WalFetchResponse* response) = 0;
  [[nodiscard]] virtual Status InstallSnapshot(const proto::WalInstallSnapshotRequest& request,
                                               proto::WalInstallSnapshotResponse* response) = 0;
};

using WalPeerFactory = std::function<std::unique_ptr<WalPeer>(const std::string& address)>;

// gRPC peers over `channels` (which must outlive the factory), each call
// with `deadline`, an InstallSnapshot with four times that.
WalPeerFactory GrpcWalPeerFactory(rpc::ChannelCache* channels, std::chrono::milliseconds deadline);

}  // namespace sluice::wal
