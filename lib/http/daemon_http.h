// DaemonHttp: what a daemon serves over HTTP, put together once for driverd
// and workerd — its metrics registry (every module's probe registers on
// it), the process's own metrics (ProcessProbe), and, with --http-address,
// the HTTP endpoint: /metrics, /healthz (the main loops move: the same check
// as systemd's watchdog) and /readyz (the daemon's last ServiceState, as the
// main loop reported it to systemd), plus the routes the daemon adds.
//
// Module sluice::http owns it. Thread-safe after Start.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "lib/common/daemon_options.h"
#include "lib/common/service_notify.h"
#include "lib/common/status.h"
#include "lib/http/http_server.h"
#include "lib/metrics/metrics.h"
#include "lib/metrics/process_probe.h"

namespace sluice::http {

class DaemonHttp {
 public:
  // `kind`: "driver" or "worker".
  explicit DaemonHttp(std::string kind);
  ~DaemonHttp();

  metrics::Registry* registry() { return &registry_; }
  // Routes of the daemon's own (before Start).
  HttpServer* server() { return &server_; }

  // The daemon's readiness, as its ServiceState() last found it.
  void SetServiceState(const sluice::ServiceState& state);

  // Registers the process's metrics; with options.http_address set, starts
  // the endpoint (INVALID_ARGUMENT / UNAVAILABLE from HttpServer::Start).
  // `liveness` (the daemon's loops) must outlive Stop.
  [[nodiscard]] Status Start(const DaemonOptions& options, Liveness* liveness);
  // The address to publish for others ("" without an endpoint).
  const std::string& advertised() const { return advertised_; }
  void Stop();

 private:
  const std::string kind_;
  metrics::Registry registry_;
  std::unique_ptr<metrics::ProcessProbe> process_;
  HttpServer server_;
  std::string advertised_;
  Liveness* liveness_ = nullptr;
  mutable std::mutex mu_;
  sluice::ServiceState state_{.ready = false, .status = "starting"};  // guarded by mu_
};

}  // namespace sluice::http
