// Certificates for the tests' clusters: one development CA and a certificate
// per role, made by scripts/gen-certs.sh (openssl) the first time a test
// process asks, in a temporary directory removed at exit.
//
// Part of sluice::test_harness. Every daemon a test starts gets TlsFlags of
// its kind ("driver", "worker"); sluicectl runs with "admin", as an operator
// would, and the test's own calls use "client" (roles admin and driver:
// tests read the WAL too). "viewer" is there for authorization tests.
//
// With SLUICE_TEST_TLS=off in the environment (read at each call), TlsFlags
// is `--tls off` and TestRpcOptions plaintext: a benchmark measures TLS's
// cost that way.
//
// Thread-safe (made once, under a static's initialisation).
#pragma once

#include <string>
#include <vector>

#include "lib/common/tls_options.h"
#include "lib/rpc/rpc.h"

namespace sluice::testing {

// ca.pem and NAME.pem / NAME.key for NAME in driver, worker, admin, viewer,
// client. $SLUICE_TEST_CERTS names a directory that has them already
// (scripts/demo.sh makes its own); else they are made here. Aborts the test
// process if they cannot be made.
const std::string& TestCertsDir();
// False if SLUICE_TEST_TLS=off.
bool TestTlsOn();
// --tls-cert, --tls-key, --tls-ca of certificate `name` (`--tls off` if not TestTlsOn()).
std::vector<std::string> TlsFlags(const std::string& name);
TlsOptions TestTls(const std::string& name);
// The test process's transport: mutual TLS as `name` ("client" by default;
// "worker" to play a worker to a driver, say).
rpc::RpcOptions TestRpcOptions(const std::string& name = "client");

}  // namespace sluice::testing
