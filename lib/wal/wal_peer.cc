#include "lib/wal/wal_peer.h"

#include "lib/rpc/wal_peer_client.h"

namespace sluice::wal {
namespace {

class GrpcWalPeer final : public WalPeer {
 public:
  GrpcWalPeer(rpc::WalPeerClient client, std::chrono::milliseconds deadline)
      : client_(std::move(client)), deadline_(deadline) {}

  Status Append(const proto::WalAppendRequest& request, proto::WalAppendResponse* response) override {
    return rpc::MoveInto(client_.Append(request, deadline_), response);
  }
  Status Fetch(const proto::WalFetchRequest& request, proto::WalFetchResponse* response) override {
    return rpc::MoveInto(client_.Fetch(request, deadline_), response);
  }
  Status InstallSnapshot(const proto::WalInstallSnapshotRequest& request,
                         proto::WalInstallSnapshotResponse* response) override {
    return rpc::MoveInto(client_.InstallSnapshot(request, deadline_ * 4), response);
  }

 private:
  rpc::WalPeerClient client_;
  const std::chrono::milliseconds deadline_;
};

}  // namespace

WalPeerFactory GrpcWalPeerFactory(rpc::ChannelCache* channels, std::chrono::milliseconds deadline) {
  return [channels, deadline](const std::string& address) -> std::unique_ptr<WalPeer> {
    return std::make_unique<GrpcWalPeer>(rpc::WalPeerClient(*channels, address), deadline);
  };
}

}  // namespace sluice::wal
