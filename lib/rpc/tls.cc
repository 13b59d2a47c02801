#include "lib/rpc/tls.h"

#include "lib/rpc/rpc.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "grpcpp/grpcpp.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "spdlog/spdlog.h"

namespace sluice::rpc {
namespace {

constexpr std::string_view kRolePrefix = "sluice:role=";
// A PEM file larger than this is not a certificate, key or CA bundle.
constexpr int64_t kMaxPemBytes = 1 << 20;
// How often gRPC looks at a daemon's live copies (TlsIdentity::Reload).
constexpr unsigned kWatchIntervalSeconds = 1;

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct StoreDeleter {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxDeleter {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct StackDeleter {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

// The last OpenSSL error, for a message.
std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM data";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Result<std::string> ReadFile(const std::string& path, std::string_view option) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(fmt::format("{}: cannot read {}: {}", option, path, std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string s = std::move(text).str();
  if (static_cast<int64_t>(s.size()) > kMaxPemBytes) {
    return absl::InvalidArgumentError(fmt::format("{}: {} is larger than {} bytes", option, path, kMaxPemBytes));
  }
  return s;
}

// Every certificate of a PEM text, in order.
Result<std::vector<X509Ptr>> ParseCertificates(const std::string& pem, const std::string& path,
                                               std::string_view option) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(x);
  ERR_clear_error();  // the end of the data
  if (certs.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}: {} holds no PEM certificate", option, path));
  }
  return certs;
}

std::string AsnTimeText(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

CertificateInfo Describe(X509* cert) {
  CertificateInfo info;
  char line[512];
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_oneline(name, line, sizeof line);
  info.subject = line;
  int n = X509_NAME_get_text_by_NID(name, NID_commonName, line, sizeof line);
  if (n > 0) info.common_name.assign(line, n);
  std::vector<std::string> uris;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    if (g->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = g->d.uniformResourceIdentifier;
    uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s));
  }
  GENERAL_NAMES_free(sans);
  info.roles = RolesFromUris(uris);
  info.not_after = AsnTimeText(X509_get0_notAfter(cert));
  int days = 0, seconds = 0;
  if (ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert)) == 1) {
    info.seconds_left = int64_t{days} * 86400 + seconds;
  }
  return info;
}

// Writes `text` to `path` through a temporary file and a rename, so that a
// reader sees the old file or the new one, never half of one.
Status WriteAtomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::FailedPreconditionError(fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int e = errno;
      ::close(fd);
      return absl::FailedPreconditionError(fmt::format("cannot write {}: {}", tmp, std::strerror(e)));
    }
    done += static_cast<size_t>(w);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::FailedPreconditionError(fmt::format("cannot rename {} to {}: {}", tmp, path, std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string HostOf(std::string_view target) {
  // "host:port", "[v6]:port", "dns:///host:port"
  if (size_t s = target.rfind('/'); s != std::string_view::npos) target.remove_prefix(s + 1);
  if (!target.empty() && target.front() == '[') {
    size_t close = target.find(']');
    return std::string(target.substr(1, close == std::string_view::npos ? target.size() - 1 : close - 1));
  }
  size_t colon = target.rfind(':');
  return std::string(colon == std::string_view::npos ? target : target.substr(0, colon));
}

// A client's check of the server it reached, after the TLS handshake has
// verified the chain: the certificate grants a server role, and (if asked)
// names the host dialled.
class ServerCertificateCheck final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit ServerCertificateCheck(bool verify_hostname) : verify_hostname_(verify_hostname) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/, grpc::Status* sync_status) override {
    std::vector<std::string> uris;
    for (const grpc::string_ref& u : request->uri_names()) uris.emplace_back(u.data(), u.size());
    std::vector<Role> roles = RolesFromUris(uris);
    bool server = false;
    for (Role r : roles) server = server || r == Role::kDriver || r == Role::kWorker;
    std::string cn(request->common_name().data(), request->common_name().size());
    if (!server) {
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  fmt::format("the server's certificate (CN={}, roles: {}) is not a driver's or a "
                                              "worker's",
                                              cn, RoleList(roles)));
      return true;
    }
    if (verify_hostname_) {
      std::string host = HostOf(std::string_view(request->target_name().data(), request->target_name().size()));
      bool named = false;
      for (const grpc::string_ref& d : request->dns_names()) named = named || host == std::string(d.data(), d.size());
      for (const grpc::string_ref& ip : request->ip_names()) named = named || host == std::string(ip.data(), ip.size());
      if (!named) {
        *sync_status = grpc::Status(
            grpc::StatusCode::UNAUTHENTICATED,
            fmt::format("the server's certificate (CN={}) does not name {} (tls-verify-hostname)", cn, host));
        return true;
      }
    }
    *sync_status = grpc::Status::OK;
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const bool verify_hostname_;
};

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kDriver:
      return "driver";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
    case Role::kViewer:
      return "viewer";
  }
  return "?";
}

