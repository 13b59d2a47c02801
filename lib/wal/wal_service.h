// WalServiceImpl: the gRPC face of a driver's ReplicatedLog
// (proto/wal.proto WalService), called by the leader's replicators and by a
// new leader catching up.
//
// Module sluice::wal owns it. Thread-safe.
#pragma once

#include "lib/wal/replicated_log.h"
#include "proto/wal.grpc.pb.h"

namespace sluice::wal {

class WalServiceImpl final : public proto::WalService::Service {
 public:
  explicit WalServiceImpl(ReplicatedLog* log) : log_(log) {}

  grpc::Status Append(grpc::ServerContext* context, const proto::WalAppendRequest* request,
                      proto::WalAppendResponse* response) override;
  grpc::Status Fetch(grpc::ServerContext* context, const proto::WalFetchRequest* request,
                     proto::WalFetchResponse* response) override;
  grpc::Status InstallSnapshot(grpc::ServerContext* context,
                               const proto::WalInstallSnapshotRequest* request,
                               proto::WalInstallSnapshotResponse* response) override;

 private:
  ReplicatedLog* const log_;
};

}  // namespace sluice::wal
