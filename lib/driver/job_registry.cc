#include "lib/driver/job_registry.h"

#include <map>
#include <optional>

#include "lib/driver/batch_progress.h"
#include "lib/driver/cluster_state.h"
#include "lib/driver/data_path.h"
#include "lib/driver/driver_log.h"
#include "lib/driver/job_holds.h"
#include "lib/driver/job_update.h"
#include "lib/driver/leadership.h"
#include "lib/driver/rate_control.h"
#include "lib/engine/confinement.h"
#include "lib/engine/job_file.h"
#include "lib/engine/keyed.h"
#include "lib/driver/rescale.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {
namespace {

proto::JobInfo InfoOf(const std::string& id, const proto::JobState& job) {
  proto::JobInfo info;
  info.set_job_id(id);
  *info.mutable_spec() = job.spec();
  info.set_state(JobStateName(job));
  info.set_submit_time_unix_ms(job.submit_time_unix_ms());
  info.set_last_planned_batch(job.last_planned_batch());
  info.set_last_committed_batch(job.last_committed_batch());
  info.set_stop_reason(job.stop_reason());
  *info.mutable_recent_batches() = job.recent_batches();
  info.set_total_input(job.total_input());
  info.set_total_output(job.total_output());
  info.set_total_dead_letters(job.total_dead_letters());
  info.set_state_keys(job.state_keys());
  info.set_state_bytes(job.state_bytes());
  info.set_total_late_events(job.total_late_events());
  info.set_watermark_unix_ms(engine::Watermark(job.spec(), job.max_event_time_unix_ms()));
  *info.mutable_positions() = job.committed_offsets();
  info.set_restarts(job.restarts());
  info.set_updates(job.updates());
  info.set_savepoint(job.savepoint());
  *info.mutable_drain_until() = job.drain_until();
  if (job.has_previous_spec()) info.set_spec_from_batch(job.spec_from_batch());
  info.set_state_layout(job.state_layout());
  info.set_state_partitions(HoldersPartitions(job));
  return info;
}

}  // namespace

JobRegistry::JobRegistry(std::string driver_id, DriverLog* log, Leadership* leadership, DataPath* data,
                         const RateControl* rates, Clock* clock, const engine::PathPolicy* paths,
                         std::shared_ptr<const BatchProgress> progress)
    : driver_id_(std::move(driver_id)),
      log_(log),
      leadership_(leadership),
      data_(data),
      rates_(rates),
      clock_(clock),
      paths_(paths),
      progress_(std::move(progress)) {}

Status JobRegistry::CheckLeader() const {
  if (!leadership_->Serving()) {
    return absl::UnavailableError(fmt::format("driver {} is not the serving leader", driver_id_));
  }
  return absl::OkStatus();
}

Status JobRegistry::CheckSpec(const proto::JobSpec& spec) const {
  RETURN_IF_ERROR(engine::ValidateJobSpec(spec));
  RETURN_IF_ERROR(engine::CheckRunnable(spec));
  return paths_->CheckJobSpec(spec);
}

Status JobRegistry::Admit(const proto::JobSpec& spec) {
  RETURN_IF_ERROR(CheckSpec(spec));
  std::lock_guard<std::mutex> lock(mu_);
  return AdmitLocked(spec);
}

Status JobRegistry::AdmitLocked(const proto::JobSpec& spec) {
  RETURN_IF_ERROR(CheckLeader());
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  const proto::ClusterState& state = *state_view;
  if (auto it = state.jobs().find(spec.name()); it != state.jobs().end()) {
    return absl::AlreadyExistsError(fmt::format(
        "job {} exists ({}); update it (sluicectl update), or stop and delete it to use the name again", spec.name(),
        JobStateName(it->second)));
  }
  // Every source must be there before the job is: inline ones are declared
  // now (the same spec again is a harmless retry), named ones must exist.
  for (const proto::SourceSpec& s : spec.inline_sources()) {
    Result<proto::SourceSpec> registered = data_->RegisterSource(s);
    if (!registered.ok()) {
      return Annotate(registered.status(), fmt::format("{}: source {}", spec.file().empty() ? "job" : spec.file(),
                                                       s.name()));
    }
  }
  const std::shared_ptr<const proto::ClusterState> after_view = log_->View();
  const proto::ClusterState& after = *after_view;
  for (const std::string& name : spec.sources()) {
    if (!after.sources().contains(name)) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: sources: no source named '{}' (declare it in the job file, or with sluicectl source add)",
          spec.file().empty() ? "job" : spec.file(), name));
    }
  }
  return absl::OkStatus();
}

