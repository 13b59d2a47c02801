// TcpProxy: a loopback TCP proxy that a test puts between a client and a
// server (ZooKeeper, a peer daemon) to simulate a network partition without
// touching either process.
//
// Part of sluice::test_harness. States:
//
//   FORWARDING --Stall()--> STALLED    bytes stop moving both ways; connections
//       ^                     |        stay open; new connections wait in the
//       |                     |        listen backlog (like a silent network)
//       +----Restore()--------+
//       |                     |
//       +----Restore()---- CUT         every connection is closed; new ones are
//                                      accepted and closed at once (a reset)
//
// Stall() is a partition the client can only detect by timeouts; Cut() is one
// it sees at once. Thread-safe: the state may be changed from any thread while
// the proxy's own thread moves bytes.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "lib/common/status.h"

namespace sluice::testing {

class TcpProxy {
 public:
  // Listens on 127.0.0.1 (a free port) and forwards to target_host:target_port.
  [[nodiscard]] static Result<std::unique_ptr<TcpProxy>> Start(const std::string& target_host,
                                                               int target_port);
  ~TcpProxy();

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  void Stall();
  void Cut();
  void Restore();

 private:
  enum class Mode { kForwarding, kStalled, kCut };
  TcpProxy(int listen_fd, int port, std::string host, int target_port);
  void SetMode(Mode m);
  void Run();

  const int listen_fd_;
  const int port_;
  const std::string target_host_;
  const int target_port_;
  int wake_pipe_[2] = {-1, -1};
  std::atomic<Mode> mode_{Mode::kForwarding};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace sluice::testing
