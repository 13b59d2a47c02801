#include "lib/worker/executor.h"

#include <grpcpp/grpcpp.h>

#include "lib/engine/pipeline.h"
#include "lib/rpc/rpc.h"
#include "lib/source/generator_source.h"
#include "lib/source/kafka_source.h"
#include "proto/worker.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace sluice::worker {

Result<source::Block> FetchRemoteBlock(const std::string& address, const proto::PartitionRange& r) {
  auto stub = proto::WorkerService::NewStub(rpc::NewChannel(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  proto::BlockRef ref;
  ref.set_source(r.source());
  ref.set_partition(r.partition());
  ref.set_start_offset(r.start_offset());
  auto reader = stub->FetchBlock(&ctx, ref);
  proto::BlockChunk chunk;
  proto::BlockInfo info;
  std::string data;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) info = chunk.info();
    first = false;
    data += chunk.data();
  }
  RETURN_IF_ERROR(rpc::FromGrpc(reader->Finish()));
  const proto::PartitionRange& got = info.range();
  if (got.end_offset() != r.end_offset()) {
    return absl::DataLossError(fmt::format("fetched block {}[{}] at {} ends at {}, not {}", r.source(), r.partition(),
                                           r.start_offset(), got.end_offset(), r.end_offset()));
  }
  source::Block block({got.source(), got.partition(), got.start_offset(), got.end_offset()}, std::move(data),
                      info.records());
  RETURN_IF_ERROR(block.ForEach([](std::string_view) {}));
  return block;
}


Result<source::Block> Executor::GetBlock(const proto::TaskRequest& task, const proto::BlockInfo& info,
                                         proto::TaskResult* result) {
  const proto::PartitionRange& r = info.range();
  Result<source::Block> local = store_->Get({r.source(), r.partition(), r.start_offset()});
  if (local.ok() && local->lineage().end_offset == r.end_offset()) return local;
  for (const std::string& holder : info.holders()) {
    for (const proto::MemberInfo& m : task.holders()) {
      if (m.id() != holder) continue;
      Result<source::Block> fetched = FetchRemoteBlock(m.rpc_address(), r);
      if (fetched.ok()) {
        result->set_blocks_fetched(result->blocks_fetched() + 1);
        return fetched;
      }
      spdlog::warn("fetching block {}[{}] {}..{} from {}: {}", r.source(), r.partition(), r.start_offset(),
                   r.end_offset(), holder, fetched.status().ToString());
    }
  }
  // Recompute from lineage: exactly the same records, from the same offsets.
  const proto::SourceSpec& spec = task.source();
  source::BlockBuilder builder(r.source(), r.partition(), r.start_offset());
  const int64_t want = r.end_offset() - r.start_offset();
  if (spec.kind() == proto::SOURCE_KIND_GENERATOR) {
    const proto::GeneratorSourceSpec& g = spec.generator();
    // The same options as the receiver's: event times depend on the rate.
    source::GeneratorSource gen({.name = spec.name(),
                                 .seed = g.seed(),
                                 .partitions = spec.partitions(),
                                 .rate_per_partition = g.rate_per_partition(),
                                 .num_keys = g.num_keys(),
                                 .payload_size = g.payload_bytes(),
                                 .available_from_unix_ms = g.available_from_unix_ms()},
                                clock_);
    gen.ReadInto(r.partition(), r.end_offset(), want, &builder);
  } else if (spec.kind() == proto::SOURCE_KIND_KAFKA) {
    source::KafkaSourceOptions o{.name = spec.name(),
                                 .brokers = spec.kafka().brokers(),
                                 .topic = spec.kafka().topic(),
                                 .max_event_bytes = spec.max_event_bytes()};
    for (const auto& [k, v] : spec.kafka().properties()) o.consumer_config[k] = v;
    ASSIGN_OR_RETURN(std::unique_ptr<source::KafkaSource> kafka, source::KafkaSource::Create(o));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (builder.next_offset() < r.end_offset() && std::chrono::steady_clock::now() < deadline) {
      RETURN_IF_ERROR(kafka->ReadInto(r.partition(), r.end_offset(), want, 500, &builder).status());
    }
  }
  if (builder.next_offset() != r.end_offset()) {
    return absl::DataLossError(fmt::format("block {}[{}] {}..{} is held by no live worker and cannot be recomputed",
                                           r.source(), r.partition(), r.start_offset(), r.end_offset()));
  }
  result->set_blocks_recomputed(result->blocks_recomputed() + 1);
  return builder.Cut();
}

