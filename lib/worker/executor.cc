#include "lib/worker/executor.h"

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <optional>
#include <vector>

#include "lib/common/logging.h"
#include "lib/engine/deadline_index.h"
#include "lib/engine/json_text.h"
#include "lib/engine/keyed.h"
#include "lib/engine/pipeline.h"
#include "lib/engine/state_namespace.h"
#include "lib/rpc/rpc.h"
#include "lib/rpc/worker_client.h"
#include "lib/source/generator_source.h"
#include "lib/source/kafka_source.h"
#include "lib/worker/worker_probe.h"
#include "spdlog/spdlog.h"

namespace sluice::worker {

std::chrono::milliseconds FetchDeadline(int64_t bytes) { return TransferDeadline(bytes); }

Result<format::Block> FetchRemoteBlock(rpc::WorkerClient& holder, const proto::PartitionRange& r,
                                       std::chrono::milliseconds deadline) {
  proto::BlockRef ref;
  ref.set_source(r.source());
  ref.set_partition(r.partition());
  ref.set_start_offset(r.start_offset());
  proto::BlockInfo info;
  // Sized for the block at once, in a kept buffer if there is one: no growth
  // by copies, no fresh pages (format::BufferPool).
  std::string data;
  bool first = true;
  RETURN_IF_ERROR(holder.FetchBlock(ref, [&](proto::BlockChunk&& chunk) {
    if (first) {
      info = chunk.info();
      const size_t bytes = static_cast<size_t>(std::clamp<int64_t>(info.bytes(), 0, 256 << 20));
      data = format::BufferPool::Shared().Take(bytes);
      data.reserve(bytes);
    }
    first = false;
    data += chunk.data();
  }, deadline));
  const proto::PartitionRange& got = info.range();
  if (got.end_offset() != r.end_offset()) {
    return absl::DataLossError(fmt::format("fetched block {}[{}] at {} ends at {}, not {}", r.source(), r.partition(),
                                           r.start_offset(), got.end_offset(), r.end_offset()));
  }
  format::Block block({got.source(), got.partition(), got.start_offset(), got.end_offset()}, std::move(data),
                      info.records());
  RETURN_IF_ERROR(block.ForEach([](std::string_view) {}));
  return block;
}


namespace {

// Lost source ranges the task's range jumped over (on_data_loss: skip, or
// sluicectl source reset): one dead letter each, so the job's own dead
// letters say what it never saw (docs/data-path.md "When the source loses data").
void NoteSkipped(const proto::TaskRequest& task, engine::PipelineCounts* counts) {
  for (const proto::SourceDataLost& lost : task.skipped()) {
    ++counts->dead_letters;
    counts->last_dead_letter = fmt::format("offsets {}..{} of {}[{}] lost: {}", lost.from_offset(),
                                           lost.to_offset() - 1, lost.source(), lost.partition(), lost.reason());
    std::string& o = counts->dead_letter_lines;
    o += "{\"lost\":{\"source\":";
    engine::AppendJsonString(lost.source(), &o);
    o += fmt::format(",\"partition\":{},\"from\":{},\"to\":{},\"by_reset\":{},\"reason\":", lost.partition(),
                     lost.from_offset(), lost.to_offset(), lost.by_reset() ? "true" : "false");
    engine::AppendJsonString(lost.reason(), &o);
    o += "}}\n";
  }
}

// How long a range read again from its source may wait for it.
constexpr auto kRecomputeTimeout = std::chrono::seconds(30);
// Lost blocks are read again in reads of at most this many bytes (as
// reported), so a long run of them does not become one huge block.
constexpr int64_t kMaxRecomputeBytes = 64 << 20;

// Cuts `range`, read again in one piece, into the blocks it was reported as
// (by their record counts), so the operators see the same blocks as from a
// holder; the range as one block if the counts do not add up.
std::vector<format::Block> SplitAsReported(format::Block range, const std::vector<const proto::BlockInfo*>& blocks) {
  if (blocks.size() <= 1) return {std::move(range)};
  const std::string& data = range.data();
  std::vector<format::Block> out;
  size_t pos = 0;
  for (const proto::BlockInfo* info : blocks) {
    const size_t from = pos;
    for (int64_t i = 0; i < info->records(); ++i) {
      uint32_t len;
      if (data.size() - pos < 4) return {std::move(range)};
      std::memcpy(&len, data.data() + pos, 4);
      if (data.size() - pos - 4 < len) return {std::move(range)};
      pos += 4 + len;
    }
    const proto::PartitionRange& r = info->range();
    out.emplace_back(format::BlockLineage{r.source(), r.partition(), r.start_offset(), r.end_offset()},
                     data.substr(from, pos - from), info->records());
  }
  if (pos != data.size()) return {std::move(range)};
  return out;
}

}  // namespace

std::optional<format::Block> Executor::HeldBlock(const proto::TaskRequest& task, const proto::BlockInfo& info,
                                                 std::set<std::string>* unreachable, proto::TaskResult* result) {
  const proto::PartitionRange& r = info.range();
  Result<format::Block> local = store_->Get({r.source(), r.partition(), r.start_offset()});
  if (local.ok() && local->lineage().end_offset == r.end_offset()) return std::move(*local);
  for (const std::string& holder : info.holders()) {
    if (holder == self_id_ || unreachable->contains(holder)) continue;
    for (const proto::MemberInfo& m : task.holders()) {
      if (m.id() != holder) continue;
      rpc::WorkerClient client(*channels_, m.rpc_address());
      Result<format::Block> fetched = FetchRemoteBlock(client, r, FetchDeadline(info.bytes()));
      if (fetched.ok()) {
        result->set_blocks_fetched(result->blocks_fetched() + 1);
        return std::move(*fetched);
      }
      const Status& st = fetched.status();
      if (absl::IsNotFound(st)) {
        // A holder that restarted has lost its blocks in memory, one by one:
        // worth a debug line, not a warning per block.
        SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::debug, "block {}[{}] {}..{} is no longer on {}: {}",
                         r.source(), r.partition(), r.start_offset(), r.end_offset(), holder, st.ToString());
      } else {
        unreachable->insert(holder);
        // Once per holder and task, but a batch has many tasks: at most one
        // line per 5 s.
        SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn,
                         "job {} batch {} task {}: worker {} did not give block {}[{}] {}..{} ({}); this task asks it "
                         "for no more blocks",
                         task.job_id(), task.batch_id(), task.task(), holder, r.source(), r.partition(),
                         r.start_offset(), r.end_offset(), st.ToString());
      }
    }
  }
  return std::nullopt;
}

