// WalPeerClient: every call to one driver's WalService (proto/wal.proto): the
// leader replicating to a standby (Append, InstallSnapshot) and a new leader
// catching up (Fetch). The requests and responses pass through untouched.
//
// Module sluice::rpc owns it; lib/wal's GrpcWalPeer adapts it to the WalPeer
// interface. A client is cheap: it uses its address's channel from a
// ChannelCache. Each method has one deadline, a default below that a caller
// may override, and the client's RetryPolicy.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "lib/common/status.h"
#include "lib/rpc/call.h"
#include "proto/wal.pb.h"

namespace sluice::rpc {

class ChannelCache;

class WalPeerClient {
 public:
  // Default deadlines; a snapshot is large.
  static constexpr std::chrono::milliseconds kAppendDeadline{1000};
  static constexpr std::chrono::milliseconds kFetchDeadline{1000};
  static constexpr std::chrono::milliseconds kInstallSnapshotDeadline{4000};

  // `channels` must outlive the call to the constructor only.
  WalPeerClient(ChannelCache& channels, const std::string& address, RetryPolicy retry = {});
  ~WalPeerClient();
  WalPeerClient(WalPeerClient&&) noexcept;
  WalPeerClient& operator=(WalPeerClient&&) noexcept;

  const std::string& address() const { return address_; }

  [[nodiscard]] Result<proto::WalAppendResponse> Append(const proto::WalAppendRequest& request,
                                                        std::chrono::milliseconds deadline = kAppendDeadline);
  [[nodiscard]] Result<proto::WalFetchResponse> Fetch(const proto::WalFetchRequest& request,
                                                      std::chrono::milliseconds deadline = kFetchDeadline);
  [[nodiscard]] Result<proto::WalInstallSnapshotResponse> InstallSnapshot(
      const proto::WalInstallSnapshotRequest& request,
      std::chrono::milliseconds deadline = kInstallSnapshotDeadline);

 private:
  struct Stub;  // the generated stub (wal.grpc.pb.h stays in the .cc)

  std::string address_;
  RetryPolicy retry_;
  std::unique_ptr<Stub> stub_;
};

}  // namespace sluice::rpc
