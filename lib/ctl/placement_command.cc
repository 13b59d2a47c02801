// sluicectl worker drain ID [--wait] [--cancel] and sluicectl rebalance: the
// leader's DrainWorker / Rebalance (docs/state.md "Rebalancing").
#include <iomanip>
#include <iostream>
#include <sstream>

#include "lib/common/config.h"
#include "lib/ctl/ctl.h"
#include "lib/rpc/driver_client.h"

namespace sluice::ctl {
namespace {

std::string Holds(const proto::DrainWorkerResponse& r) {
  std::string out = std::to_string(r.receivers()) + " receivers, " + std::to_string(r.reduce_partitions_size()) +
                    " reduce partitions";
  for (int i = 0; i < r.reduce_partitions_size() && i < 8; ++i) out += (i == 0 ? " (" : ", ") + r.reduce_partitions(i);
  if (r.reduce_partitions_size() > 0) out += r.reduce_partitions_size() > 8 ? ", ...)" : ")";
  return out;
}

}  // namespace

// Ctl::CallLeader's body (a template of ctl.cc) for this file's calls.
template <typename Response, typename Call>
int Ctl::CallLeaderHere(std::ostream& err, Call&& call, Response* response) {
  if (int rc = Discover(err); rc != 0) return rc;
  if (drivers_.empty()) {
    err << "sluicectl: error: needs --coordinator or --driver\n";
    return 1;
  }
  Result<Response> answer = rpc::CallLeader(*channels_, drivers_, std::chrono::milliseconds(timeout_ms_),
                                            std::forward<Call>(call));
  if (!answer.ok()) {
    err << "sluicectl: " << answer.status().message() << "\n";
    return absl::IsInvalidArgument(answer.status()) ? kExitUsage : 1;
  }
  *response = std::move(*answer);
  return 0;
}

int Ctl::RunWorkerDrain(std::ostream& out, std::ostream& err) {
  if (drain_cancel_ && drain_wait_) {
    err << "sluicectl: error: --wait goes with a drain, not with --cancel\n";
    return kExitUsage;
  }
  proto::DrainWorkerRequest request;
  request.set_worker_id(drain_worker_);
  request.set_cancel(drain_cancel_);
  proto::DrainWorkerResponse response;
  const std::chrono::milliseconds deadline(std::max(timeout_ms_, 15'000));
  auto call = [&](rpc::DriverClient& d) { return d.DrainWorker(request, deadline); };
  if (int rc = CallLeaderHere(err, call, &response)) return rc;
  if (drain_cancel_) {
    out << "worker " << drain_worker_ << " takes work again\n";
    return 0;
  }
  out << "worker " << drain_worker_ << " draining; it holds " << Holds(response) << "\n";
  if (!drain_wait_) return 0;
  // Until the leader says it holds nothing; a failover on the way is ridden
  // out (the new leader goes on moving), for at most --wait-timeout.
  request.set_status_only(true);
  const Clock::TimePoint give_up = clock_->Now() + std::chrono::seconds(drain_wait_s_);
  std::string last_error;
  while (clock_->Now() < give_up) {
    std::ostringstream quiet;
    auto get = [&](rpc::DriverClient& d) { return d.DrainWorker(request, std::chrono::milliseconds(timeout_ms_)); };
    const int rc = CallLeaderHere(quiet, get, &response);
    if (rc == 0 && !response.draining()) {
      err << "sluicectl: the drain of worker " << drain_worker_ << " was cancelled (or it left the cluster)\n";
      return 1;
    }
    if (rc == 0 && response.receivers() == 0 && response.reduce_partitions().empty()) {
      out << "worker " << drain_worker_ << " holds nothing: it can be stopped\n";
      return 0;
    }
    if (rc != 0) last_error = quiet.str();
    clock_->SleepFor(std::chrono::milliseconds(250));
  }
  err << "sluicectl: worker " << drain_worker_ << " still holds " << Holds(response) << " after " << drain_wait_s_
      << " s; it drains on (sluicectl worker drain " << drain_worker_ << " --wait)"
      << (last_error.empty() ? "" : "; last error: " + last_error) << "\n";
  return 1;
}

int Ctl::RunRebalance(std::ostream& out, std::ostream& err) {
  proto::RebalanceResponse response;
  const std::chrono::milliseconds deadline(std::max(timeout_ms_, 15'000));
  auto call = [&](rpc::DriverClient& d) { return d.Rebalance(proto::RebalanceRequest(), deadline); };
  if (int rc = CallLeaderHere(err, call, &response)) return rc;
  if (response.started().empty()) {
    out << "no moves started (" << response.in_flight_size() << " in progress)\n";
  } else {
    out << "JOB                 PARTITION ROLE     FROM         TO\n";
  }
  for (const proto::PartitionMoveInfo& m : response.started()) {
    out << std::left << std::setw(20) << m.job_id() << std::setw(10) << m.partition() << std::setw(9) << m.role()
        << std::setw(13) << (m.from().empty() ? "-" : m.from()) << m.to() << "\n";
  }
  return 0;
}

}  // namespace sluice::ctl