Result<std::vector<format::Block>> Executor::Recompute(const proto::TaskRequest& task,
                                                       const std::vector<const proto::BlockInfo*>& lost,
                                                       proto::TaskResult* result) {
  // From lineage: exactly the same records, from the same offsets, the whole
  // contiguous run in one read.
  const proto::PartitionRange& first = lost.front()->range();
  const int64_t end = lost.back()->range().end_offset();
  Result<format::Block> again = [&]() -> Result<format::Block> {
    ASSIGN_OR_RETURN(std::shared_ptr<source::SourceConnector> connector, connectors_.Get(task.source()));
    return connector->ReadRange(first.partition(), first.start_offset(), end, kRecomputeTimeout);
  }();
  if (!again.ok()) {
    return Annotate(again.status(), fmt::format("{} block(s) {}[{}] {}..{} held by no live worker cannot be recomputed",
                                                lost.size(), first.source(), first.partition(), first.start_offset(),
                                                end));
  }
  result->set_blocks_recomputed(result->blocks_recomputed() + static_cast<int64_t>(lost.size()));
  std::vector<format::Block> blocks = SplitAsReported(std::move(*again), lost);
  if (blocks.size() != lost.size()) {
    SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn,
                     "{}[{}] {}..{} read again does not split into the {} blocks reported; used as one", first.source(),
                     first.partition(), first.start_offset(), end, lost.size());
  }
  return blocks;
}

Result<sink::Sink*> Executor::SinkOf(const proto::TaskRequest& task) {
  std::lock_guard<std::mutex> lock(mu_);
  // By job and sink spec: an update may change the sink, and a deleted job's
  // name may come back with another. A replaced sink is kept (a task of the
  // batch before may still hold it) until the executor goes.
  OpenSinkOf& entry = sinks_[task.job_id()];
  if (entry.sink != nullptr && !google::protobuf::util::MessageDifferencer::Equals(entry.spec, task.spec().sink())) {
    retired_sinks_.push_back(std::move(entry.sink));
  }
  if (entry.sink == nullptr) {
    Result<std::unique_ptr<sink::Sink>> opened = sink::OpenSink(task.spec().sink());
    if (!opened.ok()) {
      sinks_.erase(task.job_id());
      return opened.status();
    }
    entry.sink = std::move(*opened);
    entry.spec = task.spec().sink();
  }
  return entry.sink.get();
}

