#include "lib/driver/driver_probe.h"

#include <algorithm>

#include "lib/coord/session_probe.h"
#include "lib/driver/cluster_state.h"
#include "lib/driver/leadership.h"
#include "lib/driver/planner.h"
#include "lib/driver/rate_control.h"
#include "lib/driver/scheduler.h"
#include "lib/rpc/rpc_probe.h"
#include "lib/wal/wal_probe.h"

namespace sluice::driver {

using metrics::Counter;
using metrics::Family;
using metrics::Gauge;
using metrics::Histogram;

Result<std::unique_ptr<DriverProbe>> DriverProbe::Create(metrics::Registry* registry, Leadership* leadership,
                                                         ClusterState* state) {
  std::unique_ptr<DriverProbe> p(new DriverProbe(registry, leadership, state));
  ASSIGN_OR_RETURN(Family<Gauge> * leader,
                   registry->AddGauge("sluice_driver_is_leader", "1 while this driver holds the leadership, else 0"));
  ASSIGN_OR_RETURN(Family<Gauge> * serving,
                   registry->AddGauge("sluice_driver_serving",
                                      "1 while this driver is the serving leader (WAL caught up), else 0"));
  ASSIGN_OR_RETURN(Family<Gauge> * epoch,
                   registry->AddGauge("sluice_driver_leader_epoch",
                                      "The epoch of the leadership term this driver knows: its own while leading, "
                                      "else the last leader's from the replicated log"));
  ASSIGN_OR_RETURN(Family<Gauge> * jobs,
                   registry->AddGauge("sluice_driver_jobs", "Jobs in the replicated state that are not stopped"));
  p->is_leader_ = &leader->Get();
  p->serving_ = &serving->Get();
  p->epoch_ = &epoch->Get();
  p->jobs_ = &jobs->Get();
  DriverProbe* raw = p.get();
  p->collector_ = registry->AddCollector([raw] { raw->Collect(); });
  return p;
}

DriverProbe::~DriverProbe() { registry_->RemoveCollector(collector_); }

void DriverProbe::Collect() {
  const std::shared_ptr<const proto::ClusterState> view = state_->View();
  const bool leads = leadership_->IsLeader();
  is_leader_->Set(leads ? 1 : 0);
  serving_->Set(leads && leadership_->Serving() ? 1 : 0);
  epoch_->Set(static_cast<double>(leads ? std::max(leadership_->epoch(), view->last_leader_epoch())
                                        : view->last_leader_epoch()));
  int running = 0;
  for (const auto& [id, job] : view->jobs()) running += !job.stopped();
  jobs_->Set(running);
}

Result<std::unique_ptr<JobProbe>> JobProbe::Create(metrics::Registry* registry, Leadership* leadership,
                                                   ClusterState* state, RateControl* rates) {
  std::unique_ptr<JobProbe> p(new JobProbe(registry, leadership, state, rates));
  const std::vector<std::string> job = {"job"};
  ASSIGN_OR_RETURN(p->input_rate_, registry->AddGauge("sluice_job_input_rate_events_per_second",
                                                      "Events of the last committed batch per second of the "
                                                      "batch interval",
                                                      job));
  ASSIGN_OR_RETURN(p->rate_limit_, registry->AddGauge("sluice_job_rate_limit_events_per_second",
                                                      "The job's input rate limit from the rate controller, over "
                                                      "all its partitions (0: none)",
                                                      job));
  ASSIGN_OR_RETURN(p->running_, registry->AddGauge("sluice_job_running", "1 while the job runs, 0 once stopped", job));
  ASSIGN_OR_RETURN(p->in_flight_,
                   registry->AddGauge("sluice_job_batches_in_flight", "Batches planned and not yet committed", job));
  ASSIGN_OR_RETURN(p->state_keys_,
                   registry->AddGauge("sluice_job_state_keys", "Keyed jobs: keys in the state, as of the last batch", job));
  ASSIGN_OR_RETURN(p->state_bytes_, registry->AddGauge("sluice_job_state_bytes",
                                                       "Keyed jobs: bytes of the state, as of the last batch", job));
  ASSIGN_OR_RETURN(p->last_batch_time_,
                   registry->AddGauge("sluice_job_last_committed_batch_time_seconds",
                                      "Batch time of the newest committed batch, seconds since the epoch", job));
  ASSIGN_OR_RETURN(p->input_, registry->AddCounter("sluice_job_input_records_total",
                                                   "Records read by the job's committed batches (replicated total)",
                                                   job));
  ASSIGN_OR_RETURN(p->output_, registry->AddCounter("sluice_job_output_records_total",
                                                    "Records written by the job's committed batches (replicated "
                                                    "total)",
                                                    job));
  ASSIGN_OR_RETURN(p->dead_letters_, registry->AddCounter("sluice_job_dead_letters_total",
                                                          "Records of committed batches that did not parse "
                                                          "(replicated total)",
                                                          job));
  ASSIGN_OR_RETURN(p->late_events_, registry->AddCounter("sluice_job_late_events_total",
                                                         "Event-time jobs: events behind the watermark, dropped "
                                                         "(replicated total)",
                                                         job));
  ASSIGN_OR_RETURN(p->planned_, registry->AddCounter("sluice_job_batches_planned_total",
                                                     "Batches planned (the last planned batch id)", job));
  ASSIGN_OR_RETURN(p->committed_, registry->AddCounter("sluice_job_batches_committed_total",
                                                       "Batches committed (the last committed batch id)", job));
  ASSIGN_OR_RETURN(p->rerun_, registry->AddCounter("sluice_job_batches_rerun_total",
                                                   "Batches this leader committed that it did not plan (planned "
                                                   "in an earlier term) or whose tasks were tried again",
                                                   job));
  ASSIGN_OR_RETURN(p->shuffle_bytes_, registry->AddCounter("sluice_job_shuffle_bytes_total",
                                                           "Keyed jobs: shuffle bytes of the batches this leader "
                                                           "committed",
                                                           job));
  ASSIGN_OR_RETURN(p->blocks_fetched_, registry->AddCounter("sluice_job_blocks_fetched_total",
                                                            "Blocks tasks read from another worker, in batches this "
                                                            "leader committed",
                                                            job));
  ASSIGN_OR_RETURN(p->blocks_recomputed_, registry->AddCounter("sluice_job_blocks_recomputed_total",
                                                               "Blocks made again from their lineage, in batches "
                                                               "this leader committed",
                                                               job));
  ASSIGN_OR_RETURN(p->task_attempts_, registry->AddCounter("sluice_job_task_attempts_total",
                                                           "Task attempts, retries included, of the batches this "
                                                           "leader committed",
                                                           job));
  ASSIGN_OR_RETURN(p->moves_, registry->AddCounter("sluice_reduce_partition_moves_total",
                                                   "Keyed jobs: reduce-partition moves this leader completed "
                                                   "(rebalance, drain, a lost replica made again)",
                                                   job));
  ASSIGN_OR_RETURN(p->scheduling_delay_,
                   registry->AddHistogram("sluice_job_scheduling_delay_seconds",
                                          "Batch time to its first task sent, observed at the batch's commit",
                                          metrics::DelayBuckets(), job));
  ASSIGN_OR_RETURN(p->processing_,
                   registry->AddHistogram("sluice_job_processing_seconds",
                                          "First task sent to last task done, observed at the batch's commit",
                                          metrics::DelayBuckets(), job));
  ASSIGN_OR_RETURN(p->total_delay_,
                   registry->AddHistogram("sluice_job_total_delay_seconds",
                                          "Batch time to last task done, observed at the batch's commit",
                                          metrics::DelayBuckets(), job));
  JobProbe* raw = p.get();
  p->collector_ = registry->AddCollector([raw] { raw->Collect(); });
  return p;
}

JobProbe::~JobProbe() { registry_->RemoveCollector(collector_); }

bool JobProbe::Serving() const { return leadership_ == nullptr || leadership_->Serving(); }

void JobProbe::BatchPlanned(const std::string& job_id, int64_t batch_id, int64_t epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  PlannedTerm& t = planned_terms_[job_id];
  if (t.epoch != epoch) t = {.epoch = epoch, .first_batch = batch_id};
}

bool JobProbe::IsRerun(const proto::BatchPlanned& batch, const proto::BatchCommitted& done, bool inherited) {
  // Each range is one task (a keyed batch's map tasks), plus one reduce task
  // per partition.
  const int tasks = batch.ranges_size() + done.reduce_holders_size();
  return inherited || done.task_attempts() > tasks;
}

void JobProbe::PartitionMoved(const std::string& job_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    exported_.insert(job_id);
  }
  moves_->With({job_id}).Inc();
}

