// Scheduler: runs each job's planned batches and commits them
// (docs/design.md "Data path", steps 2-4, and the commit rule).
//
// Module sluice::driver owns it (scheduler.cc; keyed batches, their reduce
// placement and a rescale's re-split in scheduler_keyed.cc). Jobs are run
// independently of each other:
// each running job has at most one batch in progress, on its own thread, so
// a job whose batch waits (for a worker, a holder, a slow sink) never holds
// up another. For the oldest planned batch of a job it sends one task per
// planned range (RunTask), preferring a live worker that holds the range's
// first block, in parallel. An attempt on a worker that leaves the
// membership (its session expired: dead, paused or cut off) is cancelled at
// once and the task goes to a live worker, without counting as a failure.
// A worker that stays in the membership but that the other workers cannot
// reach (WorkerReachability, from the workers its failed tasks name) is
// treated the same for keyed work: the attempts that push to it, copy state
// to it or run there are cancelled, and the batch is placed again without
// it (its reduce partitions go to the other holder of their state).
// A task that fails is tried again on another worker, up to the job's
// max_task_failures; then the job is stopped with the error (nothing
// commits past it). A batch whose tasks failed only for transient reasons
// (a worker unreachable, the membership catching up) is tried again half a
// second later, keeping the tasks that succeeded, up to
// kMaxTransientAttempts. When every
// task of batch N has succeeded, BatchCommitted(N) is appended and committed
// — only then are the workers told to drop the blocks every running job
// reading the source is past (what ClusterState folded away). Batches of a job commit in order.
// A batch re-run after a failover writes the same outputs under the same
// names: the sinks are idempotent per (job, batch, task). Kafka positions are
// then committed to the job's consumer group, "sluice-<job>".
//
// Thread-compatible: the driver's schedule thread calls Tick; the batches run
// on threads of their own, joined by Tick and the destructor.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <string>
#include <utility>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/serial_executor.h"
#include "lib/driver/batch_progress.h"
#include "lib/driver/partition_moves.h"
#include "lib/driver/reachability.h"
#include "lib/rpc/call.h"
#include "lib/source/source_connector.h"
#include "proto/common.pb.h"
#include "proto/driver_log.pb.h"
#include "proto/worker.pb.h"

namespace sluice::driver {

class DataPath;
class DriverLog;
class JobHolds;
class JobProbe;
class Leadership;
class WorkerProxy;

class Scheduler {
 public:
  Scheduler(DriverLog* log, Leadership* leadership, WorkerProxy* workers, DataPath* data, Clock* clock)
      : log_(log),
        leadership_(leadership),
        workers_(workers),
        data_(data),
        clock_(clock),
        moves_(std::make_unique<PartitionMoves>(workers, clock)) {}
  // Cancels the attempts in flight and waits for the batches' threads.
  ~Scheduler();

  // Call often (every 50 ms), serving or not. Takes `live` as the workers'
  // membership (cancelling attempts on workers no longer in it, or every
  // attempt if this driver no longer serves), and starts the oldest planned
  // batch of each running job that has none in progress. Returns how many
  // batches committed since the last call.
  int Tick(const std::vector<proto::MemberInfo>& live);
  // Commits are counted there (driver_probe.h); before the first Tick.
  void set_probe(JobProbe* probe) {
    probe_ = probe;
    moves_->set_probe(probe);
  }
  // Held jobs' names are not dropped from the workers (a restore from a
  // savepoint installing state under a deleted name); before the first Tick.
  void set_holds(const JobHolds* holds) { holds_ = holds; }

  // Runs a rebalance round now (sluicectl rebalance): the moves it started.
  // FAILED_PRECONDITION unless this driver serves.
  [[nodiscard]] Result<std::vector<PartitionMove>> RebalanceNow();
  // The reduce-partition moves in flight and done (describe, metrics).
  PartitionMoves* moves() { return moves_.get(); }

  // The batch each job runs now and its tasks done, for JobRegistry.
  std::shared_ptr<const BatchProgress> progress() const { return progress_; }

 private:
  struct Retry {
    int64_t batch = 0;
    int failures = 0;                 // attempts that failed with a non-transient error
    int transient = 0;                // and with a transient one
    int64_t not_before_unix_ms = 0;   // the next attempt
    bool waiting = false;             // for a holder of some partition's state
    int64_t first_started_unix_ms = 0;  // the first attempt of this batch
    int attempts = 0;                   // task attempts of the earlier attempts
    // Stateless jobs: the tasks of this batch that already succeeded, by
    // task; a batch tried again runs only the others.
    std::map<int32_t, proto::TaskResult> done;
  };
  // One job's batch in progress, and what outlives it.
  struct JobRun {
    std::thread thread;
    std::atomic<bool> busy{false};
    std::atomic<int> committed{0};  // batches committed, not yet counted by Tick
    Retry retry;                    // used by the batch's thread only, or by Tick while !busy
  };