namespace {

// A reduce partition's state as the Reducer sees it: the store's s/ values,
// which EnsureBase made the state as of the previous batch.
class StoreAccess final : public engine::StateAccess {
 public:
  StoreAccess(state::StateStore* store, const std::string& job, int32_t partition)
      : store_(store), job_(job), partition_(partition) {}
  Result<std::optional<std::string>> Get(std::string_view key) override { return store_->Get(job_, partition_, key); }
  Status Scan(const std::function<bool(std::string_view, std::string_view)>& fn) override {
    return store_->Scan(job_, partition_, "", fn);
  }
  Status ScanPrefix(std::string_view prefix,
                    const std::function<bool(std::string_view, std::string_view)>& fn) override {
    return store_->Scan(job_, partition_, prefix, fn);
  }

 private:
  state::StateStore* const store_;
  const std::string& job_;
  const int32_t partition_;
};

constexpr size_t kShuffleChunkBytes = 1 << 20;
// A task slower than this logs its timings at info level.
constexpr int64_t kSlowTaskMs = 2000;

int64_t MillisBetween(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

}  // namespace

Result<proto::TaskResult> Executor::Run(const proto::TaskRequest& task, std::function<bool()> abandoned) {
  if (probe_ == nullptr) return RunChecked(task, std::move(abandoned));
  const Clock::TimePoint start = clock_->Now();
  Result<proto::TaskResult> result = RunChecked(task, std::move(abandoned));
  probe_->TaskDone(task, result, std::chrono::duration<double>(clock_->Now() - start).count());
  return result;
}

Result<proto::TaskResult> Executor::RunChecked(const proto::TaskRequest& task, std::function<bool()> abandoned) {
  RETURN_IF_ERROR(paths_->CheckOutputs(task.spec()));
  if (!engine::HasPlugins(task.spec())) return RunConfined(task, abandoned);
  proto::TaskRequest resolved = task;
  RETURN_IF_ERROR(paths_->ResolvePlugins(resolved.mutable_spec()));
  return RunConfined(resolved, abandoned);
}

Result<proto::TaskResult> Executor::RunConfined(const proto::TaskRequest& task,
                                                const std::function<bool()>& abandoned) {
  if (task.stage() == proto::TASK_STAGE_REDUCE) return RunReduce(task, abandoned);
  const engine::BatchContext batch{.batch_id = task.batch_id(),
                                   .batch_time_unix_ms = task.batch_time_unix_ms(),
                                   .watermark_unix_ms = task.watermark_unix_ms(),
                                   .final_flush = task.final_flush()};
  const auto started = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Pipeline> pipeline, engine::Pipeline::Create(task.spec(), batch));
  proto::TaskResult result;
  // The output lines of a stateless task are tens of megabytes: a kept
  // buffer (at least an eighth of the input, a guess), given back once written.
  int64_t input_bytes = 0;
  for (const proto::BlockInfo& info : task.blocks()) input_bytes += info.bytes();
  std::string out = format::BufferPool::Shared().Take(static_cast<size_t>(std::max<int64_t>(input_bytes, 0) / 8));
  struct GiveBack {
    std::string& buffer;
    ~GiveBack() { format::BufferPool::Shared().Give(std::move(buffer)); }
  } give_back{out};
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
    SLUICE_LOG_EVERY(std::chrono::seconds(5), spdlog::level::warn,
                     "job {} batch {} task {}: the blocks given do not cover {}[{}] {}..{}: recomputing it",
                     task.job_id(), task.batch_id(), task.task(), range.source(), range.partition(),
                     range.start_offset(), range.end_offset());
    *whole.Add()->mutable_range() = range;
    blocks = &whole;
  }
  // Blocks held here or by a live holder are used as they are; each run of
  // contiguous blocks held nowhere is read again from the source at once.
  std::vector<const proto::BlockInfo*> lost;
  int64_t lost_bytes = 0;
  std::set<std::string> unreachable;
  int64_t finding_ms = 0, recomputing_ms = 0;  // where a slow task's time went
  auto recompute_lost = [&]() -> Status {
    if (lost.empty()) return absl::OkStatus();
    const auto reading = std::chrono::steady_clock::now();
    Result<std::vector<format::Block>> read_again = Recompute(task, lost, &result);
    recomputing_ms += MillisBetween(reading, std::chrono::steady_clock::now());
    ASSIGN_OR_RETURN(std::vector<format::Block> again, std::move(read_again));
    for (const format::Block& block : again) pipeline->Run(block, &out, &counts);
    lost.clear();
    lost_bytes = 0;
    return absl::OkStatus();
  };
  for (const proto::BlockInfo& info : *blocks) {
    const auto looking = std::chrono::steady_clock::now();
    std::optional<format::Block> held = HeldBlock(task, info, &unreachable, &result);
    finding_ms += MillisBetween(looking, std::chrono::steady_clock::now());
    if (held) {
      RETURN_IF_ERROR(recompute_lost());
      pipeline->Run(*held, &out, &counts);
      continue;
    }
    if (!lost.empty() && (lost.back()->range().end_offset() != info.range().start_offset() ||
                          lost_bytes + info.bytes() > kMaxRecomputeBytes)) {
      RETURN_IF_ERROR(recompute_lost());
    }
    lost.push_back(&info);
    lost_bytes += info.bytes();
  }
  RETURN_IF_ERROR(recompute_lost());
  const bool keyed = engine::IsKeyed(task.spec());
  std::vector<std::string> buffers;
  if (keyed) {
    ASSIGN_OR_RETURN(buffers, pipeline->FinishShuffle(&counts));
  }
  NoteSkipped(task, &counts);
  result.set_input(counts.input);
  result.set_output(counts.output);
  result.set_dead_letters(counts.dead_letters);
  result.set_late_events(counts.late_events);
  result.set_max_event_time_unix_ms(counts.max_event_time_unix_ms);
  if (counts.dead_letters > 0) {
    spdlog::warn("job {} batch {} task {}: {} dead letters, last: {}", task.job_id(), task.batch_id(), task.task(),
                 counts.dead_letters, counts.last_dead_letter);
  }
  RETURN_IF_ERROR(WriteDeadLetters(task, counts.dead_letter_lines, &result));
  if (keyed) {
    const auto pushing = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(PushShuffle(task, std::move(buffers), &result));
    spdlog::debug("job {} batch {} map task {}: {} records in {} ms, pushed {} bytes in {} ms", task.job_id(),
                  task.batch_id(), task.task(), counts.input, MillisBetween(started, pushing),
                  result.shuffle_bytes(), MillisBetween(pushing, std::chrono::steady_clock::now()));
    return result;
  }
  const auto writing = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(WriteOutput(task, task.task(), task.output_partition(), out, abandoned, &result));
  const int64_t total_ms = MillisBetween(started, std::chrono::steady_clock::now());
  // A task that took long says where the time went (blocks found here or
  // fetched, blocks read again from the source, the sink).
  spdlog::log(total_ms >= kSlowTaskMs ? spdlog::level::info : spdlog::level::debug,
              "job {} batch {} task {}: {} ms: {} blocks ({} fetched) found in {} ms, {} recomputed in {} ms, "
              "{} records written in {} ms",
              task.job_id(), task.batch_id(), task.task(), total_ms, task.blocks_size(), result.blocks_fetched(),
              finding_ms, result.blocks_recomputed(), recomputing_ms, counts.output,
              MillisBetween(writing, std::chrono::steady_clock::now()));
  return result;
}

