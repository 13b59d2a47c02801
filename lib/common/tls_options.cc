#include "lib/common/tls_options.h"

#include "CLI/CLI.hpp"
#include "fmt/format.h"

namespace sluice {

void TlsOptions::Register(CLI::App& app) {
  app.add_option("--tls", mode,
                 "on: mutual TLS on every connection (needs tls-cert, tls-key, tls-ca); off: plaintext, "
                 "no authentication (a trusted network only)")
      ->capture_default_str();
  app.add_option("--tls-cert", cert, "PEM certificate of this process, signed by tls-ca, with its role "
                                     "as a URI SAN sluice:role=ROLE");
  app.add_option("--tls-key", key, "PEM private key of tls-cert (keep it mode 0600)");
  app.add_option("--tls-ca", ca, "PEM certificate of the cluster's CA: peers must be signed by it");
  app.add_flag("--tls-verify-hostname", verify_hostname,
               "Also check that a server's certificate names the host dialled (DNS or IP SAN)");
}

Status TlsOptions::Validate() const {
  if (mode != "on" && mode != "off") {
    return absl::InvalidArgumentError(fmt::format("tls: '{}' is neither on nor off", mode));
  }
  if (!enabled()) return absl::OkStatus();
  std::string missing;
  for (const auto& [name, value] : {std::pair<const char*, const std::string&>{"tls-cert", cert},
                                    {"tls-key", key}, {"tls-ca", ca}}) {
    if (value.empty()) missing += std::string(missing.empty() ? "" : ", ") + name;
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(fmt::format(
        "tls is on (the default) but {} {} not set: give the certificate, key and CA "
        "(scripts/gen-certs.sh makes a development set), or set tls = off for plaintext",
        missing, missing.find(',') == std::string::npos ? "is" : "are"));
  }
  return absl::OkStatus();
}

}  // namespace sluice
