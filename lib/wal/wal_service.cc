#include "lib/wal/wal_service.h"

#include "lib/rpc/rpc.h"

namespace sluice::wal {

grpc::Status WalServiceImpl::Append(grpc::ServerContext*, const proto::WalAppendRequest* request,
                                    proto::WalAppendResponse* response) {
  return rpc::ToGrpc(log_->HandleAppend(*request, response));
}

grpc::Status WalServiceImpl::Fetch(grpc::ServerContext*, const proto::WalFetchRequest* request,
                                   proto::WalFetchResponse* response) {
  return rpc::ToGrpc(log_->HandleFetch(*request, response));
}

grpc::Status WalServiceImpl::InstallSnapshot(grpc::ServerContext*,
                                             const proto::WalInstallSnapshotRequest* request,
                                             proto::WalInstallSnapshotResponse* response) {
  return rpc::ToGrpc(log_->HandleInstallSnapshot(*request, response));
}

}  // namespace sluice::wal