Status Executor::StillCurrent(const proto::TaskRequest& task, const std::function<bool()>& abandoned) const {
  if (abandoned && abandoned()) return absl::FailedPreconditionError("the leader gave up on this attempt");
  const int64_t newest = fence_->highest();
  if (newest <= task.epoch()) return absl::OkStatus();
  return absl::FailedPreconditionError(fmt::format("its leader's epoch {} is older than {}", task.epoch(), newest));
}

Status Executor::WriteDeadLetters(const proto::TaskRequest& task, const std::string& lines, proto::TaskResult* result) {
  // Dead letters go beside the output, idempotent like the file sink.
  std::string dead_dir = task.spec().dead_letters();
  if (dead_dir.empty() && task.spec().sink().has_file()) dead_dir = task.spec().sink().file().path() + "/dead-letters";
  if (lines.empty() || dead_dir.empty()) return absl::OkStatus();
  const std::string name = sink::BatchFileName(task.job_id(), task.batch_id(), task.task());
  RETURN_IF_ERROR(sink::WriteFileAtomically(dead_dir, name, lines));
  result->set_dead_letter_name(dead_dir + "/" + name);
  return absl::OkStatus();
}

Status Executor::WriteOutput(const proto::TaskRequest& task, int32_t index, int32_t output_partition,
                             const std::string& out, const std::function<bool()>& abandoned,
                             proto::TaskResult* result) {
  ASSIGN_OR_RETURN(sink::Sink * sink, SinkOf(task));
  ASSIGN_OR_RETURN(sink::WriteResult written,
                   sink->Write({.job_id = task.job_id(),
                                .batch_id = task.batch_id(),
                                .task = index,
                                .output_partition = output_partition,
                                .still_current = [this, &task, &abandoned] { return StillCurrent(task, abandoned); }},
                               out));
  result->set_output_name(written.name);
  result->set_skipped(written.skipped);
  return absl::OkStatus();
}

