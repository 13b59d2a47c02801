#include "lib/wal/wal_peer.h"

#include "grpcpp/grpcpp.h"
#include "lib/rpc/rpc.h"
#include "proto/wal.grpc.pb.h"

namespace sluice::wal {
namespace {

class GrpcWalPeer final : public WalPeer {
 public:
  GrpcWalPeer(const std::string& address, std::chrono::milliseconds deadline)
      : stub_(proto::WalService::NewStub(rpc::NewChannel(address))), deadline_(deadline) {}

  Status Append(const proto::WalAppendRequest& request, proto::WalAppendResponse* response) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline_);
    return rpc::FromGrpc(stub_->Append(&ctx, request, response));
  }
  Status Fetch(const proto::WalFetchRequest& request, proto::WalFetchResponse* response) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline_);
    return rpc::FromGrpc(stub_->Fetch(&ctx, request, response));
  }
  Status InstallSnapshot(const proto::WalInstallSnapshotRequest& request,
                         proto::WalInstallSnapshotResponse* response) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline_ * 4);
    return rpc::FromGrpc(stub_->InstallSnapshot(&ctx, request, response));
  }

 private:
  std::unique_ptr<proto::WalService::Stub> stub_;
  const std::chrono::milliseconds deadline_;
};

}  // namespace

WalPeerFactory GrpcWalPeerFactory(std::chrono::milliseconds deadline) {
  return [deadline](const std::string& address) -> std::unique_ptr<WalPeer> {
    return std::make_unique<GrpcWalPeer>(address, deadline);
  };
}

}  // namespace sluice::wal
