// DaemonOptions: the options every Sluice daemon has (driverd and workerd):
// identity, addresses, data directory, coordinator and logging.
//
// Module sluice::common owns it. Each daemon embeds one and adds its own
// options; the coordinator string is checked by the daemon (lib/coord parses
// it). Plain data: thread-compatible.
#pragma once

#include <string>

#include "lib/common/status.h"
#include "lib/common/tls_options.h"

namespace CLI {
class App;
}

namespace sluice {

struct DaemonOptions {
  std::string id;
  std::string rpc_address;        // where the gRPC server listens
  std::string advertise_address;  // what others dial; default: the bound rpc-address
  std::string data_dir;
  // Where the HTTP endpoint listens (/metrics, /healthz, /readyz and, on a
  // driver, the status page); empty: no HTTP endpoint.
  std::string http_address;
  std::string coordinator;
  int zk_session_timeout_ms = 10'000;
  int zk_connect_timeout_ms = 15'000;
  std::string zk_auth_file;  // holds "user:password" for ZooKeeper; empty: open ACLs
  std::string log_level = "info";
  // Obey sluicectl drill's Drill RPC (kill, terminate or pause this process).
  // Off by default: anyone who can reach the RPC port could use it.
  bool allow_drills = false;
  // Mutual TLS on every connection (on by default; lib/rpc/tls.h).
  TlsOptions tls;

  // Declares the options on `app`; `kind` ("driver", "worker") words the help.
  void Register(CLI::App& app, const std::string& kind);
  // INVALID_ARGUMENT naming the option. Not tls: RunDaemonMain checks it
  // after the daemon's own options, so that a wrong value is named before
  // missing certificates are.
  [[nodiscard]] Status Validate() const;
  // The address to publish, given the one the server bound.
  std::string Advertised(const std::string& bound) const {
    return advertise_address.empty() ? bound : advertise_address;
  }
  // The HTTP address to publish, given the one the HTTP server bound: on a
  // wildcard address, the advertised host with the bound port.
  std::string AdvertisedHttp(const std::string& bound) const;
};

}  // namespace sluice