Status Executor::PushShuffle(const proto::TaskRequest& task, std::vector<std::string> buffers,
                             proto::TaskResult* result) {
  if (static_cast<int>(buffers.size()) != task.reduce_workers_size()) {
    return absl::InvalidArgumentError(fmt::format("{} reduce partitions but {} reduce workers named", buffers.size(),
                                                  task.reduce_workers_size()));
  }
  int64_t bytes = 0;
  for (const std::string& b : buffers) bytes += static_cast<int64_t>(b.size());
  result->set_shuffle_bytes(bytes);
  // Partitions grouped by their worker: one stream per worker, all at once,
  // each within the time its bytes need (a worker that cannot be reached
  // costs that deadline, not the sum of them).
  std::map<std::string, std::vector<int32_t>> by_worker;
  std::map<std::string, std::string> address;
  for (int32_t p = 0; p < task.reduce_workers_size(); ++p) {
    by_worker[task.reduce_workers(p).id()].push_back(p);
    address[task.reduce_workers(p).id()] = task.reduce_workers(p).rpc_address();
  }
  std::vector<std::pair<std::string, std::future<Status>>> pushes;
  for (const auto& entry : by_worker) {
    const std::string& worker = entry.first;
    const std::vector<int32_t>& partitions = entry.second;
    if (worker == self_id_) {
      for (int32_t p : partitions) shuffle_->Put(task.job_id(), task.batch_id(), task.task(), p, std::move(buffers[p]));
      continue;
    }
    int64_t worker_bytes = 0;
    for (int32_t p : partitions) worker_bytes += static_cast<int64_t>(buffers[p].size());
    pushes.emplace_back(worker, std::async(std::launch::async, [&, worker_bytes] {
      auto produce = [&](const rpc::ChunkWriter<proto::ShuffleChunk>& write) {
        bool sent = true;
        for (int32_t p : partitions) {
          const std::string& rows = buffers[p];
          size_t pos = 0;
          do {
            proto::ShuffleChunk chunk;
            chunk.set_epoch(task.epoch());
            chunk.set_job_id(task.job_id());
            chunk.set_batch_id(task.batch_id());
            chunk.set_map_task(task.task());
            chunk.set_partition(p);
            const size_t n = std::min(kShuffleChunkBytes, rows.size() - pos);
            chunk.set_rows(rows.substr(pos, n));
            pos += n;
            sent = write(chunk);
          } while (sent && pos < rows.size());
          if (!sent) break;
        }
        return absl::OkStatus();
      };
      return rpc::WorkerClient(*channels_, address.at(worker)).PushShuffle(produce, TransferDeadline(worker_bytes)).status();
    }));
  }
  Status failed;
  std::vector<std::string> unreachable;
  for (auto& [worker, push] : pushes) {
    Status st = push.get();
    if (st.ok()) continue;
    if (rpc::IsUnreachable(st)) unreachable.push_back(worker);
    if (failed.ok()) {
      failed = Annotate(st, fmt::format("pushing the shuffle output of job {} batch {} map task {} to worker {}",
                                        task.job_id(), task.batch_id(), task.task(), worker));
    }
  }
  return rpc::NamingUnreachable(failed, unreachable);
}

