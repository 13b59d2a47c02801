#include "test/harness/zk_cluster.h"

#include <filesystem>

#include "test/harness/util.h"

namespace sluice::testing {
namespace {

constexpr const char* kClassPath =
    "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:"
    "/usr/share/java/log4j-1.2.jar";

constexpr const char* kLog4j =
    "log4j.rootLogger=INFO, CONSOLE\n"
    "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
    "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
    "log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n\n";

}  // namespace

Result<std::unique_ptr<ZkCluster>> ZkCluster::Start(const ZkClusterOptions& options) {
  if (options.base_dir.empty()) return absl::InvalidArgumentError("ZkCluster: base_dir is required");
  if (options.servers < 1) return absl::InvalidArgumentError("ZkCluster: servers must be >= 1");
  std::unique_ptr<ZkCluster> cluster(new ZkCluster(options));
  cluster->servers_.resize(options.servers);
  for (int i = 0; i < options.servers; ++i) {
    Server& s = cluster->servers_[i];
    if (i < static_cast<int>(options.placements.size())) s.placement = options.placements[i];
    s.dir = fmt::format("{}/zk{}", options.base_dir, i);
    s.client_port = FreePort();
    s.peer_port = FreePort();
    s.election_port = FreePort();
  }
  RETURN_IF_ERROR(cluster->WriteConfigs());
  for (int i = 0; i < cluster->size(); ++i) RETURN_IF_ERROR(cluster->Launch(i));
  for (int i = 0; i < cluster->size(); ++i) {
    RETURN_IF_ERROR(cluster->WaitServing(i, options.start_timeout));
  }
  return cluster;
}

ZkCluster::~ZkCluster() {
  for (int i = 0; i < size(); ++i) StopServer(i);
}

std::string ZkCluster::connect_string() const {
  std::string out;
  for (const Server& s : servers_) {
    if (!out.empty()) out += ",";
    out += fmt::format("{}:{}", s.placement.ip, s.client_port);
  }
  return out;
}

Status ZkCluster::WriteConfigs() {
  for (int i = 0; i < size(); ++i) {
    Server& s = servers_[i];
    std::filesystem::create_directories(s.dir + "/data");
    std::string cfg = fmt::format(
        "tickTime={}\n"
        "initLimit=20\n"
        "syncLimit=10\n"
        "dataDir={}/data\n"
        "clientPort={}\n"
        "clientPortAddress={}\n"
        "admin.enableServer=false\n"
        "4lw.commands.whitelist=*\n"
        "maxClientCnxns=0\n"
        "minSessionTimeout={}\n",
        options_.tick_ms, s.dir, s.client_port, s.placement.ip, 2 * options_.tick_ms);
    if (size() > 1) {
      for (int j = 0; j < size(); ++j) {
        cfg += fmt::format("server.{}={}:{}:{}\n", j + 1, servers_[j].placement.ip, servers_[j].peer_port,
                           servers_[j].election_port);
      }
      RETURN_IF_ERROR(WriteFile(s.dir + "/data/myid", std::to_string(i + 1) + "\n"));
    }
    s.config_path = s.dir + "/zoo.cfg";
    RETURN_IF_ERROR(WriteFile(s.config_path, cfg));
    RETURN_IF_ERROR(WriteFile(s.dir + "/log4j.properties", kLog4j));
  }
  return absl::OkStatus();
}

Status ZkCluster::Launch(int i) {
  Server& s = servers_[i];
  std::vector<std::string> argv = {
      "java",
      "-Xmx256m",
      "-XX:+UseSerialGC",
      "-XX:TieredStopAtLevel=1",
      "-Dzookeeper.log.dir=" + s.dir,
      "-Dlog4j.configuration=file:" + s.dir + "/log4j.properties",
      "-cp",
      kClassPath,
      "org.apache.zookeeper.server.quorum.QuorumPeerMain",
      s.config_path};
  ASSIGN_OR_RETURN(s.process, Subprocess::Start(s.placement.Wrap(argv), {.log_path = s.dir + "/server.log"}));
  return absl::OkStatus();
}

void ZkCluster::StopServer(int i) {
  if (servers_[i].process) servers_[i].process->Stop(std::chrono::seconds(10));
}

void ZkCluster::KillServer(int i) {
  if (servers_[i].process) servers_[i].process->Kill();
}

Status ZkCluster::RestartServer(int i) {
  StopServer(i);
  RETURN_IF_ERROR(Launch(i));
  return WaitServing(i, options_.start_timeout);
}

bool ZkCluster::Serving(int i) const {
  Result<std::string> r =
      TcpExchange(servers_[i].placement.ip, servers_[i].client_port, "srvr", std::chrono::seconds(2));
  return r.ok() && r->find("Mode: ") != std::string::npos;
}

Status ZkCluster::WaitServing(int i, std::chrono::milliseconds timeout) const {
  const Server& s = servers_[i];
  bool ok = WaitUntil(
      [&] {
        return Serving(i) || (s.process != nullptr && !s.process->Running());
      },
      timeout, std::chrono::milliseconds(100));
  if (ok && Serving(i)) return absl::OkStatus();
  std::string tail;
  if (Result<std::string> log = ReadFile(s.dir + "/server.log"); log.ok()) {
    tail = log->size() > 2000 ? log->substr(log->size() - 2000) : *log;
  }
  return absl::UnavailableError(fmt::format(
      "ZooKeeper server {} on port {} is not serving after {} ms; log {}/server.log ends:\n{}", i,
      s.client_port, timeout.count(), s.dir, tail));
}

}  // namespace sluice::testing
