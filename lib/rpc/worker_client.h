// WorkerClient: every call to one worker's WorkerService (proto/worker.proto),
// from the leader driver (heartbeats, receivers, tasks, dropping blocks), from
// other workers (blocks, shuffle, state) and from sluicectl or tests (status).
//
// Module sluice::rpc owns it. A client is cheap: it uses its address's channel
// from a ChannelCache, so make one where it is needed. Each method has one
// deadline, a default below that a caller may override, and the client's
// RetryPolicy (unary calls only). Errors are the canonical codes the worker
// answered, or UNAVAILABLE / DEADLINE_EXCEEDED from the transport.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "lib/common/status.h"
#include "lib/rpc/call.h"
#include "proto/worker.pb.h"

namespace sluice::rpc {

class ChannelCache;

class WorkerClient {
 public:
  // Default deadlines.
  static constexpr std::chrono::milliseconds kStatusDeadline{500};
  static constexpr std::chrono::milliseconds kHeartbeatDeadline{1000};
  // A worker answers once the receivers it loses have stopped and their last
  // blocks are reported.
  static constexpr std::chrono::milliseconds kAssignReceiversDeadline{10'000};
  static constexpr std::chrono::milliseconds kFetchBlockDeadline{30'000};
  static constexpr std::chrono::milliseconds kReplicateBlockDeadline{10'000};
  // A task may read and write for a while: a minute.
  static constexpr std::chrono::milliseconds kRunTaskDeadline{60'000};
  static constexpr std::chrono::milliseconds kDropBlocksDeadline{1000};
  static constexpr std::chrono::milliseconds kPushShuffleDeadline{30'000};
  // A worker's state copies end well inside the leader's RunTask deadline,
  // so a reduce task never outlives its attempt.
  static constexpr std::chrono::milliseconds kReplicateStateDeadline{15'000};
  static constexpr std::chrono::milliseconds kFetchStateDeadline{15'000};
  // A warm ahead of a move is off the batch path: as long as the copy
  // takes, while chunks keep coming (FetchState's `idle`).
  static constexpr std::chrono::milliseconds kWarmFetchDeadline{30 * 60'000};
  static constexpr std::chrono::milliseconds kWarmFetchIdle{15'000};
  // The holder freezes its copy under the partition's lock, which its own
  // batch's reduce task may hold up to the task's minute.
  static constexpr std::chrono::milliseconds kWarmFetchFirstChunk{90'000};
  // The worker answers before the fault lands.
  static constexpr std::chrono::milliseconds kDrillDeadline{2'000};
  // A re-split gathers a partition's share of every old partition's state.
  static constexpr std::chrono::milliseconds kResplitStateDeadline{60'000};

  // `channels` must outlive the call to the constructor only.
  WorkerClient(ChannelCache& channels, const std::string& address, RetryPolicy retry = {});
  ~WorkerClient();
  WorkerClient(WorkerClient&&) noexcept;
  WorkerClient& operator=(WorkerClient&&) noexcept;

  const std::string& address() const { return address_; }

  [[nodiscard]] Result<proto::WorkerStatus> GetStatus(std::chrono::milliseconds deadline = kStatusDeadline);
  [[nodiscard]] Result<proto::LeaderHeartbeatResponse> LeaderHeartbeat(
      const proto::LeaderHeartbeatRequest& request, std::chrono::milliseconds deadline = kHeartbeatDeadline);
  [[nodiscard]] Result<proto::AssignReceiversResponse> AssignReceivers(
      const proto::AssignReceiversRequest& request, std::chrono::milliseconds deadline = kAssignReceiversDeadline,
      Cancellation* cancel = nullptr);
  // `cancel` (optional) ends the call early (CANCELLED); the worker then
  // sees the attempt abandoned and commits nothing of it.
  [[nodiscard]] Result<proto::TaskResult> RunTask(const proto::TaskRequest& request,
                                                  std::chrono::milliseconds deadline = kRunTaskDeadline,
                                                  Cancellation* cancel = nullptr);
  [[nodiscard]] Result<proto::ResplitStateResponse> ResplitState(
      const proto::ResplitStateRequest& request, std::chrono::milliseconds deadline = kResplitStateDeadline);
  [[nodiscard]] Result<proto::DropBlocksResponse> DropBlocks(const proto::DropBlocksRequest& request,
                                                             std::chrono::milliseconds deadline = kDropBlocksDeadline);
  // sluicectl drill --rpc: a fault on this worker (FAILED_PRECONDITION unless
  // its config allows drills).
  // Leader -> worker: copy a reduce partition's state ahead of a move; as
  // long as a whole copy may take.
  static constexpr std::chrono::milliseconds kWarmStateDeadline{kWarmFetchDeadline + std::chrono::milliseconds(60'000)};
  [[nodiscard]] Result<proto::WarmStateResponse> WarmState(const proto::WarmStateRequest& request,
                                                           std::chrono::milliseconds deadline = kWarmStateDeadline,
                                                           Cancellation* cancel = nullptr);
  [[nodiscard]] Result<proto::DrillResponse> Drill(const proto::DrillRequest& request,
                                                   std::chrono::milliseconds deadline = kDrillDeadline);

  // Streams: FetchBlock and FetchState hand each chunk to `consume`; the
  // others send what `produce` writes (see call.h).
  [[nodiscard]] Status FetchBlock(const proto::BlockRef& ref, const ChunkConsumer<proto::BlockChunk>& consume,
                                  std::chrono::milliseconds deadline = kFetchBlockDeadline);
  [[nodiscard]] Result<proto::ReplicateBlockResponse> ReplicateBlock(
      const ChunkProducer<proto::BlockChunk>& produce, std::chrono::milliseconds deadline = kReplicateBlockDeadline);
  [[nodiscard]] Result<proto::PushShuffleResponse> PushShuffle(
      const ChunkProducer<proto::ShuffleChunk>& produce, std::chrono::milliseconds deadline = kPushShuffleDeadline);
  [[nodiscard]] Result<proto::ReplicateStateResponse> ReplicateState(
      const ChunkProducer<proto::StateChunk>& produce, std::chrono::milliseconds deadline = kReplicateStateDeadline);
  // `idle`: also bounded by its progress (call.h, StreamIdle).
  [[nodiscard]] Status FetchState(const proto::FetchStateRequest& request,
                                  const ChunkConsumer<proto::StateChunk>& consume,
                                  std::chrono::milliseconds deadline = kFetchStateDeadline,
                                  const StreamIdle& idle = {});

 private:
  struct Stub;  // the generated stub (worker.grpc.pb.h stays in the .cc)

  std::string address_;
  RetryPolicy retry_;
  std::unique_ptr<Stub> stub_;
};

}  // namespace sluice::rpc