Result<sink::Sink*> Executor::SinkOf(const proto::TaskRequest& task) {
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<sink::Sink>& s = sinks_[task.job_id()];
  if (!s) {
    Result<std::unique_ptr<sink::Sink>> opened = sink::OpenSink(task.spec().sink());
    if (!opened.ok()) {
      sinks_.erase(task.job_id());
      return opened.status();
    }
    s = std::move(*opened);
  }
  return s.get();
}

Result<proto::TaskResult> Executor::Run(const proto::TaskRequest& task, std::function<bool()> abandoned) {
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Pipeline> pipeline, engine::Pipeline::Create(task.spec()));
  proto::TaskResult result;
  std::string out;
  engine::PipelineCounts counts;
  // The blocks must cover the range exactly; if the leader no longer knew
  // some of them, the whole range is recomputed from its lineage (a socket
  // range then fails with DATA_LOSS rather than silently losing events).
  const proto::PartitionRange& range = task.range();
  int64_t covered = range.start_offset();
  for (const proto::BlockInfo& info : task.blocks()) {
    covered = info.range().start_offset() == covered ? info.range().end_offset() : -1;
  }
  const google::protobuf::RepeatedPtrField<proto::BlockInfo>* blocks = &task.blocks();
  google::protobuf::RepeatedPtrField<proto::BlockInfo> whole;
  if (covered != range.end_offset()) {
    spdlog::warn("job {} batch {} task {}: the blocks given do not cover {}[{}] {}..{}: recomputing it", task.job_id(),
                 task.batch_id(), task.task(), range.source(), range.partition(), range.start_offset(),
                 range.end_offset());
    *whole.Add()->mutable_range() = range;
    blocks = &whole;
  }
  for (const proto::BlockInfo& info : *blocks) {
    ASSIGN_OR_RETURN(source::Block block, GetBlock(task, info, &result));
    pipeline->Run(block, &out, &counts);
  }
  result.set_input(counts.input);
  result.set_output(counts.output);
  result.set_dead_letters(counts.dead_letters);
  if (counts.dead_letters > 0) {
    spdlog::warn("job {} batch {} task {}: {} dead letters, last: {}", task.job_id(), task.batch_id(), task.task(),
                 counts.dead_letters, counts.last_dead_letter);
  }
  // Dead letters go beside the output, idempotent like the file sink.
  std::string dead_dir = task.spec().dead_letters();
  if (dead_dir.empty() && task.spec().sink().has_file()) dead_dir = task.spec().sink().file().path() + "/dead-letters";
  if (!counts.dead_letter_lines.empty() && !dead_dir.empty()) {
    const std::string name = sink::BatchFileName(task.job_id(), task.batch_id(), task.task());
    RETURN_IF_ERROR(sink::WriteFileAtomically(dead_dir, name, counts.dead_letter_lines));
    result.set_dead_letter_name(dead_dir + "/" + name);
  }
  ASSIGN_OR_RETURN(sink::Sink * sink, SinkOf(task));
  ASSIGN_OR_RETURN(sink::WriteResult written, sink->Write({.job_id = task.job_id(),
                                                           .batch_id = task.batch_id(),
                                                           .task = task.task(),
                                                           .output_partition = task.output_partition(),
                                                           .still_current = [this, epoch = task.epoch(),
                                                                             &abandoned]() -> Status {
                                                             if (abandoned && abandoned()) {
                                                               return absl::FailedPreconditionError(
                                                                   "the leader gave up on this attempt");
                                                             }
                                                             const int64_t newest = fence_->highest();
                                                             if (newest <= epoch) return absl::OkStatus();
                                                             return absl::FailedPreconditionError(fmt::format(
                                                                 "its leader's epoch {} is older than {}", epoch,
                                                                 newest));
                                                           }},
                                                          out));
  result.set_output_name(written.name);
  result.set_skipped(written.skipped);
  return result;
}

}  // namespace sluice::worker
