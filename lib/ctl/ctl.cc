#include "lib/ctl/ctl.h"

#include <chrono>
#include <iomanip>
#include <iostream>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/coord/coordinator.h"
#include "lib/rpc/status_client.h"

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
      << p.rpc_address() << std::setw(9) << p.version() << std::setw(8) << p.pid()
      << std::setw(7) << Uptime(now_ms, p.start_time_unix_ms()) << extra << "\n";
}

}  // namespace

void Ctl::Register(CLI::App& app) {
  app.require_subcommand(0, 1);
  app.add_option("--timeout-ms", timeout_ms_, "Deadline of each RPC")->capture_default_str();
  app.add_option("--coordinator", coordinator_,
                 "Find the cluster through zookeeper://HOST:PORT[,...]/ROOT");
  status_cmd_ = app.add_subcommand("status", "Show the cluster's drivers and workers");
  status_cmd_->add_option("--driver", drivers_, "Driver address host:port (repeat or comma-separate)")
      ->delimiter(',');
  status_cmd_->add_option("--worker", workers_, "Worker address host:port (repeat or comma-separate)")
      ->delimiter(',');
}

int Ctl::Run(const CLI::App& app, std::ostream& out, std::ostream& err) {
  if (status_cmd_->parsed()) return RunStatus(out, err);
  err << "sluicectl: error: no command given (see --help)\n";
  return kExitUsage;
}

int Ctl::RunStatus(std::ostream& out, std::ostream& err) {
  if (!coordinator_.empty()) {
    Result<coord::CoordinatorSpec> spec = coord::CoordinatorSpec::Parse(coordinator_);
    if (!spec.ok()) {
      err << "sluicectl: error: " << spec.status().message() << "\n";
      return kExitUsage;
    }
    auto coordinator = coord::Coordinator::Create(
        coordinator_, {.connect_timeout = std::chrono::milliseconds(timeout_ms_)});
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
      drivers_.push_back(spec->leader_address);
    }
  }
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
      << "ADDRESS" << std::setw(9) << "VERSION" << std::setw(8) << "PID" << std::setw(7)
      << "UP" << "DETAIL\n";
  for (const std::string& addr : drivers_) {
    Result<proto::DriverStatus> got = rpc::GetDriverStatus(addr, deadline);
    if (!got.ok()) {
      err << "sluicectl: driver at " << addr << ": " << got.status().ToString() << "\n";
      ++failures;
      continue;
    }
    const proto::DriverStatus& status = *got;
    std::string detail = status.role() == proto::DRIVER_ROLE_LEADER
                             ? "LEADER epoch=" + std::to_string(status.epoch())
                             : "standby leader=" + (status.leader().id().empty() ? "?" : status.leader().id());
    detail += " workers=" + std::to_string(status.workers_size()) +
              " wal=" + std::to_string(status.wal().commit_seq()) + "/" +
              std::to_string(status.wal().last_seq()) +
              (status.role() == proto::DRIVER_ROLE_LEADER && !status.wal().serving() ? " catching-up"
                                                                                        : "");
    PrintRow(out, "driver", status.process(), detail, now_ms);
  }
  for (const std::string& addr : workers_) {
    Result<proto::WorkerStatus> got = rpc::GetWorkerStatus(addr, deadline);
    if (!got.ok()) {
      err << "sluicectl: worker at " << addr << ": " << got.status().ToString() << "\n";
      ++failures;
      continue;
    }
    const proto::WorkerStatus& status = *got;
    PrintRow(out, "worker", status.process(),
             "slots=" + std::to_string(status.slots()) + " leader=" +
                 (status.leader().id().empty() ? "?" : status.leader().id()) +
                 " epoch=" + std::to_string(status.highest_epoch()),
             now_ms);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace sluice::ctl