void JobProbe::BatchCommitted(const proto::BatchPlanned& batch, const proto::BatchCommitted& done, int64_t epoch) {
  const std::string& job = done.job_id();
  bool inherited = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = planned_terms_.find(job);
    inherited = it == planned_terms_.end() || it->second.epoch != epoch || done.batch_id() < it->second.first_batch;
    exported_.insert(job);
  }
  const std::vector<std::string> labels = {job};
  const int64_t batch_time = batch.batch_time_unix_ms();
  const int64_t started = done.started_unix_ms();
  const int64_t finished = done.finished_unix_ms();
  if (started > 0 && batch_time > 0) scheduling_delay_->With(labels).Observe(std::max<int64_t>(0, started - batch_time) / 1e3);
  if (started > 0 && finished > 0) processing_->With(labels).Observe(std::max<int64_t>(0, finished - started) / 1e3);
  if (finished > 0 && batch_time > 0) total_delay_->With(labels).Observe(std::max<int64_t>(0, finished - batch_time) / 1e3);
  shuffle_bytes_->With(labels).Inc(static_cast<double>(done.shuffle_bytes()));
  blocks_fetched_->With(labels).Inc(static_cast<double>(done.blocks_fetched()));
  blocks_recomputed_->With(labels).Inc(static_cast<double>(done.blocks_recomputed()));
  task_attempts_->With(labels).Inc(done.task_attempts());
  Counter& rerun = rerun_->With(labels);
  if (IsRerun(batch, done, inherited)) rerun.Inc();
  committed_->With(labels).RaiseTo(static_cast<double>(done.batch_id()));
}

