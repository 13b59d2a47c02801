// TlsOptions: the transport-security settings every Sluice binary has
// (driverd, workerd, sluicectl): `tls`, `tls-cert`, `tls-key`, `tls-ca`,
// `tls-verify-hostname`.
//
// Module sluice::common owns the settings; lib/rpc/tls.h turns them into gRPC
// credentials and checks the certificates themselves. TLS is on by default:
// a binary without certificates refuses to start unless `tls = off` says that
// plaintext is meant (docs/security.md). Plain data: thread-compatible.
#pragma once

#include <string>

#include "lib/common/status.h"

namespace CLI {
class App;
}

namespace sluice {

struct TlsOptions {
  std::string mode = "on";  // "on" | "off"
  std::string cert;         // PEM: this process's certificate (chain)
  std::string key;          // PEM: its private key
  std::string ca;           // PEM: the cluster's CA, which signed every peer's certificate
  // Also check that a server's certificate names the host dialled (DNS or IP
  // SAN). Off by default: the CA and the peer's role are what is trusted
  // (docs/security.md).
  bool verify_hostname = false;

  bool enabled() const { return mode != "off"; }

  // Declares the options on `app`.
  void Register(CLI::App& app);
  // INVALID_ARGUMENT naming the option: an unknown mode, or TLS on without
  // the three files.
  [[nodiscard]] Status Validate() const;
};

}  // namespace sluice
