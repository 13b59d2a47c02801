#include "lib/rpc/worker_client.h"

#include "lib/rpc/channel_cache.h"
#include "lib/rpc/internal/call.h"
#include "proto/worker.grpc.pb.h"

namespace sluice::rpc {

struct WorkerClient::Stub {
  std::unique_ptr<proto::WorkerService::Stub> stub;
};

WorkerClient::WorkerClient(ChannelCache& channels, const std::string& address, RetryPolicy retry)
    : address_(address),
      retry_(retry),
      stub_(std::make_unique<Stub>(Stub{proto::WorkerService::NewStub(channels.Get(address))})) {}

WorkerClient::~WorkerClient() = default;
WorkerClient::WorkerClient(WorkerClient&&) noexcept = default;
WorkerClient& WorkerClient::operator=(WorkerClient&&) noexcept = default;

Result<proto::WorkerStatus> WorkerClient::GetStatus(std::chrono::milliseconds deadline) {
  return internal::Unary<proto::WorkerStatus>(retry_, deadline, [&](grpc::ClientContext* ctx, auto* response) {
    return stub_->stub->GetStatus(ctx, proto::GetWorkerStatusRequest(), response);
  });
}

Result<proto::LeaderHeartbeatResponse> WorkerClient::LeaderHeartbeat(const proto::LeaderHeartbeatRequest& request,
                                                                     std::chrono::milliseconds deadline) {
  return internal::Unary<proto::LeaderHeartbeatResponse>(
      retry_, deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->LeaderHeartbeat(ctx, request, response); });
}

Result<proto::AssignReceiversResponse> WorkerClient::AssignReceivers(const proto::AssignReceiversRequest& request,
                                                                     std::chrono::milliseconds deadline,
                                                                     Cancellation* cancel) {
  return internal::Unary<proto::AssignReceiversResponse>(
      retry_, deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->AssignReceivers(ctx, request, response); },
      cancel);
}

Result<proto::TaskResult> WorkerClient::RunTask(const proto::TaskRequest& request, std::chrono::milliseconds deadline,
                                                Cancellation* cancel) {
  return internal::Unary<proto::TaskResult>(
      retry_, deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->RunTask(ctx, request, response); }, cancel);
}

Result<proto::DropBlocksResponse> WorkerClient::DropBlocks(const proto::DropBlocksRequest& request,
                                                           std::chrono::milliseconds deadline) {
  return internal::Unary<proto::DropBlocksResponse>(
      retry_, deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->DropBlocks(ctx, request, response); });
}

Result<proto::WarmStateResponse> WorkerClient::WarmState(const proto::WarmStateRequest& request,
                                                         std::chrono::milliseconds deadline, Cancellation* cancel) {
  return internal::Unary<proto::WarmStateResponse>(
      retry_, deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->WarmState(ctx, request, response); },
      cancel);
}

Result<proto::ResplitStateResponse> WorkerClient::ResplitState(const proto::ResplitStateRequest& request,
                                                               std::chrono::milliseconds deadline) {
  return internal::Unary<proto::ResplitStateResponse>(
      retry_, deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->ResplitState(ctx, request, response); });
}

Result<proto::DrillResponse> WorkerClient::Drill(const proto::DrillRequest& request,
                                                 std::chrono::milliseconds deadline) {
  return internal::Unary<proto::DrillResponse>(
      retry_, deadline,
      [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->Drill(ctx, request, response); });
}

Status WorkerClient::FetchBlock(const proto::BlockRef& ref, const ChunkConsumer<proto::BlockChunk>& consume,
                                std::chrono::milliseconds deadline) {
  return internal::ReadStream<proto::BlockChunk>(
      deadline, [&](grpc::ClientContext* ctx) { return stub_->stub->FetchBlock(ctx, ref); }, consume);
}

Result<proto::ReplicateBlockResponse> WorkerClient::ReplicateBlock(const ChunkProducer<proto::BlockChunk>& produce,
                                                                   std::chrono::milliseconds deadline) {
  return internal::WriteStream<proto::ReplicateBlockResponse, proto::BlockChunk>(
      deadline, [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->ReplicateBlock(ctx, response); },
      produce);
}

Result<proto::PushShuffleResponse> WorkerClient::PushShuffle(const ChunkProducer<proto::ShuffleChunk>& produce,
                                                             std::chrono::milliseconds deadline) {
  return internal::WriteStream<proto::PushShuffleResponse, proto::ShuffleChunk>(
      deadline, [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->PushShuffle(ctx, response); },
      produce);
}

Result<proto::ReplicateStateResponse> WorkerClient::ReplicateState(const ChunkProducer<proto::StateChunk>& produce,
                                                                   std::chrono::milliseconds deadline) {
  return internal::WriteStream<proto::ReplicateStateResponse, proto::StateChunk>(
      deadline, [&](grpc::ClientContext* ctx, auto* response) { return stub_->stub->ReplicateState(ctx, response); },
      produce);
}

Status WorkerClient::FetchState(const proto::FetchStateRequest& request, const ChunkConsumer<proto::StateChunk>& consume,
                                std::chrono::milliseconds deadline, const StreamIdle& idle) {
  return internal::ReadStream<proto::StateChunk>(
      deadline, [&](grpc::ClientContext* ctx) { return stub_->stub->FetchState(ctx, request); }, consume, idle);
}

}  // namespace sluice::rpc
