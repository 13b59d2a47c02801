// ZkCluster: real ZooKeeper servers (the Debian `zookeeper` package) for tests.
//
// Part of sluice::test_harness. Runs 1 server, or an ensemble of 3 (or any
// odd number), on free loopback ports, each with its own data directory under
// `base_dir`, launched directly with java (not systemd; see PLATFORM.md). A
// server can be stopped, killed and restarted with its data, to test outages.
// The server log of server i is <base_dir>/zk<i>/server.log.
//
// Thread-compatible.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "lib/common/status.h"
#include "test/harness/subprocess.h"

namespace sluice::testing {

struct ZkClusterOptions {
  std::string base_dir;  // required
  int servers = 1;
  // 500 ms ticks allow session timeouts down to 1 s (2 x tick).
  int tick_ms = 500;
  std::chrono::milliseconds start_timeout = std::chrono::seconds(30);
  // Where server i runs (NetnsHosts); missing entries: loopback, here.
  std::vector<Placement> placements;
};

class ZkCluster {
 public:
  // Starts every server and waits until each serves requests (in an
  // ensemble: until a quorum has formed).
  [[nodiscard]] static Result<std::unique_ptr<ZkCluster>> Start(const ZkClusterOptions& options);
  ~ZkCluster();

  int size() const { return static_cast<int>(servers_.size()); }
  // "ip1:p1,ip2:p2,..." for zookeeper_init (127.0.0.1 unless placed).
  std::string connect_string() const;
  int client_port(int i) const { return servers_[i].client_port; }
  // The pid of server i's java process; 0 while it is stopped.
  int server_pid(int i) const { return servers_[i].process ? servers_[i].process->pid() : 0; }

  // SIGTERM and wait (a clean shutdown).
  void StopServer(int i);
  // SIGKILL.
  void KillServer(int i);
  // Starts a stopped server again, with its data; waits until it serves.
  [[nodiscard]] Status RestartServer(int i);
  // True if server i answers "srvr" with a mode (leader/follower/standalone).
  bool Serving(int i) const;
  [[nodiscard]] Status WaitServing(int i, std::chrono::milliseconds timeout) const;

 private:
  struct Server {
    Placement placement;
    std::string dir;
    std::string config_path;
    int client_port = 0;
    int peer_port = 0;
    int election_port = 0;
    std::unique_ptr<Subprocess> process;
  };

  explicit ZkCluster(ZkClusterOptions options) : options_(std::move(options)) {}
  [[nodiscard]] Status WriteConfigs();
  [[nodiscard]] Status Launch(int i);

  ZkClusterOptions options_;
  std::vector<Server> servers_;
};

}  // namespace sluice::testing
