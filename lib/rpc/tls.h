// TLS of Sluice's connections: the process's identity (certificate, key, the
// cluster's CA) as gRPC credentials, the roles a certificate grants, and the
// checks that turn a wrong file into a one-line error at start.
//
// Module sluice::rpc owns it. Every connection is mutual TLS: a server asks
// each client for a certificate signed by the cluster's CA, a client checks
// that the server's is signed by it and grants a server role (driver or
// worker). A certificate's roles are URI SANs `sluice:role=NAME`, NAME one of
// driver, worker, admin, viewer (auth.h says who may call what).
//
// A daemon's identity is reloadable: its files are read once and checked,
// and exactly those bytes are copied into a new directory under its own
// (<data-dir>/tls/gen-N, then the symlink `current` moved to it) that gRPC
// watches every second. So Reload() (SIGHUP) changes what new connections
// present without a restart, and a broken or half-written file is refused
// without ever being used.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/common/daemon_options.h"
#include "lib/common/status.h"
#include "lib/common/tls_options.h"

namespace grpc {
class ChannelCredentials;
class ServerCredentials;
namespace experimental {
class CertificateProviderInterface;
class CertificateVerifier;
}  // namespace experimental
}  // namespace grpc

namespace sluice::rpc {

enum class Role { kDriver, kWorker, kAdmin, kViewer };

std::string_view RoleName(Role role);
std::optional<Role> ParseRole(std::string_view name);
// The roles granted by a certificate's URI SANs ("sluice:role=worker"); other
// URIs are ignored.
std::vector<Role> RolesFromUris(const std::vector<std::string>& uris);
// "driver, admin"; "none" if empty.
std::string RoleList(const std::vector<Role>& roles);

struct CertificateInfo {
  std::string subject;      // e.g. "CN=worker-1"
  std::string common_name;  // "worker-1"
  std::vector<Role> roles;
  std::string not_after;    // "2027-12-01 00:57:31 UTC"
  int64_t seconds_left = 0;
};

// Reads and checks the files `options` names: each parses as PEM, the key is
// the certificate's, the certificate chains to tls-ca and is valid now.
// INVALID_ARGUMENT naming the option, the file and what is wrong.
[[nodiscard]] Result<CertificateInfo> CheckCertificateFiles(const TlsOptions& options);

class TlsIdentity {
 public:
  // Loads and checks `options`' files; the certificate must grant `required`
  // if given (a driver's must say driver). With `live_dir`, copies are kept
  // there (created 0700) and watched, for Reload(); without it (sluicectl,
  // tests) the files are read once. INVALID_ARGUMENT if a file is wrong.
  [[nodiscard]] static Result<std::shared_ptr<TlsIdentity>> Load(const TlsOptions& options,
                                                                 const std::string& live_dir,
                                                                 std::optional<Role> required);
  ~TlsIdentity();

  // Re-reads and checks the configured files; if good, installs them (new
  // handshakes use them within about a second) and logs the new certificate.
  // On error keeps the running ones and returns why.
  [[nodiscard]] Status Reload();

  std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials() const;
  std::shared_ptr<grpc::ServerCredentials> ServerCredentials() const;
  CertificateInfo info() const;

 private:
  TlsIdentity(TlsOptions options, std::string live_dir, std::optional<Role> required)
      : options_(std::move(options)), live_dir_(std::move(live_dir)), required_(required) {}
  // Checks the files and returns what they hold.
  struct Material {
    CertificateInfo info;
    std::string cert_pem, key_pem, ca_pem;
  };
  // Reads each file once and checks what it read.
  Result<Material> ReadChecked() const;
  // Writes `material` to live_dir_/gen-N/ and points live_dir_/current at it.
  Status Install(const Material& material);

  const TlsOptions options_;
  const std::string live_dir_;
  const std::optional<Role> required_;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider_;
  std::shared_ptr<grpc::experimental::CertificateVerifier> server_verifier_;
  int generation_ = 0;  // of the copies in live_dir_; Load, then Reload's thread
  mutable std::mutex mu_;
  CertificateInfo info_;  // guarded by mu_
};

struct RpcOptions;

// A daemon's transport: with TLS on, its identity from `daemon.tls` (its
// certificate must grant `role`), kept live under <data-dir>/tls for
// Reload(); with `tls = off`, plaintext, with a warning in the log.
[[nodiscard]] Result<RpcOptions> DaemonRpcOptions(const DaemonOptions& daemon, Role role);

}  // namespace sluice::rpc
