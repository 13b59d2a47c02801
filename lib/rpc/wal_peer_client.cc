#include "lib/rpc/wal_peer_client.h"

#include "lib/rpc/channel_cache.h"
#include "lib/rpc/internal/call.h"
#include "proto/wal.grpc.pb.h"

namespace sluice::rpc {

struct WalPeerClient::Stub {
  std::unique_ptr<proto::WalService::Stub> stub;
};

WalPeerClient::WalPeerClient(ChannelCache& channels, const std::string& address, RetryPolicy retry)
    : address_(address),
      retry_(retry),
      stub_(std::make_unique<Stub>(Stub{proto::WalService::NewStub(channels.Get(address))})) {}

WalPeerClient::~WalPeerClient() = default;
WalPeerClient::WalPeerClient(WalPeerClient&&) noexcept = default;
WalPeerClient& WalPeerClient::operator=(WalPeerClient&&) noexcept = default;

Result<proto::WalAppendResponse> WalPeerClient::Append(const proto::WalAppendRequest& request,
                                                       std::chrono::milliseconds deadline) {
  return internal::Unary<proto::WalAppendResponse>(
      retry_, deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->Append(ctx, request, response); });
}

Result<proto::WalFetchResponse> WalPeerClient::Fetch(const proto::WalFetchRequest& request,
                                                     std::chrono::milliseconds deadline) {
  return internal::Unary<proto::WalFetchResponse>(
      retry_, deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->Fetch(ctx, request, response); });
}

Result<proto::WalInstallSnapshotResponse> WalPeerClient::InstallSnapshot(
    const proto::WalInstallSnapshotRequest& request, std::chrono::milliseconds deadline) {
  return internal::Unary<proto::WalInstallSnapshotResponse>(
      retry_, deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->InstallSnapshot(ctx, request, response); });
}

}  // namespace sluice::rpc
