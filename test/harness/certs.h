// Certificates for the tests' clusters: one development CA and a certificate
// per role, made by scripts/gen-certs.sh (openssl) the first time a test
// process asks, in a temporary directory removed at exit.
//
// Part of sluice::test_harness. Every daemon a test starts gets TlsFlags of
// its kind ("driver", "worker"); sluicectl and the test's own calls use
// "client" (roles admin and driver: tests read the WAL too). "admin",
// "viewer" and "worker" certificates are there for authorization tests.
//
// Thread-safe (made once, under a static's initialisation).
#pragma once

#include <string>
#include <vector>

#include "lib/common/tls_options.h"
#include "lib/rpc/rpc.h"

namespace sluice::testing {

// ca.pem and NAME.pem / NAME.key for NAME in driver, worker, admin, viewer,
// client. Aborts the test process if they cannot be made.
const std::string& TestCertsDir();
// --tls-cert, --tls-key, --tls-ca of certificate `name`.
std::vector<std::string> TlsFlags(const std::string& name);
TlsOptions TestTls(const std::string& name);
// The test process's transport: mutual TLS as "client".
rpc::RpcOptions TestRpcOptions();

}  // namespace sluice::testing