Result<proto::SubmitJobResponse> JobRegistry::Submit(proto::JobSpec spec, const proto::SavepointStart* from_savepoint) {
  RETURN_IF_ERROR(CheckSpec(spec));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(AdmitLocked(spec));
  proto::DriverRecord record;
  proto::JobSubmitted* js = record.mutable_job_submitted();
  js->set_job_id(spec.name());
  js->set_submit_time_unix_ms(clock_->UnixMillis());
  *js->mutable_spec() = spec;
  if (from_savepoint != nullptr) *js->mutable_from_savepoint() = *from_savepoint;
  ASSIGN_OR_RETURN(int64_t seq, log_->Append(std::move(record)));
  spdlog::info("job {} submitted (WAL record {})", spec.name(), seq);
  proto::SubmitJobResponse response;
  response.set_job_id(spec.name());
  response.set_wal_seq(seq);
  return response;
}

Status JobRegistry::Stop(const proto::StopJobRequest& request) {
  const std::string& job_id = request.job_id();
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckLeader());
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  const proto::ClusterState& state = *state_view;
  auto it = state.jobs().find(job_id);
  if (it == state.jobs().end()) return absl::NotFoundError(fmt::format("no job {}", job_id));
  const proto::JobState& job = it->second;
  if (job.stopped()) return absl::OkStatus();  // already: a retry
  proto::DriverRecord record;
  if (request.drain()) {
    if (job.draining()) return absl::OkStatus();  // a retry
    // The input accepted so far, per partition of the job's sources: the
    // drain plans up to there and no further.
    proto::JobDrainRequested* drain = record.mutable_job_drain_requested();
    drain->set_job_id(job_id);
    drain->set_reason(request.reason().empty() ? "drained by the user" : request.reason());
    drain->set_emit_open_windows(request.emit_open_windows());
    for (const std::string& source : job.spec().sources()) {
      auto src = state.sources().find(source);
      if (src == state.sources().end()) continue;
      for (const proto::PartitionState& ps : src->second.partitions()) {
        proto::SourceOffset* until = drain->add_until();
        until->set_source(source);
        until->set_partition(ps.partition());
        until->set_offset(ps.next_offset());
      }
    }
  } else {
    record.mutable_job_stopped()->set_job_id(job_id);
    record.mutable_job_stopped()->set_reason(request.reason().empty() ? "stopped by the user" : request.reason());
  }
  ASSIGN_OR_RETURN(int64_t seq, log_->Append(std::move(record)));
  spdlog::info("job {} {} (WAL record {})", job_id, request.drain() ? "draining: it stops once its input so far committed" : "stopped", seq);
  return absl::OkStatus();
}

Status JobRegistry::Delete(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckLeader());
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  auto it = state_view->jobs().find(job_id);
  if (it == state_view->jobs().end()) return absl::NotFoundError(fmt::format("no job {}", job_id));
  if (!it->second.stopped()) {
    return absl::FailedPreconditionError(
        fmt::format("job {} is {}: stop it first (sluicectl stop [--drain])", job_id, JobStateName(it->second)));
  }
  proto::DriverRecord record;
  record.mutable_job_deleted()->set_job_id(job_id);
  ASSIGN_OR_RETURN(int64_t seq, log_->Append(std::move(record)));
  spdlog::info("job {} deleted at batch {}: its positions and state are gone, the name is free (WAL record {})", job_id,
               it->second.last_committed_batch(), seq);
  return absl::OkStatus();
}

Result<proto::RestartJobResponse> JobRegistry::Restart(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckLeader());
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  auto it = state_view->jobs().find(job_id);
  if (it == state_view->jobs().end()) return absl::NotFoundError(fmt::format("no job {}", job_id));
  const proto::JobState& job = it->second;
  if (!job.stopped()) {
    return absl::FailedPreconditionError(fmt::format("job {} is {}, not stopped", job_id, JobStateName(job)));
  }
  // What made it fail may be gone (a plugin fixed, a sink back); a spec
  // this build refuses is not.
  RETURN_IF_ERROR(engine::CheckRunnable(job.spec()));
  for (const std::string& name : job.spec().sources()) {
    if (!state_view->sources().contains(name)) {
      return absl::FailedPreconditionError(fmt::format("job {}: its source {} is gone", job_id, name));
    }
  }
  proto::DriverRecord record;
  record.mutable_job_restarted()->set_job_id(job_id);
  record.mutable_job_restarted()->set_restart_unix_ms(clock_->UnixMillis());
  ASSIGN_OR_RETURN(int64_t seq, log_->Append(std::move(record)));
  spdlog::info("job {} restarted from batch {} ({}; WAL record {})", job_id, job.last_committed_batch(),
               job.failed() ? "it had failed" : "it was stopped", seq);
  proto::RestartJobResponse response;
  response.set_from_batch(job.last_committed_batch() + 1);
  return response;
}