Result<proto::TaskResult> Executor::RunReduce(const proto::TaskRequest& task, const std::function<bool()>& abandoned) {
  ASSIGN_OR_RETURN(std::optional<engine::KeyedStage> stage, engine::KeyedStageOf(task.spec()));
  if (!stage) return absl::InvalidArgumentError(fmt::format("job {} has no key_by: it has no reduce tasks", task.job_id()));
  ASSIGN_OR_RETURN(std::unique_ptr<engine::Reducer> reducer, engine::Reducer::Create(*stage));
  const std::string& job = task.job_id();
  const int32_t p = task.reduce_partition();
  proto::TaskResult result;
  const auto started = std::chrono::steady_clock::now();
  shuffle_->DropThrough(job, task.batch_id() - 1);  // earlier batches committed
  for (int32_t m = 0; m < task.map_tasks(); ++m) {
    std::optional<std::string> rows = shuffle_->Get(job, task.batch_id(), m, p);
    if (!rows) {
      return absl::AbortedError(fmt::format("job {} batch {}: the output of map task {} for reduce partition {} is "
                                            "not on worker {}",
                                            job, task.batch_id(), m, p, self_id_));
    }
    RETURN_IF_ERROR_PREPEND(reducer->Merge(*rows), fmt::format("map task {}", m));
    result.set_shuffle_bytes(result.shuffle_bytes() + static_cast<int64_t>(rows->size()));
  }
  const engine::BatchContext batch{.batch_id = task.batch_id(),
                                   .batch_time_unix_ms = task.batch_time_unix_ms(),
                                   .watermark_unix_ms = task.watermark_unix_ms(),
                                   .final_flush = task.final_flush()};
  engine::ReduceOutput out;
  const auto merged = std::chrono::steady_clock::now();
  auto based = merged, reduced = merged, written = merged, copied = merged;
  if (stage->stateful()) {
    // The state's namespace: the job's own before any rescale, else the
    // layout the leader names (lib/engine/state_namespace.h).
    const std::string ns = engine::StateNamespace(job, task.state_layout());
    std::lock_guard<std::mutex> lock(state_->LockOf(ns, p));
    const int64_t base = task.batch_id() - 1;
    // Names the holders it could not reach, if it fails.
    RETURN_IF_ERROR(state_->EnsureBase(task.epoch(), ns, p, base, task.state_holders()));
    based = std::chrono::steady_clock::now();
    StoreAccess access(state_->store(), ns, p);
    ASSIGN_OR_RETURN(out, reducer->Finish(batch, &access));
    reduced = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(StillCurrent(task, abandoned));  // a superseded attempt writes no state
    RETURN_IF_ERROR(state_->store()->WriteDelta(ns, p, task.batch_id(), out.changes));
    written = std::chrono::steady_clock::now();
    result.add_state_holders(self_id_);
    if (!task.replica().id().empty() && task.replica().id() != self_id_) {
      RETURN_IF_ERROR(StillCurrent(task, abandoned));
      bool replica_is_holder = false;
      for (const proto::MemberInfo& h : task.state_holders()) replica_is_holder |= h.id() == task.replica().id();
      ReduceState::Sent sent;
      if (Status st = state_->Replicate(task.epoch(), ns, p, base, task.batch_id(), replica_is_holder, task.replica(),
                                        &sent);
          !st.ok()) {
        return rpc::NamingUnreachable(st, rpc::IsUnreachable(st) ? std::vector<std::string>{task.replica().id()}
                                                                  : std::vector<std::string>{});
      }
      if (probe_ != nullptr) probe_->ReplicaCopied(static_cast<int>(sent.copy));
      result.add_state_holders(task.replica().id());
    }
    copied = std::chrono::steady_clock::now();
    state::StateStats stats = state_->store()->PartitionStats(ns, p);
    // The user's keys only: the deadline index's marker, in the same version
    // of the state as the stats, says how much of it is the index.
    ASSIGN_OR_RETURN(std::optional<std::string> marker,
                     state_->store()->Get(ns, p, engine::kDeadlineIndexPrefix));
    RETURN_IF_ERROR(engine::ExcludeDeadlineIndex(marker, &stats.keys, &stats.bytes));
    result.set_state_keys(stats.keys);
    result.set_state_bytes(stats.bytes);
  } else {
    ASSIGN_OR_RETURN(out, reducer->Finish(batch, nullptr));
  }
  result.set_output(out.output);
  RETURN_IF_ERROR(WriteOutput(task, p, p, out.lines, abandoned, &result));
  spdlog::debug("job {} batch {} reduce partition {}: merged {} bytes in {} ms, state as of {} in {} ms, "
                "reduced in {} ms ({} changes), delta written in {} ms, copied in {} ms, {} lines out in {} ms",
                job, task.batch_id(), p, result.shuffle_bytes(), MillisBetween(started, merged), task.batch_id() - 1,
                MillisBetween(merged, based), MillisBetween(based, reduced), out.changes.size(),
                MillisBetween(reduced, written), MillisBetween(written, copied), out.output,
                MillisBetween(copied, std::chrono::steady_clock::now()));
  return result;
}

}  // namespace sluice::worker