std::optional<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kDriver, Role::kWorker, Role::kAdmin, Role::kViewer}) {
    if (name == RoleName(r)) return r;
  }
  return std::nullopt;
}

std::vector<Role> RolesFromUris(const std::vector<std::string>& uris) {
  std::vector<Role> roles;
  for (const std::string& uri : uris) {
    if (uri.compare(0, kRolePrefix.size(), kRolePrefix) != 0) continue;
    std::optional<Role> r = ParseRole(std::string_view(uri).substr(kRolePrefix.size()));
    if (r && std::find(roles.begin(), roles.end(), *r) == roles.end()) roles.push_back(*r);
  }
  return roles;
}

std::string RoleList(const std::vector<Role>& roles) {
  if (roles.empty()) return "none";
  std::string out;
  for (Role r : roles) out += std::string(out.empty() ? "" : ", ") + std::string(RoleName(r));
  return out;
}

namespace {

// The checks of CheckCertificateFiles on the files' contents, as read once:
// what is checked is what is used.
Result<CertificateInfo> CheckPem(const TlsOptions& options, const std::string& cert_pem, const std::string& key_pem,
                                 const std::string& ca_pem) {
  ASSIGN_OR_RETURN(std::vector<X509Ptr> chain, ParseCertificates(cert_pem, options.cert, "tls-cert"));
  ASSIGN_OR_RETURN(std::vector<X509Ptr> cas, ParseCertificates(ca_pem, options.ca, "tls-ca"));

  std::unique_ptr<BIO, BioDeleter> kbio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  std::unique_ptr<EVP_PKEY, KeyDeleter> key(PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        fmt::format("tls-key: {} holds no unencrypted PEM private key ({})", options.key, OpenSslError()));
  }
  if (X509_check_private_key(chain[0].get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        fmt::format("tls-key: {} is not the key of the certificate in {}", options.key, options.cert));
  }

  std::unique_ptr<X509_STORE, StoreDeleter> store(X509_STORE_new());
  for (const X509Ptr& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
  std::unique_ptr<STACK_OF(X509), StackDeleter> untrusted(sk_X509_new_null());
  for (size_t i = 1; i < chain.size(); ++i) {
    X509_up_ref(chain[i].get());
    sk_X509_push(untrusted.get(), chain[i].get());
  }
  std::unique_ptr<X509_STORE_CTX, StoreCtxDeleter> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), chain[0].get(), untrusted.get());
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return absl::InvalidArgumentError(fmt::format("tls-cert: {} is not valid under tls-ca {}: {}", options.cert,
                                                  options.ca, X509_verify_cert_error_string(err)));
  }
  struct stat st {};
  if (::stat(options.key.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    spdlog::warn("tls-key: {} may be read by other users (mode {:o}): chmod 600 it", options.key,
                 st.st_mode & 0777);
  }
  return Describe(chain[0].get());
}

}  // namespace

Result<CertificateInfo> CheckCertificateFiles(const TlsOptions& options) {
  ASSIGN_OR_RETURN(std::string cert_pem, ReadFile(options.cert, "tls-cert"));
  ASSIGN_OR_RETURN(std::string key_pem, ReadFile(options.key, "tls-key"));
  ASSIGN_OR_RETURN(std::string ca_pem, ReadFile(options.ca, "tls-ca"));
  return CheckPem(options, cert_pem, key_pem, ca_pem);
}

Result<TlsIdentity::Material> TlsIdentity::ReadChecked() const {
  Material m;
  ASSIGN_OR_RETURN(m.cert_pem, ReadFile(options_.cert, "tls-cert"));
  ASSIGN_OR_RETURN(m.key_pem, ReadFile(options_.key, "tls-key"));
  ASSIGN_OR_RETURN(m.ca_pem, ReadFile(options_.ca, "tls-ca"));
  ASSIGN_OR_RETURN(CertificateInfo info, CheckPem(options_, m.cert_pem, m.key_pem, m.ca_pem));
  if (required_ && std::find(info.roles.begin(), info.roles.end(), *required_) == info.roles.end()) {
    return absl::InvalidArgumentError(
        fmt::format("tls-cert: {} ({}) grants the roles {}; this process needs {} (a URI SAN {}{})",
                    options_.cert, info.subject, RoleList(info.roles), RoleName(*required_), kRolePrefix,
                    RoleName(*required_)));
  }
  m.info = std::move(info);
  return m;
}

