#include "lib/worker/worker_probe.h"

#include "lib/coord/session_probe.h"
#include "lib/rpc/rpc_probe.h"
#include "lib/state/state_probe.h"
#include "lib/worker/block_store.h"
#include "lib/worker/receiver_set.h"

namespace sluice::worker {

using metrics::Counter;
using metrics::Family;
using metrics::Gauge;
using metrics::Histogram;

int64_t ReceiverLag(int64_t next_offset, int64_t end_offset) {
  if (end_offset < 0 || next_offset < 0) return -1;
  return std::max<int64_t>(0, end_offset - next_offset);
}

Result<std::unique_ptr<ReceiverProbe>> ReceiverProbe::Create(metrics::Registry* registry, ReceiverSet* receivers,
                                                             BlockStore* store) {
  std::unique_ptr<ReceiverProbe> p(new ReceiverProbe(registry, receivers, store));
  const std::vector<std::string> sp = {"source", "partition"};
  const std::vector<std::string> spw = {"source", "partition", "where"};
  ASSIGN_OR_RETURN(p->next_offset_, registry->AddGauge("sluice_receiver_next_offset",
                                                       "One past the last offset the receiver stored in a block",
                                                       sp));
  ASSIGN_OR_RETURN(p->end_offset_, registry->AddGauge("sluice_receiver_source_end_offset",
                                                      "Kafka: the partition's high watermark as the receiver's "
                                                      "consumer last heard it",
                                                      sp));
  ASSIGN_OR_RETURN(p->lag_, registry->AddGauge("sluice_receiver_lag_records",
                                               "Kafka: offsets between the high watermark and the receiver's "
                                               "next offset",
                                               sp));
  ASSIGN_OR_RETURN(p->paused_, registry->AddGauge("sluice_receiver_paused",
                                                  "1 while the receiver holds a block it cannot hand on (store full, "
                                                  "leader unreachable, no replica), else 0",
                                                  sp));
  ASSIGN_OR_RETURN(p->running_,
                   registry->AddGauge("sluice_receiver_running", "1 while the receiver runs, 0 once it stopped", sp));
  ASSIGN_OR_RETURN(p->rate_limit_, registry->AddGauge("sluice_receiver_rate_limit_events_per_second",
                                                      "The receiver's rate limit as the leader set it (0: none)", sp));
  ASSIGN_OR_RETURN(p->pauses_, registry->AddCounter("sluice_receiver_pauses_total", "Times the receiver paused", sp));
  ASSIGN_OR_RETURN(p->blocks_,
                   registry->AddCounter("sluice_receiver_blocks_total", "Blocks the receiver cut and stored", sp));
  ASSIGN_OR_RETURN(p->records_,
                   registry->AddCounter("sluice_receiver_records_total", "Records the receiver stored in blocks", sp));
  ASSIGN_OR_RETURN(p->dead_letters_, registry->AddCounter("sluice_receiver_dead_letters_total",
                                                          "Records the receiver could not take (too large, "
                                                          "unparsable frames)",
                                                          sp));
  ASSIGN_OR_RETURN(p->held_blocks_, registry->AddGauge("sluice_block_store_blocks",
                                                       "Blocks held for the partition, where=memory|disk", spw));
  ASSIGN_OR_RETURN(p->held_bytes_, registry->AddGauge("sluice_block_store_block_bytes",
                                                      "Bytes of the blocks held for the partition, where=memory|disk",
                                                      spw));
  ASSIGN_OR_RETURN(Family<Gauge> * memory,
                   registry->AddGauge("sluice_block_store_memory_bytes", "Bytes of blocks held in memory"));
  ASSIGN_OR_RETURN(Family<Gauge> * disk,
                   registry->AddGauge("sluice_block_store_disk_bytes", "Bytes of blocks spilled to disk"));
  ASSIGN_OR_RETURN(Family<Gauge> * degraded,
                   registry->AddGauge("sluice_block_store_degraded",
                                      "1 while the spill store or the block log refuses writes (a full disk)"));
  ASSIGN_OR_RETURN(Family<Gauge> * unreported,
                   registry->AddGauge("sluice_receiver_unreported_blocks",
                                      "Blocks stored and not yet acknowledged by the leader"));
  p->store_memory_ = &memory->Get();
  p->store_disk_ = &disk->Get();
  p->store_degraded_ = &degraded->Get();
  p->unreported_ = &unreported->Get();
  ReceiverProbe* raw = p.get();
  p->collector_ = registry->AddCollector([raw] { raw->Collect(); });
  return p;
}

ReceiverProbe::~ReceiverProbe() { registry_->RemoveCollector(collector_); }

void ReceiverProbe::Drop(const Key& key) {
  const std::vector<std::string> l = {key.first, std::to_string(key.second)};
  for (Family<Gauge>* f : {next_offset_, end_offset_, lag_, paused_, running_, rate_limit_}) f->Remove(l);
  for (Family<Counter>* f : {pauses_, blocks_, records_, dead_letters_}) f->Remove(l);
  seen_.erase(key);
}

void ReceiverProbe::Collect() {
  std::set<Key> now;
  for (const ReceiverSet::Snapshot& s : receivers_->Snapshots()) {
    const Key key{s.source, s.partition};
    now.insert(key);
    const std::vector<std::string> l = {s.source, std::to_string(s.partition)};
    next_offset_->With(l).Set(static_cast<double>(s.stats.next_offset));
    if (s.stats.end_offset >= 0) {
      end_offset_->With(l).Set(static_cast<double>(s.stats.end_offset));
      lag_->With(l).Set(static_cast<double>(ReceiverLag(s.stats.next_offset, s.stats.end_offset)));
    }
    paused_->With(l).Set(s.stats.paused ? 1 : 0);
    running_->With(l).Set(s.stats.stopped ? 0 : 1);
    rate_limit_->With(l).Set(static_cast<double>(s.stats.rate_limit_per_s));
    // The counters add what the receiver counted since the last scrape; a
    // receiver made again for the partition counts afresh from zero.
    Seen& seen = seen_[key];
    if (seen.generation != s.generation) seen = Seen{.generation = s.generation};
    auto add = [&](Family<Counter>* f, int64_t now_count, int64_t& last) {
      if (now_count > last) f->With(l).Inc(static_cast<double>(now_count - last));
      last = now_count;
    };
    add(pauses_, s.stats.pauses, seen.pauses);
    add(blocks_, s.stats.blocks, seen.blocks);
    add(records_, s.stats.records, seen.records);
    add(dead_letters_, s.stats.dead_letters, seen.dead_letters);
  }
  for (const Key& gone : receiver_keys_) {
    if (!now.contains(gone)) Drop(gone);
  }
  receiver_keys_ = std::move(now);

  std::set<Key> held;
  for (const auto& [key, h] : store_->HoldingsByPartition()) {
    held.insert(key);
    const std::string part = std::to_string(key.second);
    held_blocks_->With({key.first, part, "memory"}).Set(static_cast<double>(h.blocks_in_memory));
    held_blocks_->With({key.first, part, "disk"}).Set(static_cast<double>(h.blocks_on_disk));
    held_bytes_->With({key.first, part, "memory"}).Set(static_cast<double>(h.bytes_in_memory));
    held_bytes_->With({key.first, part, "disk"}).Set(static_cast<double>(h.bytes_on_disk));
  }
  for (const Key& gone : held_keys_) {
    if (held.contains(gone)) continue;
    const std::string part = std::to_string(gone.second);
    for (const char* where : {"memory", "disk"}) {
      held_blocks_->Remove({gone.first, part, where});
      held_bytes_->Remove({gone.first, part, where});
    }
  }
  held_keys_ = std::move(held);
  const BlockStoreStats stats = store_->Stats();
  store_memory_->Set(static_cast<double>(stats.memory_bytes));
  store_disk_->Set(static_cast<double>(stats.disk_bytes));
  store_degraded_->Set(stats.degraded.empty() ? 0 : 1);
  unreported_->Set(static_cast<double>(receivers_->unreported()));
}

Result<std::unique_ptr<ExecutorProbe>> ExecutorProbe::Create(metrics::Registry* registry) {
  std::unique_ptr<ExecutorProbe> p(new ExecutorProbe());
  ASSIGN_OR_RETURN(Family<Counter> * run, registry->AddCounter("sluice_executor_tasks_total",
                                                               "Tasks this worker ran, by stage (map: also every "
                                                               "task of a job without key_by)",
                                                               {"stage"}));
  ASSIGN_OR_RETURN(Family<Counter> * failed, registry->AddCounter("sluice_executor_tasks_failed_total",
                                                                  "Tasks this worker ran that failed, by stage",
                                                                  {"stage"}));
  ASSIGN_OR_RETURN(Family<Histogram> * seconds,
                   registry->AddHistogram("sluice_executor_task_seconds", "How long this worker's tasks took, by stage",
                                          metrics::DelayBuckets(), {"stage"}));
  ASSIGN_OR_RETURN(Family<Counter> * input, registry->AddCounter("sluice_executor_input_records_total",
                                                                 "Records this worker's successful tasks read"));
  ASSIGN_OR_RETURN(Family<Counter> * output, registry->AddCounter("sluice_executor_output_records_total",
                                                                  "Records this worker's successful tasks wrote"));
  ASSIGN_OR_RETURN(Family<Counter> * shuffle, registry->AddCounter("sluice_executor_shuffle_bytes_total",
                                                                   "Shuffle bytes this worker's map tasks pushed"));
  ASSIGN_OR_RETURN(Family<Counter> * fetched, registry->AddCounter("sluice_executor_blocks_fetched_total",
                                                                   "Blocks this worker's tasks read from another "
                                                                   "worker"));
  ASSIGN_OR_RETURN(Family<Counter> * recomputed, registry->AddCounter("sluice_executor_blocks_recomputed_total",
                                                                      "Blocks this worker's tasks made again from "
                                                                      "their lineage"));
  ASSIGN_OR_RETURN(Family<Counter> * warm, registry->AddCounter("sluice_state_warm_bytes_total",
                                                                "Reduce-partition state bytes this worker copied "
                                                                "ahead of a move (WarmState)"));
  p->warm_bytes_ = &warm->Get();
  ASSIGN_OR_RETURN(Family<Counter> * copies,
                   registry->AddCounter("sluice_state_replica_copies_total",
                                        "Reduce tasks' copies to their replica, by what the replica lacked: "
                                        "delta (nothing: the batch's changes alone), changes (those since its "
                                        "older copy), whole (the state)",
                                        {"kind"}));
  int i = 0;
  for (const char* kind : {"delta", "changes", "whole"}) p->replica_copies_[i++] = &copies->With({kind});
  for (const auto& [stage, name] : {std::pair{static_cast<int>(proto::TASK_STAGE_MAP), "map"},
                                    std::pair{static_cast<int>(proto::TASK_STAGE_REDUCE), "reduce"}}) {
    p->stages_[stage] = {&run->With({name}), &failed->With({name}), &seconds->With({name})};
  }
  p->input_ = &input->Get();
  p->output_ = &output->Get();
  p->shuffle_bytes_ = &shuffle->Get();
  p->blocks_fetched_ = &fetched->Get();
  p->blocks_recomputed_ = &recomputed->Get();
  return p;
}

void ExecutorProbe::TaskDone(const proto::TaskRequest& task, const Result<proto::TaskResult>& result,
                             double seconds) {
  auto it = stages_.find(static_cast<int>(task.stage()));
  if (it == stages_.end()) it = stages_.begin();
  const Stage& s = it->second;
  s.run->Inc();
  s.seconds->Observe(seconds);
  if (!result.ok()) {
    s.failed->Inc();
    return;
  }
  input_->Inc(static_cast<double>(result->input()));
  output_->Inc(static_cast<double>(result->output()));
  shuffle_bytes_->Inc(static_cast<double>(result->shuffle_bytes()));
  blocks_fetched_->Inc(static_cast<double>(result->blocks_fetched()));
  blocks_recomputed_->Inc(static_cast<double>(result->blocks_recomputed()));
}

Result<std::unique_ptr<WorkerProbes>> WorkerProbes::Create(metrics::Registry* registry) {
  auto p = std::make_unique<WorkerProbes>();
  p->registry = registry;
  ASSIGN_OR_RETURN(p->rpc, rpc::RpcProbe::Create(registry));
  ASSIGN_OR_RETURN(p->executor, ExecutorProbe::Create(registry));
  return p;
}

WorkerProbes::~WorkerProbes() = default;

}  // namespace sluice::worker