  // Runs `job`'s oldest planned batch to its commit or failure; true if it
  // committed.
  bool RunBatch(const std::string& job_id, const proto::ClusterState& state, const proto::JobState& job,
                const std::vector<proto::MemberInfo>& live, int64_t epoch, Retry& retry);
  // Counts a failed attempt of a batch and schedules the next; stops the job
  // when too many failed.
  void FailAttempt(const std::string& job_id, const proto::BatchPlanned& batch, const Status& failed,
                   int max_failures, Retry& retry);

  // Picks the worker of a task's next attempt: the k-th of `preferred`
  // still live, else (unless `pinned`) any live worker; and records the
  // attempt under it and under the workers the task depends on (a map
  // task's reduce owners, a reduce task's state replica), so that Tick
  // cancels it if one of them leaves. A task that `needs_peers` (keyed work:
  // shuffle, state copies) neither runs on nor depends on a worker cut off
  // from the others, and is cancelled if one becomes so.
  // False if no worker can take it.
  bool StartAttempt(const std::vector<proto::MemberInfo>& preferred, size_t k, bool pinned,
                    const std::vector<std::string>& depends_on, bool needs_peers, proto::MemberInfo* worker,
                    rpc::Cancellation* cancel);
  void EndAttempt(rpc::Cancellation* cancel);
  // Live, and (for a task that needs peers) not cut off from the other workers.
  bool IsUsable(const std::string& worker, bool needs_peers);
  // The request without the workers (as block holders) that are no longer
  // live or that the other workers cannot reach: their blocks are read again
  // from the source instead of waited for.
  proto::TaskRequest WithoutDeparted(proto::TaskRequest request);
  // `reporter`'s task could not reach `unreachable`: updates the workers cut
  // off from the others.
  void ReportUnreachable(const std::string& reporter, const std::vector<std::string>& unreachable);
  // The live workers cut off from the others now.
  std::set<std::string> CutOff();
  // Recomputes cut_off_ from reachability_ and live_ (under live_mu_), and
  // cancels the attempts that need peers of the workers newly cut off.
  void RefreshCutOff();

  DriverLog* const log_;
  Leadership* const leadership_;
  WorkerProxy* const workers_;
  DataPath* const data_;
  Clock* const clock_;  // batch timings
  const std::shared_ptr<BatchProgress> progress_ = std::make_shared<BatchProgress>();
  JobProbe* probe_ = nullptr;
  std::atomic<size_t> next_worker_{0};  // round robin for ranges whose blocks no live worker holds
  std::map<std::string, std::unique_ptr<JobRun>> runs_;  // by job; the schedule thread only

