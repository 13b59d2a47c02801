// JobRegistry: the leader's jobs — submit, list, describe, stop.
//
// Module sluice::driver owns it. A job is checked whole before anything is
// written (engine::ValidateJobSpec; its inline sources are registered, its
// named sources must exist, its plugins and output paths must be allowed by
// the cluster's PathPolicy), so a job that fails validation is refused,
// never half-started. Submit returns once JobSubmitted is committed in the
// WAL, Stop once JobStopped is (docs/design.md "Commit rule"); so do drain,
// restart, update and delete. Job ids are job names, unique among the jobs
// not deleted (a name used again numbers its batches on). The planner reads the
// running jobs from the driver's state (ClusterState). List and Describe add
// what only the leader knows: each job's rate limit and its batch in flight
// (BatchProgress, written by the Scheduler).
//
// Thread-safe: calls are serialised (submits are rare and each waits for a
// quorum commit).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "proto/driver.pb.h"

namespace sluice::engine {
struct PathPolicy;
}  // namespace sluice::engine

namespace sluice::driver {

class BatchProgress;
class DataPath;
class JobHolds;
class RateControl;
class DriverLog;
class Leadership;

class JobRegistry {
 public:
  // All pointers must outlive this object.
  JobRegistry(std::string driver_id, DriverLog* log, Leadership* leadership, DataPath* data, const RateControl* rates,
              Clock* clock, const engine::PathPolicy* paths, std::shared_ptr<const BatchProgress> progress);

  // The update's first batch is read and recorded under a hold of the job,
  // so that no batch is planned between (job_holds.h); before any Update.
  void set_holds(JobHolds* holds) { holds_ = holds; }

  // `from_savepoint` (optional): the job starts there (savepoint.h).
  [[nodiscard]] Result<proto::SubmitJobResponse> Submit(proto::JobSpec spec,
                                                        const proto::SavepointStart* from_savepoint = nullptr);
  // Submit's checks and its registration of the inline sources, without the
  // JobSubmitted record: a restore admits the job before it installs state.
  [[nodiscard]] Status Admit(const proto::JobSpec& spec);
  // Plain stop, or a drain (JobDrainRequested: the job stops by itself once
  // its input up to now committed). A stopped job keeps positions and state.
  [[nodiscard]] Status Stop(const proto::StopJobRequest& request);
  // The lifecycle (docs/jobs.md "A job's life"): each returns once its
  // record is committed. FAILED_PRECONDITION says why the job's state does
  // not allow it (delete a running job, restart a running one, an update the
  // state cannot follow).
  [[nodiscard]] Status Delete(const std::string& job_id);
  [[nodiscard]] Result<proto::RestartJobResponse> Restart(const std::string& job_id);
  [[nodiscard]] Result<proto::UpdateJobResponse> Update(const proto::UpdateJobRequest& request);
  // From the committed WAL: any driver answers (a standby may lag).
  proto::ListJobsResponse List() const;
  [[nodiscard]] Result<proto::JobInfo> Describe(const std::string& job_id) const;

 private:
  [[nodiscard]] Status CheckLeader() const;
  // The checks a spec passes before it is recorded (submit and update).
  [[nodiscard]] Status CheckSpec(const proto::JobSpec& spec) const;
  // The name free, the inline sources registered, the named ones there.
  [[nodiscard]] Status AdmitLocked(const proto::JobSpec& spec);  // requires mu_
  // The job's rate limit and batch in flight, added to `info`.
  proto::JobInfo WithLeaderView(const proto::ClusterState& state, proto::JobInfo info) const;

  const std::string driver_id_;
  DriverLog* const log_;
  JobHolds* holds_ = nullptr;
  Leadership* const leadership_;
  DataPath* const data_;
  const RateControl* const rates_;  // the job's rate limit, for Describe
  Clock* const clock_;
  const engine::PathPolicy* const paths_;  // plugins by name, output under output-dirs
  const std::shared_ptr<const BatchProgress> progress_;  // the batches in flight, for List and Describe
  std::mutex mu_;  // one submit or stop at a time
};

}  // namespace sluice::driver
