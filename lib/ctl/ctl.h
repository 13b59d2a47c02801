// Ctl: the commands of sluicectl.
//
// Module sluice::ctl owns the client side of the cluster's administration: it
// declares sluicectl's subcommands and flags on a CLI::App and runs the one the
// user chose, talking gRPC to the daemons. cmd/sluicectl/main.cpp only wires it.
//
//   sluicectl [--coordinator SPEC] status [--driver HOST:PORT[,...]] [--worker HOST:PORT[,...]]
//   sluicectl [--coordinator SPEC] drill --fault F[,F...] [...]   (drill.h, docs/drills.md)
//   sluicectl [--coordinator SPEC] watch [JOB] [--interval S] [--once]   (watch.h)
//   sluicectl ... stop JOB [--drain [--emit-windows] [--wait]] | delete JOB | restart JOB
//   sluicectl ... update JOB FILE [--reset-state] [--dry-run]   (docs/jobs.md "A job's life")
//   sluicectl [--coordinator SPEC] savepoint JOB DIR; submit --from-savepoint DIR [FILE]   (savepoint.h)
//   sluicectl [--coordinator SPEC] source reset SOURCE PARTITION --to earliest|latest|OFFSET
//
// With --coordinator (zookeeper://...), the drivers and workers are found
// through the cluster's membership; --driver/--worker add addresses by hand.
// --zk-auth-file presents the cluster's ZooKeeper credentials, as the daemons do.
//
// Exit codes: 0 success, 1 the cluster answered with an error or could not be
// reached, 2 bad usage.
//
// Thread-compatible.
#pragma once

#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/tls_options.h"
#include "lib/ctl/drill.h"
#include "lib/ctl/watch.h"
#include "lib/rpc/channel_cache.h"

namespace CLI {
class App;
}

namespace sluice::ctl {

class Ctl {
 public:
  explicit Ctl(Clock* clock) : clock_(clock) {}

  // Declares the subcommands and their flags on `app`.
  void Register(CLI::App& app);
  // Runs the subcommand that `app` parsed; returns the exit code.
  int Run(const CLI::App& app, std::ostream& out, std::ostream& err);

 private:
  int RunStatus(std::ostream& out, std::ostream& err);
  int RunSourceAdd(std::ostream& out, std::ostream& err);
  int RunSources(std::ostream& out, std::ostream& err);
  // sluicectl source reset SOURCE PARTITION --to earliest|latest|OFFSET (source_reset.cc).
  int RunSourceReset(std::ostream& out, std::ostream& err);
  // describe: the lost ranges of the job's sources, if any (source_reset.cc).
  void PrintLostOfJob(std::ostream& out, const std::vector<std::string>& sources);
  int RunSubmit(std::ostream& out, std::ostream& err);
  int RunList(std::ostream& out, std::ostream& err);
  int RunDescribe(std::ostream& out, std::ostream& err);
  int RunStop(std::ostream& out, std::ostream& err);
  int RunDelete(std::ostream& out, std::ostream& err);
  int RunRestart(std::ostream& out, std::ostream& err);
  int RunUpdate(std::ostream& out, std::ostream& err);
  int RunRescale(std::ostream& out, std::ostream& err);
  // savepoint_command.cc
  int RunSavepoint(std::ostream& out, std::ostream& err);
  // sluicectl worker drain ID [--wait] [--cancel] and sluicectl rebalance
  // (placement_command.cc).
  int RunWorkerDrain(std::ostream& out, std::ostream& err);
  int RunRebalance(std::ostream& out, std::ostream& err);
  int RunSubmitFromSavepoint(std::ostream& out, std::ostream& err);
  int RunDrillCommand(std::ostream& out, std::ostream& err);
  int RunWatchCommand(std::ostream& out, std::ostream& err);
  // One poll of watch: the serving leader's status and the jobs.
  WatchSnapshot PollWatch();
  // Makes channels_ with the TLS identity of tls_ (once); 0 or an exit code
  // (2 if a certificate file is wrong).
  int Connect(std::ostream& err);
  // Connect()s, then fills drivers_/workers_ from --coordinator; 0 or an exit code.
  int Discover(std::ostream& err);
  // Every subcommand's call to the leader: finds the serving leader among
  // drivers_, makes `call(rpc::DriverClient&)` on it and keeps its answer in
  // `*response`. 0, or the exit code with the error on `err` (2 for an
  // INVALID_ARGUMENT answer if `invalid_is_usage`, else 1).
  template <typename Response, typename Call>
  int CallLeader(std::ostream& err, Call&& call, Response* response, bool invalid_is_usage = false);
  template <typename Response, typename Call>
  int CallLeaderHere(std::ostream& err, Call&& call, Response* response);  // placement_command.cc

  Clock* clock_;
  TlsOptions tls_;
  rpc::RpcOptions transport_;                    // made by Run() from tls_
  std::unique_ptr<rpc::ChannelCache> channels_;  // made by Run()
  // source add
  std::string source_name_, source_kind_, kafka_brokers_, kafka_topic_, kafka_start_, framing_, on_data_loss_;
  int partitions_ = 0, replication_ = 0, payload_bytes_ = 0;
  int64_t max_event_bytes_ = 0, max_rate_ = 0, rate_ = 0, keys_ = 0;
  uint64_t seed_ = 0;
  std::vector<std::string> properties_, addresses_;
  bool with_blocks_ = false;
  CLI::App* source_add_cmd_ = nullptr;
  CLI::App* sources_cmd_ = nullptr;
  // source reset
  CLI::App* source_reset_cmd_ = nullptr;
  int32_t reset_partition_ = 0;
  std::string reset_to_;
  // jobs
  std::string job_file_, job_id_, stop_reason_;
  CLI::App* submit_cmd_ = nullptr;
  CLI::App* list_cmd_ = nullptr;
  CLI::App* describe_cmd_ = nullptr;
  CLI::App* stop_cmd_ = nullptr;
  CLI::App* delete_cmd_ = nullptr;
  CLI::App* restart_cmd_ = nullptr;
  CLI::App* update_cmd_ = nullptr;
  CLI::App* rescale_cmd_ = nullptr;
  int64_t rescale_to_ = 0;  // rescale: the new reduce_partitions
  bool drain_ = false, emit_windows_ = false, wait_ = false;  // stop
  CLI::App* worker_drain_cmd_ = nullptr;
  CLI::App* rebalance_cmd_ = nullptr;
  std::string drain_worker_;
  bool drain_wait_ = false, drain_cancel_ = false;
  int drain_wait_s_ = 300;
  bool reset_state_ = false, dry_run_ = false;                // update
  // savepoints (savepoint.h)
  std::string savepoint_dir_, from_savepoint_;
  CLI::App* savepoint_cmd_ = nullptr;
  // drill
  DrillOptions drill_;
  CLI::App* drill_cmd_ = nullptr;
  // watch
  WatchOptions watch_;
  CLI::App* watch_cmd_ = nullptr;
  std::vector<std::string> drivers_;
  std::vector<std::string> workers_;
  std::string coordinator_;
  std::string zk_auth_file_;  // ZooKeeper credentials, as the daemons' zk-auth-file
  int timeout_ms_ = 3000;
  CLI::App* status_cmd_ = nullptr;
};

}  // namespace sluice::ctl
