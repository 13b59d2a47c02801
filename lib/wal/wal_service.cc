#include "lib/wal/wal_service.h"

#include "lib/rpc/auth.h"
#include "lib/rpc/rpc.h"

namespace sluice::wal {

grpc::Status WalServiceImpl::Append(grpc::ServerContext* context, const proto::WalAppendRequest* request,
                                    proto::WalAppendResponse* response) {
  SLUICE_AUTHORIZE(context, "WalService.Append");
  return rpc::ToGrpc(log_->HandleAppend(*request, response));
}

grpc::Status WalServiceImpl::Fetch(grpc::ServerContext* context, const proto::WalFetchRequest* request,
                                   proto::WalFetchResponse* response) {
  SLUICE_AUTHORIZE(context, "WalService.Fetch");
  return rpc::ToGrpc(log_->HandleFetch(*request, response));
}

grpc::Status WalServiceImpl::InstallSnapshot(grpc::ServerContext* context,
                                             const proto::WalInstallSnapshotRequest* request,
                                             proto::WalInstallSnapshotResponse* response) {
  SLUICE_AUTHORIZE(context, "WalService.InstallSnapshot");
  return rpc::ToGrpc(log_->HandleInstallSnapshot(*request, response));
}

}  // namespace sluice::wal
