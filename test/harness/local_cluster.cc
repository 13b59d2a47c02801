#include "test/harness/local_cluster.h"

#include <filesystem>

#include "lib/rpc/channel_cache.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/worker_client.h"
#include "test/harness/certs.h"
#include "test/harness/paths.h"
#include "test/harness/util.h"

namespace sluice::testing {

rpc::ChannelCache& Channels() {
  // Never destroyed: used until exit.
  static rpc::ChannelCache* const channels = new rpc::ChannelCache(TestRpcOptions());
  return *channels;
}

// GetStatus is how tests probe daemons that may not listen yet, or just died
// or restarted: each probe gets a connection of its own, so it never waits out
// the reconnect backoff a cached channel keeps from earlier refused attempts.
Result<proto::DriverStatus> GetDriverStatus(const std::string& address,
                                            std::chrono::milliseconds deadline) {
  rpc::RpcOptions options = TestRpcOptions();
  options.own_connections = true;
  rpc::ChannelCache probe(options);
  return rpc::DriverClient(probe, address).GetStatus(deadline);
}

Result<proto::WorkerStatus> GetWorkerStatus(const std::string& address,
                                            std::chrono::milliseconds deadline) {
  rpc::RpcOptions options = TestRpcOptions();
  options.own_connections = true;
  rpc::ChannelCache probe(options);
  return rpc::WorkerClient(probe, address).GetStatus(deadline);
}

int LocalCluster::LeaderIndex() {
  for (int i = 0; i < num_drivers(); ++i) {
    if (driver(i) == nullptr) continue;
    Result<proto::DriverStatus> st = GetDriverStatus(driver_address(i));
    if (st.ok() && st->role() == proto::DRIVER_ROLE_LEADER) return i;
  }
  return -1;
}

std::optional<proto::JobInfo> LocalCluster::DescribeJob(const std::string& job) {
  for (int i = 0; i < num_drivers(); ++i) {
    if (driver(i) == nullptr) continue;
    proto::DescribeJobRequest request;
    request.set_job_id(job);
    Result<proto::JobInfo> info =
        rpc::DriverClient(Channels(), driver_address(i)).DescribeJob(request, std::chrono::seconds(2));
    if (info.ok()) return *std::move(info);
  }
  return std::nullopt;
}

int LocalCluster::Sluicectl(const std::vector<std::string>& args, const std::string& log_path,
                            std::chrono::seconds timeout) {
  std::vector<std::string> argv = {kSluicectlPath, "--coordinator", coordinator()};
  for (std::string& f : TlsFlags("admin")) argv.push_back(std::move(f));
  argv.insert(argv.end(), args.begin(), args.end());
  Result<int> code = RunCommand(argv, log_path, timeout);
  return code.ok() ? *code : -1;
}

bool DaemonServing(const std::string& address, bool is_driver) {
  return is_driver ? GetDriverStatus(address).ok() : GetWorkerStatus(address).ok();
}

Result<std::unique_ptr<LocalCluster>> LocalCluster::Start(LocalClusterOptions options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("LocalCluster: dir is required");
  std::unique_ptr<LocalCluster> c(new LocalCluster(std::move(options)));
  const LocalClusterOptions& o = c->options_;
  std::vector<Placement> zk_placements;
  if (o.separate_hosts) {
    if (!o.kafka_topics.empty()) {
      return absl::InvalidArgumentError(
          "LocalCluster: separate_hosts cannot run the Kafka mock (it listens on loopback only)");
    }
    std::vector<std::string> names;
    for (int i = 0; i < o.zk_servers; ++i) names.push_back(c->zk_host(i));
    for (int i = 0; i < o.drivers; ++i) names.push_back(c->driver_host(i));
    for (int i = 0; i < o.workers; ++i) names.push_back(c->worker_host(i));
    std::filesystem::create_directories(o.dir);
    ASSIGN_OR_RETURN(c->hosts_, NetnsHosts::Create(names, o.dir + "/netns.log"));
    for (int i = 0; i < o.zk_servers; ++i) zk_placements.push_back(c->hosts_->placement(c->zk_host(i)));
  }
  ASSIGN_OR_RETURN(c->zk_, ZkCluster::Start({.base_dir = o.dir, .servers = o.zk_servers,
                                             .placements = zk_placements}));
  if (!o.kafka_topics.empty()) {
    ASSIGN_OR_RETURN(c->kafka_, KafkaMock::Start(o.dir, o.kafka_topics));
  }
  c->drivers_.resize(o.drivers);
  c->workers_.resize(o.workers);
  for (Daemon& d : c->drivers_) d.port = FreePort();
  for (Daemon& w : c->workers_) w.port = FreePort();
  if (o.http) {
    for (Daemon& d : c->drivers_) d.http_port = FreePort();
    for (Daemon& w : c->workers_) w.http_port = FreePort();
  }
  for (int i = 0; i < o.drivers; ++i) RETURN_IF_ERROR(c->StartDriver(i));
  for (int i = 0; i < o.workers; ++i) RETURN_IF_ERROR(c->StartWorker(i));
  return c;
}

LocalCluster::~LocalCluster() {
  for (int i = 0; i < num_workers(); ++i) StopWorker(i);
  for (int i = 0; i < num_drivers(); ++i) StopDriver(i);
}

std::string LocalCluster::driver_address(int i) const {
  return PlacementOf(driver_host(i)).ip + ":" + std::to_string(drivers_[i].port);
}
std::string LocalCluster::worker_address(int i) const {
  return PlacementOf(worker_host(i)).ip + ":" + std::to_string(workers_[i].port);
}
std::string LocalCluster::driver_http_address(int i) const {
  if (drivers_[i].http_port == 0) return "";
  return PlacementOf(driver_host(i)).ip + ":" + std::to_string(drivers_[i].http_port);
}
std::string LocalCluster::worker_http_address(int i) const {
  if (workers_[i].http_port == 0) return "";
  return PlacementOf(worker_host(i)).ip + ":" + std::to_string(workers_[i].http_port);
}
std::string LocalCluster::driver_log(int i) const {
  return options_.dir + "/" + driver_id(i) + "/driverd.log";
}
std::string LocalCluster::worker_log(int i) const {
  return options_.dir + "/" + worker_id(i) + "/workerd.log";
}

std::string LocalCluster::coordinator() const {
  return "zookeeper://" + zk_->connect_string() + options_.zk_root;
}

std::string LocalCluster::driver_addresses() const {
  std::string out;
  for (int i = 0; i < num_drivers(); ++i) out += (i ? "," : "") + driver_address(i);
  return out;
}
std::string LocalCluster::worker_addresses() const {
  std::string out;
  for (int i = 0; i < num_workers(); ++i) out += (i ? "," : "") + worker_address(i);
  return out;
}

Status LocalCluster::StartDriver(int i) { return StartDaemon(true, i); }

Result<int> LocalCluster::AddWorker() {
  if (hosts_) return absl::FailedPreconditionError("LocalCluster::AddWorker: not with separate_hosts");
  workers_.emplace_back();
  Daemon& w = workers_.back();
  w.port = FreePort();
  if (options_.http) w.http_port = FreePort();
  const int i = num_workers() - 1;
  RETURN_IF_ERROR(StartWorker(i));
  return i;
}
Status LocalCluster::StartWorker(int i) { return StartDaemon(false, i); }

Status LocalCluster::StartDaemon(bool is_driver, int i) {
  Daemon& d = is_driver ? drivers_[i] : workers_[i];
  if (d.process && d.process->Running()) {
    return absl::FailedPreconditionError(fmt::format("{} is running", is_driver ? driver_id(i) : worker_id(i)));
  }
  const std::string id = is_driver ? driver_id(i) : worker_id(i);
  const std::string home = options_.dir + "/" + id;
  std::filesystem::create_directories(home);
  const std::string address = is_driver ? driver_address(i) : worker_address(i);
  std::vector<std::string> argv = {!d.binary.empty() ? d.binary : is_driver ? kDriverdPath : kWorkerdPath,
                                   "--id", id,
                                   "--rpc-address", address,
                                   "--data-dir", home + "/data",
                                   "--log-level", options_.log_level,
                                   "--coordinator", coordinator(),
                                   "--zk-session-timeout-ms",
                                   std::to_string(options_.zk_session_timeout_ms)};
  for (const auto& [flag, value] : {std::pair{"--plugin-dirs", options_.plugin_dirs.value_or(kPluginDir)},
                                     std::pair{"--output-dirs", options_.output_dirs.value_or(options_.dir)}}) {
    if (value.empty()) continue;  // none: the cluster refuses what needs it
    argv.push_back(flag);
    argv.push_back(value);
  }
  if (d.http_port != 0) {
    argv.push_back("--http-address");
    argv.push_back(is_driver ? driver_http_address(i) : worker_http_address(i));
  }
  if (is_driver) {
    argv.push_back("--wal-group-size");
    argv.push_back(std::to_string(options_.drivers));
  }
  for (std::string& f : TlsFlags(is_driver ? "driver" : "worker")) argv.push_back(std::move(f));
  for (const std::string& f : is_driver ? options_.driver_flags : options_.worker_flags) {
    argv.push_back(f);
  }
  const Placement where = PlacementOf(is_driver ? driver_host(i) : worker_host(i));
  ASSIGN_OR_RETURN(d.process,
                   Subprocess::Start(where.Wrap(argv), {.log_path = is_driver ? driver_log(i) : worker_log(i)}));
  bool up = WaitUntil([&] { return !d.process->Running() || DaemonServing(address, is_driver); },
                      std::chrono::seconds(15), std::chrono::milliseconds(50));
  if (!up || !d.process->Running()) {
    std::string log = ReadFile(is_driver ? driver_log(i) : worker_log(i)).value_or("");
    return absl::UnavailableError(fmt::format("{} did not start serving on {}; its log:\n{}", id,
                                              address, log.substr(log.size() > 2000 ? log.size() - 2000 : 0)));
  }
  return absl::OkStatus();
}

int LocalCluster::StopDriver(int i) {
  return drivers_[i].process ? drivers_[i].process->Stop(std::chrono::seconds(10)) : 0;
}
int LocalCluster::StopWorker(int i) {
  return workers_[i].process ? workers_[i].process->Stop(std::chrono::seconds(10)) : 0;
}
void LocalCluster::KillDriver(int i) {
  if (drivers_[i].process) drivers_[i].process->Kill();
}
void LocalCluster::KillWorker(int i) {
  if (workers_[i].process) workers_[i].process->Kill();
}

}  // namespace sluice::testing
