#include "lib/worker/worker_service.h"

#include <unistd.h>

#include <algorithm>
#include <limits>
#include <map>

#include "lib/common/drill.h"
#include "lib/rpc/auth.h"
#include "lib/rpc/rpc.h"
#include "lib/worker/worker_probe.h"

namespace sluice::worker {

grpc::Status WorkerServiceImpl::GetStatus(grpc::ServerContext* context,
                                          const proto::GetWorkerStatusRequest* /*request*/,
                                          proto::WorkerStatus* response) {
  SLUICE_AUTHORIZE(context, "WorkerService.GetStatus");
  *response = status_();
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::LeaderHeartbeat(grpc::ServerContext* context,
                                                const proto::LeaderHeartbeatRequest* request,
                                                proto::LeaderHeartbeatResponse* response) {
  SLUICE_AUTHORIZE(context, "WorkerService.LeaderHeartbeat");
  if (Status st = fence_->Accept(request->epoch()); !st.ok()) return rpc::ToGrpc(st);
  on_heartbeat_(*request);
  response->set_worker_id(worker_id_);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::AssignReceivers(grpc::ServerContext* context,
                                                const proto::AssignReceiversRequest* request,
                                                proto::AssignReceiversResponse* response) {
  SLUICE_AUTHORIZE(context, "WorkerService.AssignReceivers");
  if (Status st = fence_->Accept(request->epoch()); !st.ok()) return rpc::ToGrpc(st);
  Result<proto::AssignReceiversResponse> got = receivers_->Assign(*request);
  if (!got.ok()) return rpc::ToGrpc(got.status());
  *response = std::move(*got);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::FetchBlock(grpc::ServerContext* context, const proto::BlockRef* request,
                                           grpc::ServerWriter<proto::BlockChunk>* writer) {
  SLUICE_AUTHORIZE(context, "WorkerService.FetchBlock");
  Result<format::Block> block = store_->Get({request->source(), request->partition(), request->start_offset()});
  if (!block.ok()) return rpc::ToGrpc(block.status());
  proto::BlockInfo info;
  proto::PartitionRange* r = info.mutable_range();
  r->set_source(block->lineage().source);
  r->set_partition(block->lineage().partition);
  r->set_start_offset(block->lineage().start_offset);
  r->set_end_offset(block->lineage().end_offset);
  info.set_records(block->records());
  info.set_bytes(static_cast<int64_t>(block->bytes()));
  info.add_holders(worker_id_);
  if (!WriteBlockChunks(info, block->data(), [&](const proto::BlockChunk& c) { return writer->Write(c); })) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the reader went away");
  }
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReplicateBlock(grpc::ServerContext* context,
                                               grpc::ServerReader<proto::BlockChunk>* reader,
                                               proto::ReplicateBlockResponse* /*response*/) {
  SLUICE_AUTHORIZE(context, "WorkerService.ReplicateBlock");
  proto::BlockChunk chunk;
  proto::BlockInfo info;
  std::string data;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) {
      info = chunk.info();
      data.reserve(static_cast<size_t>(std::clamp<int64_t>(info.bytes(), 0, 256 << 20)));
      first = false;
    }
    data += chunk.data();
  }
  if (first || static_cast<int64_t>(data.size()) != info.bytes()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        fmt::format("replica of {} bytes announced as {}", data.size(), info.bytes()));
  }
  const proto::PartitionRange& r = info.range();
  format::Block block({r.source(), r.partition(), r.start_offset(), r.end_offset()}, std::move(data), info.records());
  if (Status ok = block.ForEach([](std::string_view) {}); !ok.ok()) return rpc::ToGrpc(ok);
  Status st = store_->Put(&block, /*durable=*/true);
  if (absl::IsAlreadyExists(st)) return grpc::Status::OK;  // a retry
  return rpc::ToGrpc(st);
}

grpc::Status WorkerServiceImpl::RunTask(grpc::ServerContext* context, const proto::TaskRequest* request,
                                        proto::TaskResult* response) {
  SLUICE_AUTHORIZE(context, "WorkerService.RunTask");
  if (Status st = fence_->Accept(request->epoch()); !st.ok()) return rpc::ToGrpc(st);
  ++tasks_running_;
  Result<proto::TaskResult> got = executor_->Run(*request, [context] { return context->IsCancelled(); });
  --tasks_running_;
  if (!got.ok()) return rpc::ToGrpc(got.status());
  *response = std::move(*got);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::DropBlocks(grpc::ServerContext* context, const proto::DropBlocksRequest* request,
                                           proto::DropBlocksResponse* response) {
  SLUICE_AUTHORIZE(context, "WorkerService.DropBlocks");
  if (Status st = fence_->Accept(request->epoch()); !st.ok()) return rpc::ToGrpc(st);
  int64_t dropped = 0;
  for (const proto::SourceOffset& o : request->before()) dropped += store_->DropBefore(o.source(), o.partition(), o.offset());
  for (const std::string& job : request->stopped_jobs()) {
    shuffle_->DropThrough(job, std::numeric_limits<int64_t>::max());
    if (Status st = state_->DropJob(job); !st.ok()) return rpc::ToGrpc(st);
    if (Status st = resplitter_->DropLaterLayouts(job); !st.ok()) return rpc::ToGrpc(st);
  }
  for (const std::string& ns : request->dropped_state()) {
    if (Status st = resplitter_->DropNamespace(ns); !st.ok()) return rpc::ToGrpc(st);
  }
  response->set_dropped(dropped);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::PushShuffle(grpc::ServerContext* context,
                                            grpc::ServerReader<proto::ShuffleChunk>* reader,
                                            proto::PushShuffleResponse* response) {
  SLUICE_AUTHORIZE(context, "WorkerService.PushShuffle");
  // Kept only once the whole stream is here: a map task that died halfway
  // leaves nothing (the reduce task then asks for a re-run).
  proto::ShuffleChunk chunk, first;
  std::map<int32_t, std::string> rows;
  int64_t bytes = 0;
  bool any = false;
  while (reader->Read(&chunk)) {
    if (!any) {
      first = chunk;
      first.clear_rows();
      any = true;
      if (Status st = fence_->Accept(chunk.epoch()); !st.ok()) return rpc::ToGrpc(st);
    } else if (chunk.job_id() != first.job_id() || chunk.batch_id() != first.batch_id() ||
               chunk.map_task() != first.map_task()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "one shuffle stream carries one map task's output");
    }
    bytes += static_cast<int64_t>(chunk.rows().size());
    rows[chunk.partition()] += chunk.rows();
  }
  // Read() ends the same way for WritesDone and for a broken stream.
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the shuffle stream broke off");
  for (auto& [partition, data] : rows) {
    shuffle_->Put(first.job_id(), first.batch_id(), first.map_task(), partition, std::move(data));
  }
  response->set_bytes(bytes);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReplicateState(grpc::ServerContext* context,
                                               grpc::ServerReader<proto::StateChunk>* reader,
                                               proto::ReplicateStateResponse* response) {
  SLUICE_AUTHORIZE(context, "WorkerService.ReplicateState");
  // Applied as it arrives (a whole state is installed chunk by chunk), once
  // the first chunk's epoch passed the fence.
  bool first = true;
  Status fenced = absl::OkStatus();
  Result<proto::ReplicateStateResponse> applied = state_->ApplyAnswering([&](proto::StateChunk* chunk) {
    if (!reader->Read(chunk)) return false;
    if (first) {
      first = false;
      fenced = fence_->Accept(chunk->epoch());
    }
    return fenced.ok();
  });
  if (!fenced.ok()) return rpc::ToGrpc(fenced);
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the state stream broke off");
  if (first) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "an empty state stream");
  if (!applied.ok()) return rpc::ToGrpc(applied.status());
  *response = std::move(*applied);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::WarmState(grpc::ServerContext* context, const proto::WarmStateRequest* request,
                                          proto::WarmStateResponse* response) {
  SLUICE_AUTHORIZE(context, "WorkerService.WarmState");
  if (Status st = fence_->Accept(request->epoch()); !st.ok()) return rpc::ToGrpc(st);
  Result<proto::WarmStateResponse> warmed =
      state_->Warm(request->epoch(), request->job_id(), request->partition(), request->base_batch(), request->holders(),
                   [context] { return context->IsCancelled(); });
  if (!warmed.ok()) return rpc::ToGrpc(warmed.status());
  if (executor_->probe() != nullptr) executor_->probe()->Warmed(warmed->bytes());
  *response = std::move(*warmed);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::FetchState(grpc::ServerContext* context, const proto::FetchStateRequest* request,
                                           grpc::ServerWriter<proto::StateChunk>* writer) {
  SLUICE_AUTHORIZE(context, "WorkerService.FetchState");
  if (Status st = fence_->Accept(request->epoch()); !st.ok()) return rpc::ToGrpc(st);
  if (request->split_partitions() > 0) {
    return rpc::ToGrpc(
        resplitter_->ServeSplit(*request, [&](const proto::StateChunk& c) { return writer->Write(c); }));
  }
  return rpc::ToGrpc(state_->Snapshot(request->job_id(), request->partition(), request->base_batch(),
                                      request->keep_changes(),
                                      [&](const proto::StateChunk& c) { return writer->Write(c); }));
}

grpc::Status WorkerServiceImpl::ResplitState(grpc::ServerContext* context, const proto::ResplitStateRequest* request,
                                             proto::ResplitStateResponse* response) {
  SLUICE_AUTHORIZE(context, "WorkerService.ResplitState");
  if (Status st = fence_->Accept(request->epoch()); !st.ok()) return rpc::ToGrpc(st);
  Result<proto::ResplitStateResponse> done = resplitter_->Resplit(*request);
  if (!done.ok()) return rpc::ToGrpc(done.status());
  *response = std::move(*done);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Drill(grpc::ServerContext* context, const proto::DrillRequest* request,
                                      proto::DrillResponse* response) {
  SLUICE_AUTHORIZE(context, "WorkerService.Drill");
  response->set_pid(::getpid());
  return rpc::ToGrpc(ObeyDrill(static_cast<DrillFault>(request->fault()), std::chrono::milliseconds(request->pause_ms()),
                               allow_drills_, "worker " + worker_id_));
}

}  // namespace sluice::worker
