// The worker's metrics, one probe per part:
//   ReceiverProbe   per source partition (`source`, `partition`): the
//                   receiver's next offset, its lag behind the source's end
//                   (Kafka's high watermark, as the consumer last heard it),
//                   paused and pauses, blocks, records, dead letters, rate
//                   limit; and the blocks held for the partition, in memory
//                   and on disk, with their bytes. Read at each scrape.
//   ExecutorProbe   tasks run and failed, by stage, their durations, and
//                   the records and shuffle bytes they moved. Counted as
//                   each task ends.
// WorkerProbes holds them with the gRPC server's (RpcProbe), the
// coordination session's (SessionProbe) and the state store's (StateProbe).
//
// Module sluice::worker owns them; the Worker makes them on its registry.
// Thread-safe.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "lib/common/status.h"
#include "lib/metrics/metrics.h"
#include "proto/worker.pb.h"

namespace sluice::rpc {
class RpcProbe;
}
namespace sluice::coord {
class SessionProbe;
}
namespace sluice::state {
class StateProbe;
}

namespace sluice::worker {

class BlockStore;
class ReceiverSet;

// How far a receiver at `next_offset` is behind a source ending at
// `end_offset` (one past its last record); -1 when the end is unknown.
int64_t ReceiverLag(int64_t next_offset, int64_t end_offset);

class ReceiverProbe {
 public:
  // `receivers` and `store` must outlive the probe.
  [[nodiscard]] static Result<std::unique_ptr<ReceiverProbe>> Create(metrics::Registry* registry,
                                                                     ReceiverSet* receivers, BlockStore* store);
  ~ReceiverProbe();
  ReceiverProbe(const ReceiverProbe&) = delete;
  ReceiverProbe& operator=(const ReceiverProbe&) = delete;
  void Collect();

 private:
  ReceiverProbe(metrics::Registry* registry, ReceiverSet* receivers, BlockStore* store)
      : registry_(registry), receivers_(receivers), store_(store) {}
  using Key = std::pair<std::string, int32_t>;
  void Drop(const Key& key);

  metrics::Registry* const registry_;
  ReceiverSet* const receivers_;
  BlockStore* const store_;
  int collector_ = 0;
  metrics::Family<metrics::Gauge>* next_offset_ = nullptr;
  metrics::Family<metrics::Gauge>* end_offset_ = nullptr;
  metrics::Family<metrics::Gauge>* lag_ = nullptr;
  metrics::Family<metrics::Gauge>* paused_ = nullptr;
  metrics::Family<metrics::Gauge>* running_ = nullptr;
  metrics::Family<metrics::Gauge>* rate_limit_ = nullptr;
  metrics::Family<metrics::Counter>* pauses_ = nullptr;
  metrics::Family<metrics::Counter>* blocks_ = nullptr;
  metrics::Family<metrics::Counter>* records_ = nullptr;
  metrics::Family<metrics::Counter>* dead_letters_ = nullptr;
  metrics::Family<metrics::Gauge>* held_blocks_ = nullptr;  // + where
  metrics::Family<metrics::Gauge>* held_bytes_ = nullptr;   // + where
  metrics::Gauge* store_memory_ = nullptr;
  metrics::Gauge* store_disk_ = nullptr;
  metrics::Gauge* store_degraded_ = nullptr;
  metrics::Gauge* unreported_ = nullptr;
  // A receiver's counts as last added to the counters: a receiver made
  // again (another generation) counts from zero, and its counts are added.
  struct Seen {
    uint64_t generation = 0;
    int64_t pauses = 0, blocks = 0, records = 0, dead_letters = 0;
  };
  std::map<Key, Seen> seen_;     // the collector's only
  std::set<Key> receiver_keys_;  // with series now; the collector's only
  std::set<Key> held_keys_;
};

class ExecutorProbe {
 public:
  [[nodiscard]] static Result<std::unique_ptr<ExecutorProbe>> Create(metrics::Registry* registry);
  // A task ended with `result` after `seconds`.
  void TaskDone(const proto::TaskRequest& task, const Result<proto::TaskResult>& result, double seconds);
  // A WarmState copied `bytes` of a reduce partition's state here.
  void Warmed(int64_t bytes) { warm_bytes_->Inc(static_cast<double>(bytes)); }
  // A reduce task brought its replica's copy to the base this way:
  // ReduceState::Sent::Copy as an int (delta, changes, whole).
  void ReplicaCopied(int copy) {
    if (copy >= 0 && copy < static_cast<int>(replica_copies_.size())) replica_copies_[copy]->Inc();
  }

 private:
  ExecutorProbe() = default;
  struct Stage {
    metrics::Counter* run = nullptr;
    metrics::Counter* failed = nullptr;
    metrics::Histogram* seconds = nullptr;
  };
  std::map<int, Stage> stages_;  // by proto::TaskStage; made in Create, then read only
  metrics::Counter* input_ = nullptr;
  metrics::Counter* output_ = nullptr;
  metrics::Counter* shuffle_bytes_ = nullptr;
  metrics::Counter* blocks_fetched_ = nullptr;
  metrics::Counter* blocks_recomputed_ = nullptr;
  metrics::Counter* warm_bytes_ = nullptr;
  std::array<metrics::Counter*, 3> replica_copies_{};
};

// Every probe of one worker. Destroyed before the parts it reads
// (Worker::Stop).
struct WorkerProbes {
  [[nodiscard]] static Result<std::unique_ptr<WorkerProbes>> Create(metrics::Registry* registry);
  ~WorkerProbes();

  metrics::Registry* registry = nullptr;
  std::unique_ptr<rpc::RpcProbe> rpc;
  std::unique_ptr<ExecutorProbe> executor;
  std::unique_ptr<ReceiverProbe> receivers;
  std::unique_ptr<state::StateProbe> state;
  std::unique_ptr<coord::SessionProbe> session;
};

}  // namespace sluice::worker
