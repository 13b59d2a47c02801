#include "lib/common/daemon_options.h"

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/common/fs.h"
#include "lib/common/logging.h"
#include "lib/common/zk_auth_file.h"

namespace sluice {

void DaemonOptions::Register(CLI::App& app, const std::string& kind) {
  app.add_option("--id", id, "Unique id among the cluster's " + kind + "s (required)");
  app.add_option("--rpc-address", rpc_address, "host:port the gRPC server listens on")
      ->capture_default_str();
  app.add_option("--advertise-address", advertise_address,
                 "host:port other processes dial (default: rpc-address; required when it "
                 "listens on all interfaces)");
  app.add_option("--http-address", http_address,
                 "host:port of the HTTP endpoint: Prometheus /metrics, /healthz, /readyz" +
                     std::string(kind == "driver" ? " and the status page at /" : "") +
                     " (plain HTTP, read-only; docs/operations.md). Empty: none");
  app.add_option("--data-dir", data_dir, "Directory for this " + kind + "'s data")
      ->capture_default_str();
  app.add_option("--coordinator", coordinator,
                 "zookeeper://HOST:PORT[,HOST:PORT...]/ROOT, or standalone[://DRIVER_HOST:PORT]")
      ->capture_default_str();
  app.add_option("--zk-session-timeout-ms", zk_session_timeout_ms,
                 "ZooKeeper session timeout: a dead " + kind + " is noticed within it")
      ->capture_default_str();
  app.add_option("--zk-connect-timeout-ms", zk_connect_timeout_ms,
                 "Give up starting if ZooKeeper cannot be reached within this")
      ->capture_default_str();
  app.add_option("--zk-auth-file", zk_auth_file,
                 "File (mode 600) holding user:password: ZooKeeper digest credentials; the znodes are then "
                 "writable by them only (docs/security.md)");
  app.add_option("--log-level", log_level, kLogLevels)->capture_default_str();
  app.add_flag("--allow-drills", allow_drills,
               "Obey the Drill RPC of sluicectl drill: kill, terminate or pause this " + kind +
                   " on request (docs/drills.md)");
  tls.Register(app);
}

std::string DaemonOptions::AdvertisedHttp(const std::string& bound) const {
  Result<HostPort> b = ParseHostPort(bound, "http-address");
  if (!b.ok() || (b->host != "0.0.0.0" && b->host != "::")) return bound;
  Result<HostPort> adv = ParseHostPort(Advertised(rpc_address), "advertise-address");
  if (!adv.ok()) return bound;
  const bool v6 = adv->host.find(':') != std::string::npos;
  return (v6 ? "[" + adv->host + "]" : adv->host) + ":" + std::to_string(b->port);
}

Status DaemonOptions::Validate() const {
  RETURN_IF_ERROR(ValidateId(id, "id"));
  ASSIGN_OR_RETURN(HostPort listen, ParseHostPort(rpc_address, "rpc-address"));
  if (!advertise_address.empty()) {
    ASSIGN_OR_RETURN(HostPort adv, ParseHostPort(advertise_address, "advertise-address"));
    if (adv.port == 0) return absl::InvalidArgumentError("advertise-address: needs a port");
  } else if (listen.host == "0.0.0.0" || listen.host == "::") {
    return absl::InvalidArgumentError(fmt::format(
        "advertise-address: must be set when rpc-address ({}) listens on all interfaces",
        rpc_address));
  }
  if (!http_address.empty()) {
    ASSIGN_OR_RETURN(HostPort http, ParseHostPort(http_address, "http-address"));
    if (http.port == listen.port && http.port != 0 && (http.host == listen.host || http.host == "0.0.0.0" ||
                                                       listen.host == "0.0.0.0")) {
      return absl::InvalidArgumentError(
          fmt::format("http-address: {} is the same port as rpc-address ({})", http_address, rpc_address));
    }
  }
  if (data_dir.empty()) return absl::InvalidArgumentError("data-dir: must not be empty");
  if (zk_session_timeout_ms < 1000 || zk_session_timeout_ms > 120'000) {
    return absl::InvalidArgumentError(
        fmt::format("zk-session-timeout-ms: {} is not in 1000..120000", zk_session_timeout_ms));
  }
  if (zk_connect_timeout_ms < 100) {
    return absl::InvalidArgumentError("zk-connect-timeout-ms: must be at least 100");
  }
  if (!zk_auth_file.empty()) RETURN_IF_ERROR(ReadZkAuthFile(zk_auth_file).status());
  return absl::OkStatus();
}

}  // namespace sluice