  std::mutex live_mu_;
  std::vector<proto::MemberInfo> live_;                     // guarded by live_mu_
  bool serving_ = false;                                    // guarded by live_mu_
  struct Attempt {
    rpc::Cancellation* cancel;
    bool needs_peers;  // keyed work: cancelled too when the worker is cut off from the others
  };
  std::multimap<std::string, Attempt> attempts_;  // by worker id; guarded by live_mu_
  WorkerReachability reachability_;               // guarded by live_mu_
  std::set<std::string> cut_off_;                 // live workers the others cannot reach; guarded by live_mu_
  std::set<std::string> draining_;                // live workers being drained; guarded by live_mu_
  // The live workers that may take keyed work (not cut off, not draining)
  // and the draining ones, from live_ (under live_mu_).
  std::pair<std::set<std::string>, std::set<std::string>> UsableAndDraining();
  // Deleted jobs each worker was told to drop the state of, this term
  // (TellDeleted, on the schedule thread only).
  std::map<std::string, std::set<std::string>> deleted_told_;
  // Per worker, per rescaled job: the layout below which it was told to drop.
  std::map<std::string, std::map<std::string, int64_t>> layouts_told_;
  int64_t told_epoch_ = 0;
  const JobHolds* holds_ = nullptr;
  // Draining workers not live, since when this term (unix ms; the schedule
  // thread only): one absent for kDrainForgetAfter has its mark cleared.
  static constexpr std::chrono::milliseconds kDrainForgetAfter{10'000};
  std::map<std::string, int64_t> drain_absent_since_;
  int64_t drain_absent_epoch_ = 0;

  // Runs each task on its candidates in turn, up to max_failures attempts,
  // all tasks in parallel.
  std::vector<Result<proto::TaskResult>> RunTasks(const std::string& job_id, int64_t batch_id,
                                                  const std::vector<proto::TaskRequest>& tasks,
                                                  const std::vector<std::vector<proto::MemberInfo>>& candidates,
                                                  int max_failures, std::atomic<int>* attempts);
  // Appends BatchCommitted, then commits Kafka positions and drops the
  // blocks no running job needs. False if the append failed.
  bool Commit(const std::string& job_id, const proto::BatchPlanned& batch, proto::DriverRecord record,
              const std::vector<proto::MemberInfo>& live, int64_t epoch);
  // A keyed job's batch (docs/state.md): places the reduce partitions, runs
  // the map tasks (`maps`, one per range), then one reduce task per
  // partition on its owner; commits if all succeeded. A failed attempt is
  // tried again on a later Tick, from the map tasks.
  bool RunKeyedBatch(const std::string& job_id, const proto::JobState& job, const proto::BatchPlanned& batch,
                     const std::vector<proto::MemberInfo>& live, int64_t epoch, std::vector<proto::TaskRequest> maps,
                     std::vector<std::vector<proto::MemberInfo>> candidates, Retry& retry);


  // Where a keyed batch's reduce partitions run, by partition: the owner,
  // the worker that gets a copy of the state (null for stateless stages or
  // a one-worker cluster), and the live workers holding the state now.
  struct ReducePlacement {
    std::vector<const proto::MemberInfo*> owner;
    std::vector<const proto::MemberInfo*> replica;
    std::vector<std::vector<const proto::MemberInfo*>> holders;
  };
  // Places every reduce partition of a keyed batch on the `live` workers
  // (pointers into it); nullopt while some partition's state has no live
  // holder (the batch waits; `retry` says until when).
  // Workers in `cut_off` are left out, as if they had left: they neither own
  // nor copy a partition, and their copy of the state is not used.
  std::optional<ReducePlacement> PlaceReducePartitions(const std::string& job_id, const proto::JobState& job,
                                                       const proto::BatchPlanned& batch,
                                                       const std::vector<proto::MemberInfo>& live,
                                                       const std::set<std::string>& cut_off, int32_t partitions,
                                                       bool stateful, Retry& retry, bool fresh_layout = false);
  // A rescale (lib/driver/rescale.h): the state layout batch `batch` runs
  // with, re-splitting the state into it first when the batch's count
  // differs from the holders'. `*resplit` is then `job` with the new
  // layout's holders. False while the batch must wait or if the re-split
  // failed (the attempt is counted; `retry` says when to try again).
  bool PrepareStateLayout(const std::string& job_id, const proto::JobState& job, const proto::BatchPlanned& batch,
                          const std::vector<proto::MemberInfo>& live, int64_t epoch, int32_t partitions,
                          bool stateful, Retry& retry, int64_t* layout, std::optional<proto::JobState>* resplit);
  // One reduce task per partition of `placement`.
  std::vector<proto::TaskRequest> ReduceTasks(const std::string& job_id, const proto::JobState& job,
                                              const proto::BatchPlanned& batch, int64_t epoch, int32_t map_tasks,
                                              bool stateful, const ReducePlacement& placement);
  // Appends JobStopped(reason); a failed append is left to the next leader.
  void StopJob(const std::string& job_id, const std::string& reason);
  // Tells the live workers to drop the state of deleted jobs (once each).
  void TellDeleted(const proto::ClusterState& state, const std::vector<proto::MemberInfo>& live, int64_t epoch);

  // After BatchCommitted, a job's Kafka positions go to its consumer group
  // "sluice-<job>", off the schedule thread (a slow broker never holds up
  // batches). Positions waiting for a commit are merged (the newest wins),
  // a failed commit is tried again a second later while this driver serves,
  // and a deposed leader commits nothing more.
  using JobSource = std::pair<std::string, std::string>;
  struct PendingCommit {
    proto::SourceSpec spec;
    std::map<int32_t, int64_t> offsets;  // partition -> next offset
    bool posted = false;                 // a flush is queued on commits_
  };
  void CommitKafkaOffsets(const std::string& job_id, const proto::ClusterState& state,
                          const proto::BatchCommitted& done);
  void QueueCommit(const JobSource& key, const proto::SourceSpec& spec, const std::map<int32_t, int64_t>& offsets,
                   std::chrono::milliseconds delay);
  void FlushCommit(const JobSource& key);  // on commits_

  std::mutex commit_mu_;
  std::map<JobSource, PendingCommit> pending_;  // guarded by commit_mu_
  // (job, source) -> the connector its positions are committed through; used on commits_ only.
  std::map<JobSource, std::unique_ptr<source::SourceConnector>> committers_;
  // Before commits_: its warm threads call workers_, never commits_.
  const std::unique_ptr<PartitionMoves> moves_;
  SerialExecutor commits_;  // last: destroyed (joined) first
};

}  // namespace sluice::driver
