#include "test/harness/certs.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>

#include "lib/rpc/tls.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"

namespace sluice::testing {
namespace {

std::string MakeCerts() {
  char templ[] = "/tmp/sluice-test-certs-XXXXXX";
  if (::mkdtemp(templ) == nullptr) {
    std::cerr << "test certificates: cannot make a temporary directory\n";
    std::abort();
  }
  std::string dir = templ;
  Result<int> code = RunCommand({std::string(kSourceDir) + "/scripts/gen-certs.sh", "-d", dir, "driver:driver",
                                 "worker:worker", "admin:admin", "viewer:viewer", "client:admin+driver"},
                                dir + "/gen-certs.log", std::chrono::seconds(60));
  if (!code.ok() || *code != 0) {
    std::cerr << "test certificates: scripts/gen-certs.sh failed; see " << dir << "/gen-certs.log\n";
    std::abort();
  }
  static std::string to_remove;
  to_remove = dir;
  std::atexit([] {
    std::error_code ec;
    std::filesystem::remove_all(to_remove, ec);
  });
  return dir;
}

}  // namespace

const std::string& TestCertsDir() {
  static const std::string dir = [] {
    const char* given = std::getenv("SLUICE_TEST_CERTS");
    return given != nullptr && *given != '\0' ? std::string(given) : MakeCerts();
  }();
  return dir;
}

bool TestTlsOn() {
  const char* v = std::getenv("SLUICE_TEST_TLS");
  return v == nullptr || std::string(v) != "off";
}

std::vector<std::string> TlsFlags(const std::string& name) {
  if (!TestTlsOn()) return {"--tls", "off"};
  TlsOptions t = TestTls(name);
  return {"--tls-cert", t.cert, "--tls-key", t.key, "--tls-ca", t.ca};
}

TlsOptions TestTls(const std::string& name) {
  const std::string& dir = TestCertsDir();
  TlsOptions t;
  t.cert = dir + "/" + name + ".pem";
  t.key = dir + "/" + name + ".key";
  t.ca = dir + "/ca.pem";
  return t;
}

rpc::RpcOptions TestRpcOptions(const std::string& name) {
  if (!TestTlsOn()) return {};
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<rpc::TlsIdentity>> identities;
  std::lock_guard<std::mutex> lock(mu);
  std::shared_ptr<rpc::TlsIdentity>& identity = identities[name];
  if (identity == nullptr) {
    Result<std::shared_ptr<rpc::TlsIdentity>> id = rpc::TlsIdentity::Load(TestTls(name), "", std::nullopt);
    if (!id.ok()) {
      std::cerr << "test certificates: " << id.status() << "\n";
      std::abort();
    }
    identity = *id;
  }
  rpc::RpcOptions options;
  options.tls = identity;
  return options;
}

}  // namespace sluice::testing
