#include "lib/ctl/ctl.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/common/zk_auth_file.h"
#include "lib/coord/coordinator.h"
#include "lib/ctl/source_reset.h"
#include "lib/engine/job_file.h"
#include "lib/engine/keyed.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/tls.h"
#include "lib/rpc/worker_client.h"
#include "lib/source/source_connector.h"

namespace sluice::ctl {
namespace {

std::string Uptime(int64_t now_ms, int64_t start_ms) {
  int64_t s = std::max<int64_t>(0, (now_ms - start_ms) / 1000);
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  return std::to_string(s / 3600) + "h";
}

void PrintRow(std::ostream& out, const std::string& kind, const proto::ProcessInfo& p,
              const std::string& extra, int64_t now_ms) {
  out << std::left << std::setw(8) << kind << std::setw(16) << p.id() << std::setw(22)
      << p.rpc_address() << std::setw(12) << p.version() << std::setw(8) << p.pid()
      << std::setw(7) << Uptime(now_ms, p.start_time_unix_ms()) << extra
      << " protocol=" << std::max(1, p.protocol()) << "\n";
}

// "0.1.0 protocol 1": what tells one build from another in a mixed cluster.
std::string BuildOf(const proto::ProcessInfo& p) {
  return p.version() + " protocol " + std::to_string(std::max(1, p.protocol()));
}

// "1.2s ago", or "never" for 0.
std::string Ago(int64_t now_ms, int64_t then_ms) {
  if (then_ms <= 0) return "never";
  return fmt::format("{:.1f}s ago", std::max<int64_t>(0, now_ms - then_ms) / 1000.0);
}

// The leader's line per standby under its row: how far behind and why.
void PrintPeers(std::ostream& out, const proto::WalInfo& wal, int64_t now_ms) {
  for (const proto::WalPeerInfo& p : wal.peers()) {
    out << "  standby " << std::left << std::setw(14) << p.id() << "acked=" << p.acked_seq()
        << " lag=" << p.lag() << " " << p.state() << ", answered " << Ago(now_ms, p.last_contact_unix_ms());
    if (!p.last_error().empty()) out << "; lags because: " << p.last_error();
    out << "\n";
  }
}

// " store=DEGRADED since 1.2s ago: <why>" while a driver's log store refuses writes.
std::string StoreDetail(bool degraded, const std::string& error, int64_t since_ms, int64_t now_ms) {
  if (!degraded) return "";
  return fmt::format(" store=DEGRADED since {}: {}", Ago(now_ms, since_ms), error);
}

}  // namespace

void Ctl::Register(CLI::App& app) {
  app.require_subcommand(0, 1);
  app.add_option("--timeout-ms", timeout_ms_, "Deadline of each RPC")->capture_default_str();
  app.add_option("--coordinator", coordinator_,
                 "Find the cluster through zookeeper://HOST:PORT[,...]/ROOT");
  tls_.Register(app);
  app.add_option("--zk-auth-file", zk_auth_file_,
                 "File (mode 600) holding the cluster's ZooKeeper credentials user:password, as the daemons' "
                 "zk-auth-file");
  status_cmd_ = app.add_subcommand("status", "Show the cluster's drivers and workers");
  status_cmd_->add_option("--driver", drivers_, "Driver address host:port (repeat or comma-separate)")
      ->delimiter(',');
  status_cmd_->add_option("--worker", workers_, "Worker address host:port (repeat or comma-separate)")
      ->delimiter(',');

  CLI::App* source = app.add_subcommand("source", "Manage sources");
  source->require_subcommand(1);
  source_add_cmd_ = source->add_subcommand("add", "Declare a source; receivers start reading it");
  CLI::App* a = source_add_cmd_;
  a->add_option("name", source_name_, "The source's name")->required();
  a->add_option("--kind", source_kind_, "generator | kafka | socket")
      ->required()
      ->check(CLI::IsMember(source::SourceKindNames()));
  a->add_option("--partitions", partitions_, "Partitions (kafka: default the topic's)");
  a->add_option("--replication", replication_, "Copies of each block before it is reported (1 or 2)");
  a->add_option("--max-event-bytes", max_event_bytes_, "Larger events go to the dead letters (default 1 MiB)");
  a->add_option("--max-rate-per-partition", max_rate_, "Events/s per partition; 0 for no limit");
  a->add_option("--rate", rate_, "generator: events/s per partition; 0 for as fast as read");
  a->add_option("--keys", keys_, "generator: distinct keys");
  a->add_option("--payload-bytes", payload_bytes_, "generator: bytes per event");
  a->add_option("--seed", seed_, "generator: seed");
  a->add_option("--brokers", kafka_brokers_, "kafka: bootstrap servers");
  a->add_option("--topic", kafka_topic_, "kafka: topic");
  a->add_option("--start", kafka_start_, "kafka: earliest | latest | committed");
  a->add_option("--property", properties_, "kafka: consumer setting KEY=VALUE (repeatable)");
  a->add_option("--address", addresses_, "socket: HOST:PORT to connect to, one per partition")->delimiter(',');
  a->add_option("--framing", framing_, "socket: lines | frames");
  a->add_option("--on-data-loss", on_data_loss_,
                "fail (default): a partition whose offsets are gone from the source stops until `source reset`; "
                "skip: the lost range is recorded and reading goes on")
      ->check(CLI::IsMember({"fail", "skip"}));
  source_reset_cmd_ = source->add_subcommand(
      "reset", "Move a partition on to another offset (a FAILED one goes on); the skipped offsets are recorded");
  source_reset_cmd_->add_option("source", source_name_, "The source's name")->required();
  source_reset_cmd_->add_option("partition", reset_partition_, "The partition")->required();
  source_reset_cmd_->add_option("--to", reset_to_, "earliest | latest | OFFSET")->required();
  for (CLI::App* c : {a, source_reset_cmd_}) {
    c->add_option("--driver", drivers_, "Driver address host:port (repeat or comma-separate)")->delimiter(',');
  }
  submit_cmd_ = app.add_subcommand("submit", "Submit a job file; returns once the job is committed");
  submit_cmd_->add_option("job-file", job_file_, "The job file (YAML or JSON, docs/jobs.md)");
  submit_cmd_->add_option("--from-savepoint", from_savepoint_,
                          "Restore the job from a savepoint directory (sluicectl savepoint); with a job file, "
                          "that spec instead of the saved one (same sources and reduce_partitions)");
  savepoint_cmd_ = app.add_subcommand(
      "savepoint", "Write a consistent copy of a job's positions and state, as of one committed batch, into DIR");
  savepoint_cmd_->add_option("job", job_id_, "The job's id (its name)")->required();
  savepoint_cmd_->add_option("dir", savepoint_dir_, "A new or empty directory")->required();
  list_cmd_ = app.add_subcommand("list", "List jobs");
  describe_cmd_ = app.add_subcommand("describe", "Show one job");
  describe_cmd_->add_option("job", job_id_, "The job's id (its name)")->required();
  stop_cmd_ = app.add_subcommand("stop", "Stop a job; its positions and state stay until delete");
  stop_cmd_->add_option("job", job_id_, "The job's id (its name)")->required();
  stop_cmd_->add_option("--reason", stop_reason_, "Recorded with the job");
  stop_cmd_->add_flag("--drain", drain_,
                      "Finish the input accepted so far, then stop (returns once the drain is recorded; --wait "
                      "waits for the stop)");
  stop_cmd_->add_flag("--emit-windows", emit_windows_, "With --drain: close and emit every open window and session");
  stop_cmd_->add_flag("--wait", wait_, "With --drain: wait until the job has stopped");
  delete_cmd_ = app.add_subcommand("delete", "Delete a stopped job: its positions and state go, its name is free");
  delete_cmd_->add_option("job", job_id_, "The job's id (its name)")->required();
  restart_cmd_ = app.add_subcommand("restart", "Resume a stopped or failed job from its last committed batch");
  restart_cmd_->add_option("job", job_id_, "The job's id (its name)")->required();
  update_cmd_ = app.add_subcommand("update", "Replace a job's operators, sink or settings in place (docs/jobs.md)");
  update_cmd_->add_option("job", job_id_, "The job's id (its name)")->required();
  update_cmd_->add_option("job-file", job_file_, "The new job file")->required();
  update_cmd_->add_flag("--reset-state", reset_state_, "Accept a keyed change that cannot keep the state: start it empty");
  update_cmd_->add_flag("--dry-run", dry_run_, "Check the change and print it; change nothing");
  rescale_cmd_ = app.add_subcommand(
      "rescale", "Change a keyed job's reduce_partitions in place; its state is re-split (docs/jobs.md)");
  rescale_cmd_->add_option("job", job_id_, "The job's id (its name)")->required();
  rescale_cmd_->add_option("partitions", rescale_to_, "The new reduce_partitions, 1..1024")->required();
  rescale_cmd_->add_flag("--dry-run", dry_run_, "Check the change and print it; change nothing");
  for (CLI::App* c : {submit_cmd_, list_cmd_, describe_cmd_, stop_cmd_, delete_cmd_, restart_cmd_, update_cmd_,
                      rescale_cmd_, savepoint_cmd_}) {
    c->add_option("--driver", drivers_, "Driver address host:port (repeat or comma-separate)")->delimiter(',');
  }
  drill_cmd_ = app.add_subcommand("drill", "Run a failover drill on the cluster and print a verdict (docs/drills.md)");
  CLI::App* d = drill_cmd_;
  d->add_option("--fault", drill_.faults,
                "Faults, applied in turn: leader-kill, leader-term, leader-pause[:DURATION], worker-kill[:ID], "
                "worker-pause[:DURATION], zk-server-loss[:DURATION] (SIGSTOP to the ZooKeeper server the leader's "
                "session is on, if it runs on this host; SKIPPED if not). Pauses default to 6s")
      ->required();
  d->add_option("--rounds", drill_.rounds, "Faults to apply in all, round robin (default: each listed once)");
  d->add_option("--interval", drill_.interval, "Time between faults")->capture_default_str();
  d->add_option("--rate", drill_.rate, "The probe's events/s over all partitions")->capture_default_str();
  d->add_option("--partitions", drill_.partitions, "The probe source's partitions")->capture_default_str();
  d->add_option("--batch-interval", drill_.batch_interval, "The probe jobs' batch interval")->capture_default_str();
  d->add_option("--output", drill_.output,
                "Directory of the probe's output files, which the workers write and sluicectl reads: local, or "
                "shared by every host, at or under the cluster's output-dirs (default "
                "/var/lib/sluice/output/drill-<time>)");
  d->add_option("--session-timeout", drill_.session_timeout,
                "The ZooKeeper session timeout, if the drivers do not report it");
  d->add_flag("--json", drill_.json, "Print the report as JSON");
  d->add_flag("--keep", drill_.keep, "Keep the output directory");
  d->add_flag("--rpc", drill_.rpc, "Deliver every fault with the Drill RPC, even to local daemons");
  d->add_option("--driver", drivers_, "Driver address host:port (repeat or comma-separate)")->delimiter(',');
  watch_cmd_ = app.add_subcommand("watch", "A live view of the cluster and its jobs, redrawn in place like top");
  watch_cmd_->add_option("job", watch_.job, "Only this job (its id)");
  watch_cmd_->add_option("--interval", watch_.interval_s, "Seconds between refreshes")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  watch_cmd_->add_flag("--once", watch_.once, "Print one snapshot as plain text and exit");
  watch_cmd_->add_option("--driver", drivers_, "Driver address host:port (repeat or comma-separate)")->delimiter(',');
  CLI::App* worker = app.add_subcommand("worker", "Manage workers");
  worker->require_subcommand(1);
  worker_drain_cmd_ = worker->add_subcommand(
      "drain", "Move everything off a worker (receivers, reduce partitions) so that it can be stopped");
  worker_drain_cmd_->add_option("id", drain_worker_, "The worker's id")->required();
  worker_drain_cmd_->add_flag("--wait", drain_wait_, "Wait until the worker holds nothing");
  worker_drain_cmd_->add_flag("--cancel", drain_cancel_, "Take work on the worker again");
  worker_drain_cmd_->add_option("--wait-timeout", drain_wait_s_, "With --wait: give up after this many seconds")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  rebalance_cmd_ = app.add_subcommand("rebalance", "Run a rebalance round of the reduce partitions now");
  for (CLI::App* c : {worker_drain_cmd_, rebalance_cmd_}) {
    c->add_option("--driver", drivers_, "Driver address host:port (repeat or comma-separate)")->delimiter(',');
  }
  sources_cmd_ = app.add_subcommand("sources", "List sources, their partitions and blocks");
  sources_cmd_->add_flag("--blocks", with_blocks_, "List every block and who holds it");
  sources_cmd_->add_option("--driver", drivers_, "Driver address host:port (repeat or comma-separate)")
      ->delimiter(',');
}

int Ctl::Run(const CLI::App& app, std::ostream& out, std::ostream& err) {
  if (status_cmd_->parsed()) return RunStatus(out, err);
  if (source_add_cmd_->parsed()) return RunSourceAdd(out, err);
  if (sources_cmd_->parsed()) return RunSources(out, err);
  if (source_reset_cmd_->parsed()) return RunSourceReset(out, err);
  if (submit_cmd_->parsed()) return RunSubmit(out, err);
  if (list_cmd_->parsed()) return RunList(out, err);
  if (describe_cmd_->parsed()) return RunDescribe(out, err);
  if (worker_drain_cmd_->parsed()) return RunWorkerDrain(out, err);
  if (rebalance_cmd_->parsed()) return RunRebalance(out, err);
  if (stop_cmd_->parsed()) return RunStop(out, err);
  if (delete_cmd_->parsed()) return RunDelete(out, err);
  if (restart_cmd_->parsed()) return RunRestart(out, err);
  if (update_cmd_->parsed()) return RunUpdate(out, err);
  if (rescale_cmd_->parsed()) return RunRescale(out, err);
  if (savepoint_cmd_->parsed()) return RunSavepoint(out, err);
  if (drill_cmd_->parsed()) return RunDrillCommand(out, err);
  if (watch_cmd_->parsed()) return RunWatchCommand(out, err);
  err << "sluicectl: error: no command given (see --help)\n";
  return kExitUsage;
}

int Ctl::Connect(std::ostream& err) {
  if (channels_ != nullptr) return 0;
  if (Status st = tls_.Validate(); !st.ok()) {
    err << "sluicectl: error: " << st.message() << "\n";
    return kExitUsage;
  }
  if (tls_.enabled()) {
    Result<std::shared_ptr<rpc::TlsIdentity>> id = rpc::TlsIdentity::Load(tls_, "", std::nullopt);
    if (!id.ok()) {
      err << "sluicectl: error: " << id.status().message() << "\n";
      return kExitUsage;
    }
    transport_.tls = *std::move(id);
  }
  channels_ = std::make_unique<rpc::ChannelCache>(transport_);
  return 0;
}

int Ctl::Discover(std::ostream& err) {
  if (int rc = Connect(err); rc != 0) return rc;
  if (!coordinator_.empty()) {
    Result<coord::CoordinatorSpec> spec = coord::CoordinatorSpec::Parse(coordinator_);
    if (!spec.ok()) {
      err << "sluicectl: error: " << spec.status().message() << "\n";
      return kExitUsage;
    }
    std::string zk_auth;
    if (!zk_auth_file_.empty()) {
      Result<std::string> read = ReadZkAuthFile(zk_auth_file_);
      if (!read.ok()) {
        err << "sluicectl: error: " << read.status().message() << "\n";
        return kExitUsage;
      }
      zk_auth = std::move(*read);
    }
    auto coordinator = coord::Coordinator::Create(
        coordinator_, {.connect_timeout = std::chrono::milliseconds(timeout_ms_), .zk_auth = zk_auth});
    if (!coordinator.ok()) {
      err << "sluicectl: " << coordinator.status().message() << "\n";
      return 1;
    }
    for (auto [group, out] : {std::pair{coord::Group::kDrivers, &drivers_},
                              std::pair{coord::Group::kWorkers, &workers_}}) {
      auto members = (*coordinator)->NewMembership(group)->Members();
      if (!members.ok()) {
        err << "sluicectl: listing " << coord::GroupName(group) << ": " << members.status().message() << "\n";
        return 1;
      }
      for (const proto::MemberInfo& m : *members) out->push_back(m.rpc_address());
    }
    if (spec->kind == coord::CoordinatorSpec::Kind::kStandalone && !spec->leader_address.empty()) {
      // The standalone driver holds the workers group: ask it.
      drivers_.push_back(spec->leader_address);
      Result<proto::DriverStatus> status =
          rpc::DriverClient(*channels_, spec->leader_address).GetStatus(std::chrono::milliseconds(timeout_ms_));
      if (status.ok()) {
        for (const proto::MemberInfo& w : status->workers()) workers_.push_back(w.rpc_address());
      }
    }
  }
  return 0;
}

int Ctl::RunStatus(std::ostream& out, std::ostream& err) {
  if (int rc = Discover(err); rc != 0) return rc;
  if (drivers_.empty() && workers_.empty()) {
    err << "sluicectl: error: status needs --coordinator, --driver or --worker\n";
    return kExitUsage;
  }
  for (const auto& a : drivers_) {
    if (Status st = ParseHostPort(a, "--driver").status(); !st.ok()) {
      err << "sluicectl: error: " << st.message() << "\n";
      return kExitUsage;
    }
  }
  for (const auto& a : workers_) {
    if (Status st = ParseHostPort(a, "--worker").status(); !st.ok()) {
      err << "sluicectl: error: " << st.message() << "\n";
      return kExitUsage;
    }
  }
  const std::chrono::milliseconds deadline(timeout_ms_);
  int failures = 0;
  const int64_t now_ms = clock_->UnixMillis();
  out << std::left << std::setw(8) << "KIND" << std::setw(16) << "ID" << std::setw(22)
      << "ADDRESS" << std::setw(12) << "VERSION" << std::setw(8) << "PID" << std::setw(7)
      << "UP" << "DETAIL\n";
  std::map<std::string, std::set<std::string>> builds;  // BuildOf -> the members running it
  std::set<std::string> draining;  // as the leader (else any driver) says
  bool leader_said = false;
  for (const std::string& addr : drivers_) {
    Result<proto::DriverStatus> got = rpc::DriverClient(*channels_, addr).GetStatus(deadline);
    if (!got.ok()) {
      err << "sluicectl: driver at " << addr << ": " << got.status().ToString() << "\n";
      ++failures;
      continue;
    }
    const proto::DriverStatus& status = *got;
    builds[BuildOf(status.process())].insert("driver " + status.process().id());
    if (!leader_said) {
      leader_said = status.role() == proto::DRIVER_ROLE_LEADER;
      draining = {status.draining_workers().begin(), status.draining_workers().end()};
    }
    std::string detail = status.role() == proto::DRIVER_ROLE_LEADER
                             ? "LEADER epoch=" + std::to_string(status.epoch())
                             : "standby leader=" + (status.leader().id().empty() ? "?" : status.leader().id());
    detail += " workers=" + std::to_string(status.workers_size()) +
              " wal=" + std::to_string(status.wal().commit_seq()) + "/" +
              std::to_string(status.wal().last_seq()) +
              (status.role() == proto::DRIVER_ROLE_LEADER && !status.wal().serving() ? " catching-up"
                                                                                        : "") +
              StoreDetail(status.wal().store_degraded(), status.wal().store_error(),
                          status.wal().store_degraded_since_unix_ms(), now_ms);
    PrintRow(out, "driver", status.process(), detail, now_ms);
    PrintPeers(out, status.wal(), now_ms);
  }
  for (const std::string& addr : workers_) {
    Result<proto::WorkerStatus> got = rpc::WorkerClient(*channels_, addr).GetStatus(deadline);
    if (!got.ok()) {
      err << "sluicectl: worker at " << addr << ": " << got.status().ToString() << "\n";
      ++failures;
      continue;
    }
    const proto::WorkerStatus& status = *got;
    builds[BuildOf(status.process())].insert("worker " + status.process().id());
    PrintRow(out, "worker", status.process(),
             "slots=" + std::to_string(status.slots()) + " leader=" +
                 (status.leader().id().empty() ? "?" : status.leader().id()) +
                 " epoch=" + std::to_string(status.highest_epoch()) +
                 (status.store().degraded().empty() ? "" : " store=DEGRADED: " + status.store().degraded()) +
                 (draining.contains(status.process().id()) ? " DRAINING" : ""),
             now_ms);
  }
  if (builds.size() > 1) {  // a rolling upgrade in progress (docs/upgrade.md)
    out << "mixed versions:";
    for (const auto& [build, members] : builds) out << " " << build << " (" << members.size() << ")";
    out << "\n";
  }
  return failures == 0 ? 0 : 1;
}

template <typename Response, typename Call>
int Ctl::CallLeader(std::ostream& err, Call&& call, Response* response, bool invalid_is_usage) {
  if (int rc = Discover(err); rc != 0) return rc;
  if (drivers_.empty()) {
    err << "sluicectl: error: needs --coordinator or --driver\n";
    return 1;
  }
  Result<Response> answer = rpc::CallLeader(*channels_, drivers_, std::chrono::milliseconds(timeout_ms_),
                                            std::forward<Call>(call));
  if (!answer.ok()) {
    err << "sluicectl: " << answer.status().message() << "\n";
    return invalid_is_usage && absl::IsInvalidArgument(answer.status()) ? kExitUsage : 1;
  }
  *response = std::move(*answer);
  return 0;
}

int Ctl::RunSourceAdd(std::ostream& out, std::ostream& err) {
  proto::SourceSpec spec;
  spec.set_name(source_name_);
  Result<proto::SourceKind> kind = source::SourceKindFromName(source_kind_);
  if (!kind.ok()) {
    err << "sluicectl: error: --kind: " << kind.status().message() << "\n";
    return kExitUsage;
  }
  spec.set_kind(*kind);
  spec.set_partitions(partitions_);
  spec.set_replication(replication_);
  spec.set_max_event_bytes(max_event_bytes_);
  spec.set_max_rate_per_partition(max_rate_);
  // Each kind's settings, those given (the leader checks them against the kind).
  if (rate_ != 0) spec.mutable_generator()->set_rate_per_partition(rate_);
  if (keys_ != 0) spec.mutable_generator()->set_num_keys(keys_);
  if (payload_bytes_ != 0) spec.mutable_generator()->set_payload_bytes(payload_bytes_);
  if (seed_ != 0) spec.mutable_generator()->set_seed(seed_);
  if (!kafka_brokers_.empty()) spec.mutable_kafka()->set_brokers(kafka_brokers_);
  if (!kafka_topic_.empty()) spec.mutable_kafka()->set_topic(kafka_topic_);
  if (!kafka_start_.empty()) spec.mutable_kafka()->set_start(kafka_start_);
  for (const std::string& p : properties_) {
    const size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      err << "sluicectl: error: --property " << p << ": expected KEY=VALUE\n";
      return kExitUsage;
    }
    (*spec.mutable_kafka()->mutable_properties())[p.substr(0, eq)] = p.substr(eq + 1);
  }
  for (const std::string& a : addresses_) spec.mutable_socket()->add_addresses(a);
  if (!framing_.empty()) spec.mutable_socket()->set_framing(framing_);
  spec.set_on_data_loss(on_data_loss_);
  proto::RegisterSourceRequest request;
  *request.mutable_spec() = spec;
  proto::RegisterSourceResponse response;
  const std::chrono::milliseconds deadline(std::max(timeout_ms_, 10'000));
  auto call = [&](rpc::DriverClient& d) { return d.RegisterSource(request, deadline); };
  if (int rc = CallLeader(err, call, &response, /*invalid_is_usage=*/true)) return rc;
  out << "source " << response.spec().name() << " registered: " << response.spec().partitions()
      << " partitions, replication " << response.spec().replication() << "\n";
  return 0;
}

int Ctl::RunSources(std::ostream& out, std::ostream& err) {
  proto::ListSourcesRequest request;
  request.set_with_blocks(with_blocks_);
  proto::ListSourcesResponse response;
  const std::chrono::milliseconds deadline(timeout_ms_);
  auto call = [&](rpc::DriverClient& d) { return d.ListSources(request, deadline); };
  if (int rc = CallLeader(err, call, &response)) return rc;
  out << std::left << std::setw(16) << "SOURCE" << std::setw(6) << "PART" << std::setw(14) << "NEXT"
      << std::setw(10) << "BLOCKS" << std::setw(12) << "RECORDS" << std::setw(8) << "LOST" << std::setw(14)
      << "WORKER" << "STATE\n";
  for (const proto::SourceInfo& s : response.sources()) {
    for (const proto::PartitionInfo& p : s.partitions()) {
      std::string state = !p.error().empty()          ? "FAILED: " + p.error()
                          : p.worker().empty()        ? "unassigned"
                          : p.receiver().paused()     ? "paused"
                                                      : "reading";
      if (p.receiver().rate_limit_per_s() > 0) state += " limit=" + std::to_string(p.receiver().rate_limit_per_s()) + "/s";
      if (p.receiver().dead_letters() > 0) state += " dead_letters=" + std::to_string(p.receiver().dead_letters());
      if (p.lost_offsets() > 0) state += " lost_offsets=" + std::to_string(p.lost_offsets());
      out << std::setw(16) << s.spec().name() << std::setw(6) << p.partition() << std::setw(14) << p.next_offset()
          << std::setw(10) << p.blocks() << std::setw(12) << p.records() << std::setw(8) << p.lost_blocks()
          << std::setw(14) << (p.worker().empty() ? "-" : p.worker()) << state << "\n";
      for (const proto::SourceDataLost& l : p.lost()) out << "    " << LostLine(l) << "\n";
      for (const proto::BlockInfo& b : p.block_list()) {
        std::string holders;
        for (const std::string& h : b.holders()) holders += (holders.empty() ? "" : ",") + h;
        out << "    block " << b.range().start_offset() << ".." << b.range().end_offset() << " records=" << b.records()
            << " bytes=" << b.bytes() << " holders=" << (holders.empty() ? "-" : holders) << "\n";
      }
    }
  }
  return 0;
}

int Ctl::RunSourceReset(std::ostream& out, std::ostream& err) {
  proto::ResetPartitionRequest request;
  request.set_source(source_name_);
  request.set_partition(reset_partition_);
  request.set_to(reset_to_);
  proto::ResetPartitionResponse response;
  const std::chrono::milliseconds deadline(std::max(timeout_ms_, 15'000));
  auto call = [&](rpc::DriverClient& d) { return d.ResetPartition(request, deadline); };
  if (int rc = CallLeader(err, call, &response, /*invalid_is_usage=*/true)) return rc;
  out << "source " << source_name_ << " partition " << reset_partition_ << " goes on at offset "
      << response.to_offset();
  if (response.from_offset() >= 0 && response.to_offset() > response.from_offset()) {
    out << " (offsets " << response.from_offset() << ".." << response.to_offset() - 1 << " skipped, recorded)";
  } else if (response.from_offset() >= 0) {
    out << " (nothing skipped)";
  }
  out << "\n";
  return 0;
}

void Ctl::PrintLostOfJob(std::ostream& out, const std::vector<std::string>& sources) {
  for (const std::string& name : sources) {
    proto::ListSourcesRequest request;
    request.set_source(name);
    proto::ListSourcesResponse response;
    const std::chrono::milliseconds deadline(timeout_ms_);
    auto call = [&](rpc::DriverClient& d) { return d.ListSources(request, deadline); };
    std::ostringstream ignored;  // the job was shown; its sources' losses are extra
    if (CallLeader(ignored, call, &response) != 0) continue;
    for (const proto::SourceInfo& s : response.sources()) {
      for (const proto::PartitionInfo& p : s.partitions()) {
        if (!p.error().empty()) out << "  FAILED:     " << s.spec().name() << "[" << p.partition() << "] " << p.error() << "\n";
        for (const proto::SourceDataLost& l : p.lost()) {
          out << "  lost:       " << s.spec().name() << "[" << p.partition() << "] " << LostLine(l) << "\n";
        }
      }
    }
  }
}

namespace {

void PrintJob(std::ostream& out, const proto::JobInfo& j, bool detail) {
  std::string sources;
  for (const std::string& s : j.spec().sources()) sources += (sources.empty() ? "" : ",") + s;
  out << std::left << std::setw(std::max<int>(20, static_cast<int>(j.job_id().size()) + 2)) << j.job_id()
      << std::setw(10) << j.state() << std::setw(10)
      << (std::to_string(j.spec().batch_interval_ms()) + "ms") << std::setw(10) << j.last_planned_batch()
      << std::setw(10) << j.last_committed_batch() << sources << "\n";
  if (!detail) return;
  out << "  file:       " << (j.spec().file().empty() ? "-" : j.spec().file()) << "\n";
  out << "  operators:  " << j.spec().operators_size() << "\n";
  for (proto::OperatorSpec op : j.spec().operators()) {
    const int line = op.line();
    op.clear_line();
    out << "    line " << line << ": " << op.ShortDebugString() << "\n";
  }
  out << "  sink:       " << j.spec().sink().ShortDebugString() << "\n";
  if (!j.stop_reason().empty()) {
    out << (j.state() == "draining" ? "  draining:   " : "  stopped:    ") << j.stop_reason() << "\n";
  }
  if (j.state() == "draining") {
    out << "  drain to:  ";
    for (const proto::SourceOffset& o : j.drain_until()) {
      out << " " << o.source() << "[" << o.partition() << "]<" << o.offset();
    }
    out << "\n";
  }
  if (j.restarts() > 0 || j.updates() > 0) {
    out << "  lifecycle:  " << j.restarts() << " restarts, " << j.updates() << " updates";
    if (j.spec_from_batch() > 0) out << " (the new spec from batch " << j.spec_from_batch() << ")";
    out << "\n";
  }
  if (!j.savepoint().empty()) out << "  restored:   from savepoint " << j.savepoint() << "\n";
  if (j.state() == "running" || j.state() == "draining") {
    out << "  rate limit: " << (j.rate_limit() > 0 ? std::to_string(j.rate_limit()) + " events/s" : "none") << " ("
        << j.rate_limit_reason() << ")\n";
  }
  if (j.has_in_flight()) {
    const proto::BatchProgress& p = j.in_flight();
    out << "  in flight:  batch " << p.batch_id() << ", " << p.tasks_done() << "/" << p.tasks_total()
        << " tasks done, running " << p.running_ms() << " ms";
    if (p.attempt() > 1) out << " (attempt " << p.attempt() << ")";
    out << "\n";
  }
  if (j.spec().max_records_per_batch() > 0) {
    out << "  batch bound: " << j.spec().max_records_per_batch() << " offsets per partition\n";
  }
  out << "  events:     " << j.total_input() << " in, " << j.total_output() << " out, " << j.total_dead_letters()
      << " dead letters";
  if (j.total_late_events() > 0) out << " (" << j.total_late_events() << " late)";
  out << "\n";
  if (engine::IsKeyed(j.spec())) {
    const int32_t partitions = j.state_partitions() > 0 ? j.state_partitions() : std::max(1, j.spec().reduce_partitions());
    out << "  state:      " << j.state_keys() << " keys, " << j.state_bytes() << " bytes in " << partitions
        << " reduce partitions";
    if (j.state_layout() > 0) out << " (layout " << j.state_layout() << ")";
    if (j.spec().reduce_partitions() > 0 && j.spec().reduce_partitions() != partitions) {
      out << "; rescaling to " << j.spec().reduce_partitions();
    }
    if (j.watermark_unix_ms() != std::numeric_limits<int64_t>::min()) out << "; watermark " << j.watermark_unix_ms() << " ms";
    out << "\n";
  }
  if (j.recent_batches().empty()) return;
  // Spark's streaming tab: scheduling delay, processing time, total delay.
  out << "  last batches (ms):\n";
  out << "    " << std::left << std::setw(10) << "BATCH" << std::setw(10) << "INPUT" << std::setw(10) << "OUTPUT"
      << std::setw(8) << "DEAD" << std::setw(12) << "SCHED_DELAY" << std::setw(12) << "PROCESSING" << std::setw(12)
      << "TOTAL_DELAY" << std::setw(7) << "TASKS" << "SHUFFLE_BYTES\n";
  for (const proto::BatchSummary& b : j.recent_batches()) {
    out << "    " << std::left << std::setw(10) << b.batch_id() << std::setw(10) << b.input_count() << std::setw(10)
        << b.output_count() << std::setw(8) << b.dead_letters() << std::setw(12) << b.scheduling_delay_ms()
        << std::setw(12) << b.processing_ms() << std::setw(12) << b.total_delay_ms() << std::setw(7)
        << b.task_attempts() << b.shuffle_bytes() << "\n";
  }
}

void PrintJobHeader(std::ostream& out) {
  out << std::left << std::setw(20) << "JOB" << std::setw(10) << "STATE" << std::setw(10) << "BATCH"
      << std::setw(10) << "PLANNED" << std::setw(10) << "COMMITTED" << "SOURCES\n";
}

}  // namespace

int Ctl::RunSubmit(std::ostream& out, std::ostream& err) {
  if (!from_savepoint_.empty()) return RunSubmitFromSavepoint(out, err);
  if (job_file_.empty()) {
    err << "sluicectl: error: submit needs a job file (or --from-savepoint DIR)\n";
    return kExitUsage;
  }
  // Checked here first, so mistakes name the file on the user's machine.
  Result<proto::JobSpec> spec = engine::LoadJobFile(job_file_);
  if (!spec.ok()) {
    err << "sluicectl: " << spec.status().message() << "\n";
    return absl::IsNotFound(spec.status()) ? 1 : kExitUsage;
  }
  proto::SubmitJobRequest request;
  *request.mutable_spec() = *spec;
  proto::SubmitJobResponse response;
  const std::chrono::milliseconds deadline(std::max(timeout_ms_, 15'000));
  auto call = [&](rpc::DriverClient& d) { return d.SubmitJob(request, deadline); };
  if (int rc = CallLeader(err, call, &response, /*invalid_is_usage=*/true)) return rc;
  out << response.job_id() << "\n";
  return 0;
}

int Ctl::RunList(std::ostream& out, std::ostream& err) {
  proto::ListJobsResponse response;
  const std::chrono::milliseconds deadline(timeout_ms_);
  auto call = [&](rpc::DriverClient& d) { return d.ListJobs(proto::ListJobsRequest(), deadline); };
  if (int rc = CallLeader(err, call, &response)) return rc;
  PrintJobHeader(out);
  for (const proto::JobInfo& j : response.jobs()) PrintJob(out, j, false);
  return 0;
}

int Ctl::RunDescribe(std::ostream& out, std::ostream& err) {
  proto::DescribeJobRequest request;
  request.set_job_id(job_id_);
  proto::JobInfo response;
  const std::chrono::milliseconds deadline(timeout_ms_);
  auto call = [&](rpc::DriverClient& d) { return d.DescribeJob(request, deadline); };
  if (int rc = CallLeader(err, call, &response)) return rc;
  PrintJobHeader(out);
  PrintJob(out, response, true);
  if (!response.reduce_partitions().empty()) {
    // "2: worker-1 (+worker-3) -> moving to worker-4"
    out << "reduce partitions (owner (+replica)):\n";
    for (const proto::ReducePartitionInfo& p : response.reduce_partitions()) {
      out << "  " << p.partition() << ": " << (p.owner().empty() ? "-" : p.owner());
      if (!p.replica().empty()) out << " (+" << p.replica() << ")";
      if (!p.moving_to().empty()) {
        out << " -> moving to " << p.moving_to() << " as " << p.move_role() << (p.warming() ? " (warming)" : "");
      }
      out << "\n";
    }
  }
  PrintLostOfJob(out, {response.spec().sources().begin(), response.spec().sources().end()});
  return 0;
}

int Ctl::RunStop(std::ostream& out, std::ostream& err) {
  if ((emit_windows_ || wait_) && !drain_) {
    err << "sluicectl: error: --emit-windows and --wait go with --drain\n";
    return kExitUsage;
  }
  proto::StopJobRequest request;
  request.set_job_id(job_id_);
  request.set_reason(stop_reason_);
  request.set_drain(drain_);
  request.set_emit_open_windows(emit_windows_);
  proto::StopJobResponse response;
  const std::chrono::milliseconds deadline(std::max(timeout_ms_, 15'000));
  auto call = [&](rpc::DriverClient& d) { return d.StopJob(request, deadline); };
  if (int rc = CallLeader(err, call, &response)) return rc;
  if (!drain_) {
    out << "job " << job_id_ << " stopped; its positions and state stay (restart or delete it)\n";
    return 0;
  }
  out << "job " << job_id_ << " draining: it stops once its input so far has committed\n";
  if (!wait_) return 0;
  // Until the leader records the stop; a failover on the way is ridden out,
  // for at most kDrainWait.
  constexpr std::chrono::minutes kDrainWait{10};
  const Clock::TimePoint give_up = clock_->Now() + kDrainWait;
  std::string last_error;
  while (clock_->Now() < give_up) {
    proto::DescribeJobRequest describe;
    describe.set_job_id(job_id_);
    proto::JobInfo info;
    auto get = [&](rpc::DriverClient& d) { return d.DescribeJob(describe, std::chrono::milliseconds(timeout_ms_)); };
    std::ostringstream quiet;
    const int rc = CallLeader(quiet, get, &info);
    if (rc == 0 && (info.state() == "stopped" || info.state() == "failed")) {
      out << "job " << job_id_ << " " << info.state() << " at batch " << info.last_committed_batch() << ": "
          << info.stop_reason() << "\n";
      return info.state() == "stopped" ? 0 : 1;
    }
    if (rc != 0) {
      last_error = quiet.str();
      if (last_error.find("NOT_FOUND") != std::string::npos) {
        err << "sluicectl: job " << job_id_ << " is gone (deleted while it drained)\n";
        return 1;
      }
    }
    clock_->SleepFor(std::chrono::milliseconds(250));
  }
  err << "sluicectl: job " << job_id_ << " did not stop within 10 minutes; it drains on (sluicectl describe "
      << job_id_ << ")" << (last_error.empty() ? "" : "; last error: " + last_error) << "\n";
  return 1;
}

int Ctl::RunDelete(std::ostream& out, std::ostream& err) {
  proto::DeleteJobRequest request;
  request.set_job_id(job_id_);
  proto::DeleteJobResponse response;
  const std::chrono::milliseconds deadline(std::max(timeout_ms_, 15'000));
  auto call = [&](rpc::DriverClient& d) { return d.DeleteJob(request, deadline); };
  if (int rc = CallLeader(err, call, &response)) return rc;
  out << "job " << job_id_ << " deleted\n";
  return 0;
}

int Ctl::RunRestart(std::ostream& out, std::ostream& err) {
  proto::RestartJobRequest request;
  request.set_job_id(job_id_);
  proto::RestartJobResponse response;
  const std::chrono::milliseconds deadline(std::max(timeout_ms_, 15'000));
  auto call = [&](rpc::DriverClient& d) { return d.RestartJob(request, deadline); };
  if (int rc = CallLeader(err, call, &response)) return rc;
  out << "job " << job_id_ << " restarted from batch " << response.from_batch() << "\n";
  return 0;
}

int Ctl::RunUpdate(std::ostream& out, std::ostream& err) {
  Result<proto::JobSpec> spec = engine::LoadJobFile(job_file_);
  if (!spec.ok()) {
    err << "sluicectl: " << spec.status().message() << "\n";
    return absl::IsNotFound(spec.status()) ? 1 : kExitUsage;
  }
  proto::UpdateJobRequest request;
  request.set_job_id(job_id_);
  *request.mutable_spec() = *spec;
  request.set_reset_state(reset_state_);
  request.set_dry_run(dry_run_);
  proto::UpdateJobResponse response;
  const std::chrono::milliseconds deadline(std::max(timeout_ms_, 15'000));
  auto call = [&](rpc::DriverClient& d) { return d.UpdateJob(request, deadline); };
  if (int rc = CallLeader(err, call, &response, /*invalid_is_usage=*/true)) return rc;
  out << "job " << job_id_ << (dry_run_ ? ": would be updated" : " updated") << " from batch " << response.from_batch()
      << "; state " << response.state() << "\n";
  for (const std::string& c : response.changes()) out << "  " << c << "\n";
  return 0;
}

int Ctl::RunRescale(std::ostream& out, std::ostream& err) {
  if (rescale_to_ < 1 || rescale_to_ > 1024) {
    err << "sluicectl: error: rescale " << job_id_ << " " << rescale_to_
        << ": reduce_partitions must be in 1..1024\n";
    return kExitUsage;
  }
  // The job's own spec with only the count changed, through the update path:
  // the leader checks it as any update (docs/jobs.md "Updating a job").
  proto::DescribeJobRequest describe;
  describe.set_job_id(job_id_);
  proto::JobInfo job;
  auto get = [&](rpc::DriverClient& d) { return d.DescribeJob(describe, std::chrono::milliseconds(timeout_ms_)); };
  if (int rc = CallLeader(err, get, &job)) return rc;
  Result<std::optional<engine::KeyedStage>> stage = engine::KeyedStageOf(job.spec());
  if (!stage.ok() || !stage->has_value()) {
    err << "sluicectl: FAILED_PRECONDITION: job " << job_id_ << " has no key_by: it has no reduce partitions\n";
    return 1;
  }
  proto::UpdateJobRequest request;
  request.set_job_id(job_id_);
  *request.mutable_spec() = job.spec();
  request.mutable_spec()->set_reduce_partitions(static_cast<int32_t>(rescale_to_));
  request.set_dry_run(dry_run_);
  proto::UpdateJobResponse response;
  const std::chrono::milliseconds deadline(std::max(timeout_ms_, 15'000));
  auto call = [&](rpc::DriverClient& d) { return d.UpdateJob(request, deadline); };
  if (int rc = CallLeader(err, call, &response, /*invalid_is_usage=*/true)) return rc;
  out << "job " << job_id_ << (dry_run_ ? ": would be rescaled" : " rescaled") << " from "
      << (*stage)->reduce_partitions << " to " << rescale_to_ << " reduce partitions from batch "
      << response.from_batch() << "; state " << response.state() << "\n";
  return 0;
}

int Ctl::RunDrillCommand(std::ostream& out, std::ostream& err) {
  // Mistakes in the flags first, before the cluster is looked for.
  if (Result<CheckedDrillOptions> checked = CheckDrillOptions(drill_); !checked.ok()) {
    err << "sluicectl: error: " << checked.status().message() << "\n";
    return kExitUsage;
  }
  if (int rc = Discover(err); rc != 0) return rc;
  return RunDrill(drill_, drivers_, transport_, clock_, out, err);
}

WatchSnapshot Ctl::PollWatch() {
  WatchSnapshot s;
  // Short deadlines: Ctrl-C is read between polls.
  const std::chrono::milliseconds deadline(std::min(timeout_ms_, 1000));
  Result<std::string> leader = rpc::FindServingLeader(*channels_, drivers_, deadline);
  s.taken_unix_ms = clock_->UnixMillis();
  if (!leader.ok()) {
    s.error = std::string(leader.status().message());
    return s;
  }
  rpc::DriverClient client(*channels_, *leader);
  Result<proto::DriverStatus> status = client.GetStatus(deadline);
  if (!status.ok() || status->role() != proto::DRIVER_ROLE_LEADER) {
    s.error = status.ok() ? "the leader stepped down" : std::string(status.status().message());
    return s;
  }
  // The leader lists every driver of the group: one named by --driver (or
  // found at the start) is enough to follow the leadership from then on.
  for (const proto::MemberInfo& d : status->drivers()) {
    const std::string& a = d.rpc_address();
    if (!a.empty() && std::find(drivers_.begin(), drivers_.end(), a) == drivers_.end()) drivers_.push_back(a);
  }
  s.has_leader = true;
  s.leader_id = status->process().id();
  s.leader_address = *leader;
  s.epoch = status->epoch();
  s.drivers = status->drivers_size();
  s.workers = status->workers_size();
  if (watch_.job.empty()) {
    Result<proto::ListJobsResponse> jobs = client.ListJobs(proto::ListJobsRequest(), deadline);
    if (!jobs.ok()) {
      s.error = std::string(jobs.status().message());
    } else {
      s.jobs.assign(jobs->jobs().begin(), jobs->jobs().end());
    }
  } else {
    proto::DescribeJobRequest request;
    request.set_job_id(watch_.job);
    Result<proto::JobInfo> job = client.DescribeJob(request, deadline);
    if (!job.ok()) {
      s.error = std::string(job.status().message());
    } else {
      s.jobs.push_back(*std::move(job));
    }
  }
  return s;
}

int Ctl::RunWatchCommand(std::ostream& out, std::ostream& err) {
  if (int rc = Discover(err); rc != 0) return rc;
  if (drivers_.empty()) {
    err << "sluicectl: error: watch needs --coordinator or --driver\n";
    return kExitUsage;
  }
  watch_.terminal = &out == &std::cout && isatty(STDOUT_FILENO);
  return RunWatch(
      watch_, [this] { return PollWatch(); }, out);
}

}  // namespace sluice::ctl
