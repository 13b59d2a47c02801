#include "lib/driver/job_registry.h"

#include <map>

#include "lib/driver/batch_progress.h"
#include "lib/driver/data_path.h"
#include "lib/driver/driver_log.h"
#include "lib/driver/leadership.h"
#include "lib/driver/rate_control.h"
#include "lib/engine/confinement.h"
#include "lib/engine/job_file.h"
#include "lib/engine/keyed.h"
#include "spdlog/spdlog.h"

namespace sluice::driver {
namespace {

proto::JobInfo InfoOf(const std::string& id, const proto::JobState& job) {
  proto::JobInfo info;
  info.set_job_id(id);
  *info.mutable_spec() = job.spec();
  info.set_state(job.stopped() ? "stopped" : "running");
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

Result<proto::SubmitJobResponse> JobRegistry::Submit(proto::JobSpec spec) {
  RETURN_IF_ERROR(engine::ValidateJobSpec(spec));
  RETURN_IF_ERROR(engine::CheckRunnable(spec));
  RETURN_IF_ERROR(paths_->CheckJobSpec(spec));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckLeader());
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  const proto::ClusterState& state = *state_view;
  if (auto it = state.jobs().find(spec.name()); it != state.jobs().end()) {
    return absl::AlreadyExistsError(fmt::format("job {} exists ({}); a job name is used once", spec.name(),
                                                it->second.stopped() ? "stopped" : "running"));
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
  proto::DriverRecord record;
  proto::JobSubmitted* js = record.mutable_job_submitted();
  js->set_job_id(spec.name());
  js->set_submit_time_unix_ms(clock_->UnixMillis());
  *js->mutable_spec() = spec;
  ASSIGN_OR_RETURN(int64_t seq, log_->Append(std::move(record)));
  spdlog::info("job {} submitted (WAL record {})", spec.name(), seq);
  proto::SubmitJobResponse response;
  response.set_job_id(spec.name());
  response.set_wal_seq(seq);
  return response;
}

Status JobRegistry::Stop(const std::string& job_id, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(CheckLeader());
  const std::shared_ptr<const proto::ClusterState> state_view = log_->View();
  const proto::ClusterState& state = *state_view;
  auto it = state.jobs().find(job_id);
  if (it == state.jobs().end()) return absl::NotFoundError(fmt::format("no job {}", job_id));
  if (it->second.stopped()) return absl::OkStatus();  // already: a retry
  proto::DriverRecord record;
  record.mutable_job_stopped()->set_job_id(job_id);
  record.mutable_job_stopped()->set_reason(reason.empty() ? "stopped by the user" : reason);
  ASSIGN_OR_RETURN(int64_t seq, log_->Append(std::move(record)));
  spdlog::info("job {} stopped (WAL record {})", job_id, seq);
  return absl::OkStatus();
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
  if (progress_ != nullptr && info.state() == "running") {
    if (std::optional<proto::BatchProgress> p = progress_->Of(info.job_id(), clock_->UnixMillis())) {
      // A batch committed since (the view is older) is not in flight.
      if (p->batch_id() > info.last_committed_batch()) *info.mutable_in_flight() = *std::move(p);
    }
  }
  return info;
}

}  // namespace sluice::driver