Status TlsIdentity::Install(const Material& m) {
  // A new directory per installation, then one rename of the `current`
  // symlink: gRPC, reading current/key.pem and current/cert.pem one after the
  // other, sees the old pair or the new one (if the link moves between its
  // two reads, their modification times change under it and it reads again),
  // never a new key with an old certificate.
  const int generation = ++generation_;
  const std::string name = "gen-" + std::to_string(generation);
  const std::string dir = live_dir_ + "/" + name;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    return absl::FailedPreconditionError(fmt::format("cannot create {}: {}", dir, std::strerror(errno)));
  }
  RETURN_IF_ERROR(WriteAtomically(dir + "/key.pem", m.key_pem));
  RETURN_IF_ERROR(WriteAtomically(dir + "/cert.pem", m.cert_pem));
  RETURN_IF_ERROR(WriteAtomically(dir + "/ca.pem", m.ca_pem));
  const std::string link = live_dir_ + "/current";
  const std::string tmp = link + ".tmp";
  ::unlink(tmp.c_str());
  if (::symlink(name.c_str(), tmp.c_str()) != 0 || ::rename(tmp.c_str(), link.c_str()) != 0) {
    return absl::FailedPreconditionError(fmt::format("cannot point {} at {}: {}", link, dir, std::strerror(errno)));
  }
  // The generation before stays until the next one: gRPC may be reading it.
  for (const auto& e : std::filesystem::directory_iterator(live_dir_, ec)) {
    const std::string f = e.path().filename().string();
    if (f.rfind("gen-", 0) == 0 && f != name && f != "gen-" + std::to_string(generation - 1)) {
      std::filesystem::remove_all(e.path(), ec);
    }
  }
  return absl::OkStatus();
}

Result<std::shared_ptr<TlsIdentity>> TlsIdentity::Load(const TlsOptions& options, const std::string& live_dir,
                                                       std::optional<Role> required) {
  RETURN_IF_ERROR(options.Validate());
  std::shared_ptr<TlsIdentity> id(new TlsIdentity(options, live_dir, required));
  ASSIGN_OR_RETURN(Material m, id->ReadChecked());
  if (!live_dir.empty()) {
    if (::mkdir(live_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(fmt::format("cannot create {}: {}", live_dir, std::strerror(errno)));
    }
    if (::chmod(live_dir.c_str(), 0700) != 0) {
      return absl::FailedPreconditionError(fmt::format("cannot chmod 0700 {}: {}", live_dir, std::strerror(errno)));
    }
    // Copies of an earlier run (keys among them) are not kept.
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(live_dir, ec)) std::filesystem::remove_all(e.path(), ec);
    RETURN_IF_ERROR(id->Install(m));
    const std::string current = live_dir + "/current";
    id->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        current + "/key.pem", current + "/cert.pem", current + "/ca.pem", kWatchIntervalSeconds);
  } else {
    id->provider_ = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
        m.ca_pem, std::vector<grpc::experimental::IdentityKeyCertPair>{{m.key_pem, m.cert_pem}});
  }
  id->server_verifier_ =
      grpc::experimental::ExternalCertificateVerifier::Create<ServerCertificateCheck>(options.verify_hostname);
  if (m.info.seconds_left < 30 * 86400) {
    spdlog::warn("tls-cert: {} expires on {}", options.cert, m.info.not_after);
  }
  id->info_ = std::move(m.info);
  return id;
}

TlsIdentity::~TlsIdentity() = default;

Status TlsIdentity::Reload() {
  if (live_dir_.empty()) return absl::FailedPreconditionError("this identity was read once and does not reload");
  Result<Material> m = ReadChecked();
  if (!m.ok()) return m.status();
  RETURN_IF_ERROR(Install(*m));
  std::lock_guard<std::mutex> lock(mu_);
  info_ = std::move(m->info);
  spdlog::info("reload: TLS certificate {} (roles: {}, valid until {}) is used for new connections", info_.subject,
               RoleList(info_.roles), info_.not_after);
  return absl::OkStatus();
}

std::shared_ptr<grpc::ChannelCredentials> TlsIdentity::ChannelCredentials() const {
  grpc::experimental::TlsChannelCredentialsOptions o;
  o.set_certificate_provider(provider_);
  o.watch_root_certs();
  o.watch_identity_key_cert_pairs();
  o.set_verify_server_certs(true);
  o.set_certificate_verifier(server_verifier_);
  o.set_check_call_host(false);
  return grpc::experimental::TlsCredentials(o);
}

std::shared_ptr<grpc::ServerCredentials> TlsIdentity::ServerCredentials() const {
  grpc::experimental::TlsServerCredentialsOptions o(provider_);
  o.watch_root_certs();
  o.watch_identity_key_cert_pairs();
  o.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(o);
}

CertificateInfo TlsIdentity::info() const {
  std::lock_guard<std::mutex> lock(mu_);
  return info_;
}

Result<RpcOptions> DaemonRpcOptions(const DaemonOptions& daemon, Role role) {
  RpcOptions options;
  if (!daemon.tls.enabled()) {
    spdlog::warn("tls = off: every connection of this {} is plaintext and no caller is authenticated; "
                 "use it on a trusted network only",
                 RoleName(role));
    return options;
  }
  ASSIGN_OR_RETURN(options.tls, TlsIdentity::Load(daemon.tls, daemon.data_dir + "/tls", role));
  CertificateInfo info = options.tls->info();
  spdlog::info("mutual TLS: certificate {} (roles: {}, valid until {}), peers signed by {}", info.subject,
               RoleList(info.roles), info.not_after, daemon.tls.ca);
  return options;
}

}  // namespace sluice::rpc