Result<proto::UpdateJobResponse> JobRegistry::Update(const proto::UpdateJobRequest& request) {
  const std::string& job_id = request.job_id();
  proto::JobSpec spec = request.spec();
  if (spec.name().empty()) spec.set_name(job_id);
  RETURN_IF_ERROR(CheckSpec(spec));
  // Held, no batch is planned until the record below is: the answer's first
  // batch is the one it takes effect at.
  std::optional<ScopedJobHold> hold;
  if (holds_ != nullptr) hold.emplace(holds_, job_id);
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckLeader());
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  auto it = state_view->jobs().find(job_id);
  if (it == state_view->jobs().end()) return absl::NotFoundError(fmt::format("no job {}", job_id));
  const proto::JobState& job = it->second;
  if (job.has_previous_spec()) {
    return absl::UnavailableError(fmt::format(
        "job {}: the previous update takes effect at batch {}; try again once batch {} committed", job_id,
        job.spec_from_batch(), job.spec_from_batch() - 1));
  }
  if (job.draining()) return absl::FailedPreconditionError(fmt::format("job {} is draining", job_id));
  ASSIGN_OR_RETURN(UpdateCheck check, CheckUpdate(job.spec(), spec, request.reset_state()));
  proto::UpdateJobResponse response;
  response.set_from_batch(job.last_planned_batch() + 1);
  response.set_state(check.state);
  for (std::string& c : check.changes) response.add_changes(std::move(c));
  if (request.dry_run()) return response;
  // An inline source must be the one registered (the same spec again is a
  // harmless retry; a different one is refused).
  for (const proto::SourceSpec& s : spec.inline_sources()) {
    Result<proto::SourceSpec> registered = data_->RegisterSource(s);
    if (!registered.ok()) {
      return Annotate(registered.status(), fmt::format("{}: source {}", spec.file().empty() ? "job" : spec.file(),
                                                       s.name()));
    }
  }
  proto::DriverRecord record;
  proto::JobUpdated* updated = record.mutable_job_updated();
  updated->set_job_id(job_id);
  *updated->mutable_spec() = spec;
  // Whatever state a keyed stage left is not the new one's unless kept: a
  // stateless key_by's holders, an old stage's state dropped with it.
  updated->set_reset_state(check.state != "kept");
  updated->set_update_unix_ms(clock_->UnixMillis());
  ASSIGN_OR_RETURN(int64_t seq, log_->Append(std::move(record)));
  spdlog::info("job {} updated from batch {} (state {}; {}; WAL record {})", job_id, response.from_batch(),
               check.state, fmt::join(response.changes(), "; "), seq);
  return response;
}

proto::ListJobsResponse JobRegistry::List() const {
  proto::ListJobsResponse response;
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  const proto::ClusterState& state = *state_view;
  std::map<std::string, const proto::JobState*> sorted;
  for (const auto& [id, job] : state.jobs()) sorted[id] = &job;
  for (const auto& [id, job] : sorted) *response.add_jobs() = WithLeaderView(state, InfoOf(id, *job));
  return response;
}

Result<proto::JobInfo> JobRegistry::Describe(const std::string& job_id) const {
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  const proto::ClusterState& state = *state_view;
  auto it = state.jobs().find(job_id);
  if (it == state.jobs().end()) return absl::NotFoundError(fmt::format("no job {}", job_id));
  return WithLeaderView(state, InfoOf(job_id, it->second));
}

proto::JobInfo JobRegistry::WithLeaderView(const proto::ClusterState& state, proto::JobInfo info) const {
  const JobRate rate = rates_->RateOf(state, info.job_id());
  info.set_rate_limit(rate.events_per_s);
  info.set_rate_limit_reason(rate.reason);
  if (progress_ != nullptr && (info.state() == "running" || info.state() == "draining")) {
    if (std::optional<proto::BatchProgress> p = progress_->Of(info.job_id(), clock_->UnixMillis())) {
      // A batch committed since (the view is older) is not in flight.
      if (p->batch_id() > info.last_committed_batch()) *info.mutable_in_flight() = *std::move(p);
    }
  }
  return info;
}

}  // namespace sluice::driver
