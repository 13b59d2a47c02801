#include "lib/common/kafka_properties.h"

#include <string>

namespace sluice {
namespace {

struct Refused {
  std::string_view key;
  std::string_view what;
};

constexpr Refused kRefused[] = {
    {"plugin.library.paths", "loads shared libraries"},
    {"sasl.kerberos.kinit.cmd", "runs a shell command"},
    {"ssl.engine.location", "loads an OpenSSL engine library"},
    {"ssl.providers", "loads OpenSSL providers"},
};

}  // namespace

Status CheckKafkaProperty(std::string_view key, std::string_view where) {
  for (const Refused& r : kRefused) {
    if (key == r.key) {
      return absl::InvalidArgumentError(fmt::format(
          "{}.{}: refused: it {} on the cluster's hosts, as the service user; user code comes from the "
          "workers' plugin-dirs only (docs/security.md)",
          where, std::string(key), std::string(r.what)));
    }
  }
  return absl::OkStatus();
}

}  // namespace sluice