void JobProbe::DropLocked(const std::string& job_id) {
  const std::vector<std::string> l = {job_id};
  for (Family<Gauge>* f : {input_rate_, rate_limit_, running_, in_flight_, state_keys_, state_bytes_, last_batch_time_}) {
    f->Remove(l);
  }
  for (Family<Counter>* f : {input_, output_, dead_letters_, late_events_, planned_, committed_, rerun_, shuffle_bytes_,
                             blocks_fetched_, blocks_recomputed_, task_attempts_, moves_}) {
    f->Remove(l);
  }
  for (Family<Histogram>* f : {scheduling_delay_, processing_, total_delay_}) f->Remove(l);
}

void JobProbe::Collect() {
  const std::shared_ptr<const proto::ClusterState> view = state_->View();
  std::lock_guard<std::mutex> lock(mu_);
  if (!Serving()) {
    for (const std::string& job : exported_) DropLocked(job);
    exported_.clear();
    submitted_.clear();
    return;
  }
  std::set<std::string> now;
  for (const auto& [id, job] : view->jobs()) {
    now.insert(id);
    const std::vector<std::string> l = {id};
    // The name deleted and submitted again since the last scrape: the new
    // job's totals start from zero, so its mirrored series start again (a
    // counter reset, which Prometheus' rate() takes as one) rather than
    // stay at the old job's figures until the new one passes them. Batch
    // numbers go on from the old job's, and so do their counters.
    auto [submitted, fresh] = submitted_.try_emplace(id, job.submit_time_unix_ms());
    if (!fresh && submitted->second != job.submit_time_unix_ms()) {
      submitted->second = job.submit_time_unix_ms();
      for (Family<Counter>* f : {input_, output_, dead_letters_, late_events_}) f->With(l).Restart();
    }
    running_->With(l).Set(job.stopped() ? 0 : 1);
    in_flight_->With(l).Set(job.in_flight_size());
    state_keys_->With(l).Set(static_cast<double>(job.state_keys()));
    state_bytes_->With(l).Set(static_cast<double>(job.state_bytes()));
    double rate = 0;
    if (!job.recent_batches().empty()) {
      const proto::BatchSummary& last = *job.recent_batches().rbegin();
      const int64_t interval_ms = std::max<int64_t>(10, job.spec().batch_interval_ms());
      rate = static_cast<double>(last.input_count()) * 1000.0 / static_cast<double>(interval_ms);
      last_batch_time_->With(l).Set(static_cast<double>(last.batch_time_unix_ms()) / 1e3);
    } else {
      last_batch_time_->With(l).Set(0);
    }
    input_rate_->With(l).Set(job.stopped() ? 0 : rate);
    rate_limit_->With(l).Set(rates_ != nullptr ? static_cast<double>(rates_->RateOf(*view, id).events_per_s) : 0);
    input_->With(l).RaiseTo(static_cast<double>(job.total_input()));
    output_->With(l).RaiseTo(static_cast<double>(job.total_output()));
    dead_letters_->With(l).RaiseTo(static_cast<double>(job.total_dead_letters()));
    late_events_->With(l).RaiseTo(static_cast<double>(job.total_late_events()));
    planned_->With(l).RaiseTo(static_cast<double>(job.last_planned_batch()));
    committed_->With(l).RaiseTo(static_cast<double>(job.last_committed_batch()));
    // Counted at commits: present (at zero) from the first scrape on.
    for (Family<Counter>* f : {rerun_, shuffle_bytes_, blocks_fetched_, blocks_recomputed_, task_attempts_}) f->With(l);
    for (Family<Histogram>* f : {scheduling_delay_, processing_, total_delay_}) f->With(l);
  }
  for (const std::string& gone : exported_) {
    if (!now.contains(gone)) DropLocked(gone);
  }
  std::erase_if(submitted_, [&](const auto& job) { return !now.contains(job.first); });
  exported_ = std::move(now);
}

Result<std::unique_ptr<DriverProbes>> DriverProbes::Create(metrics::Registry* registry) {
  auto p = std::make_unique<DriverProbes>();
  p->registry = registry;
  ASSIGN_OR_RETURN(p->rpc, rpc::RpcProbe::Create(registry));
  return p;
}

DriverProbes::~DriverProbes() = default;

Status DriverProbes::AttachLeader(Leadership* leadership, ClusterState* state, RateControl* rates, Planner* planner,
                                  Scheduler* scheduler) {
  ASSIGN_OR_RETURN(driver, DriverProbe::Create(registry, leadership, state));
  ASSIGN_OR_RETURN(jobs, JobProbe::Create(registry, leadership, state, rates));
  ASSIGN_OR_RETURN(sources, SourceProbe::Create(registry, leadership, state));
  planner->set_probe(jobs.get());
  scheduler->set_probe(jobs.get());
  return absl::OkStatus();
}

}  // namespace sluice::driver
