// WorkerServiceImpl: the gRPC face of workerd (proto/worker.proto).
//
// Module sluice::worker owns it. Every call from a driver passes the epoch
// fence first. Blocks are served and taken in chunks (BlockChunk), so no
// block size meets gRPC's message-size limit. Thread-safe.
#pragma once

#include <atomic>
#include <functional>

#include "lib/worker/block_store.h"
#include "lib/worker/epoch_fence.h"
#include "lib/worker/executor.h"
#include "lib/worker/receiver_set.h"
#include "lib/worker/resplit.h"
#include "proto/worker.grpc.pb.h"

namespace sluice::worker {

class WorkerServiceImpl final : public proto::WorkerService::Service {
 public:
  using StatusSource = std::function<proto::WorkerStatus()>;
  using LeaderSink = std::function<void(const proto::LeaderHeartbeatRequest&)>;

  // `fence`, `store` and `receivers` must outlive the service.
  // `on_heartbeat` hears every accepted heartbeat.
  WorkerServiceImpl(std::string worker_id, EpochFence* fence, BlockStore* store, ShuffleStore* shuffle,
                    ReduceState* state, ReceiverSet* receivers, Executor* executor, StatusSource status,
                    LeaderSink on_heartbeat)
      : worker_id_(std::move(worker_id)),
        fence_(fence),
        store_(store),
        shuffle_(shuffle),
        state_(state),
        receivers_(receivers),
        executor_(executor),
        status_(std::move(status)),
        on_heartbeat_(std::move(on_heartbeat)) {}

  grpc::Status GetStatus(grpc::ServerContext* context, const proto::GetWorkerStatusRequest* request,
                         proto::WorkerStatus* response) override;
  grpc::Status LeaderHeartbeat(grpc::ServerContext* context,
                               const proto::LeaderHeartbeatRequest* request,
                               proto::LeaderHeartbeatResponse* response) override;
  grpc::Status AssignReceivers(grpc::ServerContext* context, const proto::AssignReceiversRequest* request,
                               proto::AssignReceiversResponse* response) override;
  grpc::Status FetchBlock(grpc::ServerContext* context, const proto::BlockRef* request,
                          grpc::ServerWriter<proto::BlockChunk>* writer) override;
  grpc::Status ReplicateBlock(grpc::ServerContext* context, grpc::ServerReader<proto::BlockChunk>* reader,
                              proto::ReplicateBlockResponse* response) override;
  grpc::Status RunTask(grpc::ServerContext* context, const proto::TaskRequest* request,
                       proto::TaskResult* response) override;
  grpc::Status DropBlocks(grpc::ServerContext* context, const proto::DropBlocksRequest* request,
                          proto::DropBlocksResponse* response) override;
  grpc::Status PushShuffle(grpc::ServerContext* context, grpc::ServerReader<proto::ShuffleChunk>* reader,
                           proto::PushShuffleResponse* response) override;
  grpc::Status ReplicateState(grpc::ServerContext* context, grpc::ServerReader<proto::StateChunk>* reader,
                              proto::ReplicateStateResponse* response) override;
  grpc::Status FetchState(grpc::ServerContext* context, const proto::FetchStateRequest* request,
                          grpc::ServerWriter<proto::StateChunk>* writer) override;
  grpc::Status ResplitState(grpc::ServerContext* context, const proto::ResplitStateRequest* request,
                            proto::ResplitStateResponse* response) override;
  grpc::Status Drill(grpc::ServerContext* context, const proto::DrillRequest* request,
                     proto::DrillResponse* response) override;
  grpc::Status WarmState(grpc::ServerContext* context, const proto::WarmStateRequest* request,
                         proto::WarmStateResponse* response) override;

  // Rescaling's worker side (must outlive the service); set before serving.
  void set_resplitter(Resplitter* resplitter) { resplitter_ = resplitter; }

  // Obey the Drill RPC (the allow-drills option); set before serving.
  void set_allow_drills(bool allow) { allow_drills_ = allow; }
  // Tasks running now (RunTask calls in progress).
  int tasks_running() const { return tasks_running_.load(); }

 private:
  const std::string worker_id_;
  EpochFence* const fence_;
  BlockStore* const store_;
  ShuffleStore* const shuffle_;
  ReduceState* const state_;
  ReceiverSet* const receivers_;
  Executor* const executor_;
  const StatusSource status_;
  const LeaderSink on_heartbeat_;
  bool allow_drills_ = false;
  Resplitter* resplitter_ = nullptr;
  std::atomic<int> tasks_running_{0};
};

}  // namespace sluice::worker
