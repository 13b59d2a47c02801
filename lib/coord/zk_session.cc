#include "lib/coord/zk_session.h"

#include <zookeeper/zookeeper.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <openssl/evp.h>

#include <cstring>

#include "spdlog/spdlog.h"

namespace sluice::coord {
namespace {

void LogFromZooKeeper(const char* message) {
  // The client logs each failed reconnect attempt (many a second during an
  // outage); the session's own state changes are logged at info by
  // OnSessionState, so the client's detail goes to debug.
  spdlog::debug("zookeeper client: {}", message);
}

const char* StateName(int state) {
  if (state == ZOO_CONNECTED_STATE) return "connected";
  if (state == ZOO_CONNECTING_STATE) return "connecting";
  if (state == ZOO_ASSOCIATING_STATE) return "associating";
  if (state == ZOO_EXPIRED_SESSION_STATE) return "expired";
  if (state == ZOO_AUTH_FAILED_STATE) return "auth failed";
  if (state == ZOO_READONLY_STATE) return "read-only";
  return "not connected";
}

// Sluice's ACL for credentials whose digest id is `id`; the Id strings
// point into `id` and the literals, which ZooKeeper only reads.
struct SluiceAcl {
  SluiceAcl(const std::string& id, ZkSession::Access access) {
    const int world = access == ZkSession::Access::kOwned ? ZOO_PERM_READ : ZOO_PERM_READ | ZOO_PERM_CREATE;
    entries[0] = {ZOO_PERM_ALL, {const_cast<char*>("digest"), const_cast<char*>(id.c_str())}};
    entries[1] = {world, {const_cast<char*>("world"), const_cast<char*>("anyone")}};
  }
  struct ACL entries[2];
  struct ACL_vector vector = {2, entries};
};

bool IsOpenAcl(const struct ACL_vector& acl) {
  for (int i = 0; i < acl.count; ++i) {
    const struct ACL& a = acl.data[i];
    if (std::strcmp(a.id.scheme, "world") == 0 && std::strcmp(a.id.id, "anyone") == 0 &&
        (a.perms & (ZOO_PERM_WRITE | ZOO_PERM_DELETE | ZOO_PERM_ADMIN)) != 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string ZkDigestId(const std::string& user_password) {
  const size_t colon = user_password.find(':');
  if (colon == std::string::npos) return "";
  unsigned char sha1[EVP_MAX_MD_SIZE];
  unsigned int sha1_len = 0;
  if (EVP_Digest(user_password.data(), user_password.size(), sha1, &sha1_len, EVP_sha1(), nullptr) != 1) {
    return "";
  }
  unsigned char base64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(base64, sha1, static_cast<int>(sha1_len));
  return user_password.substr(0, colon + 1) + std::string(reinterpret_cast<char*>(base64), n);
}

Status ZkStatus(int rc, const std::string& op, const std::string& path) {
  if (rc == ZOK) return absl::OkStatus();
  std::string msg = fmt::format("zookeeper {} {}: {}", op, path, zerror(rc));
  switch (rc) {
    case ZNONODE:
      return absl::NotFoundError(msg);
    case ZNODEEXISTS:
      return absl::AlreadyExistsError(msg);
    case ZBADVERSION:
      return absl::AbortedError(msg);
    case ZNOTEMPTY:
      return absl::FailedPreconditionError(msg);
    case ZCONNECTIONLOSS:
    case ZOPERATIONTIMEOUT:
    case ZSESSIONEXPIRED:
    case ZINVALIDSTATE:
    case ZCLOSING:
    case ZSESSIONMOVED:
      return absl::UnavailableError(msg);
    case ZNOAUTH:
    case ZAUTHFAILED:
      return absl::PermissionDeniedError(msg);
    case ZBADARGUMENTS:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}

ZkSession::ZkSession(Options options, Clock* clock)
    : options_(std::move(options)), clock_(clock), digest_id_(ZkDigestId(options_.auth)) {}

Status ZkSession::Check(int rc, const std::string& op, const std::string& path) const {
  if (rc != ZNOAUTH) return ZkStatus(rc, op, path);
  return absl::PermissionDeniedError(fmt::format(
      "ZooKeeper refused to {} {} (NOAUTH): {}", op, path,
      has_credentials() ? "the credentials in zk-auth-file are not those of the cluster"
                        : "the cluster's znodes are protected; set zk-auth-file to its credentials"));
}

Result<std::unique_ptr<ZkSession>> ZkSession::Connect(const Options& options, Clock* clock) {
  zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
  std::unique_ptr<ZkSession> session(new ZkSession(options, clock));
  {
    std::unique_lock<std::shared_mutex> lock(session->handle_mu_);
    RETURN_IF_ERROR(session->OpenHandle());
  }
  auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
  while (!session->connected()) {
    if (session->auth_refused_.load()) {
      return absl::PermissionDeniedError(
          fmt::format("ZooKeeper at {} refused the credentials in zk-auth-file", options.hosts));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::UnavailableError(fmt::format("cannot reach ZooKeeper at {} within {} ms",
                                                options.hosts, options.connect_timeout.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return session;
}

Status ZkSession::OpenHandle() {
  zh_ = zookeeper_init2(options_.hosts.c_str(), &ZkSession::GlobalWatcher,
                        options_.session_timeout_ms, nullptr, this, 0, &LogFromZooKeeper);
  if (zh_ == nullptr) {
    return absl::InvalidArgumentError(
        fmt::format("cannot use ZooKeeper hosts '{}': {}", options_.hosts, std::strerror(errno)));
  }
  auth_ok_ = false;
  auth_refused_ = false;
  if (has_credentials()) {
    // Sent as soon as the handle connects, before any request; answered on
    // the client's completion thread.
    int rc = zoo_add_auth(zh_, "digest", options_.auth.data(), static_cast<int>(options_.auth.size()),
                          &ZkSession::AuthAnswered, this);
    if (rc != ZOK) return ZkStatus(rc, "authenticate as", options_.auth.substr(0, options_.auth.find(':')));
  }
  return absl::OkStatus();
}

// Runs on a ZooKeeper client thread.
void ZkSession::AuthAnswered(int rc, const void* ctx) {
  auto* self = static_cast<ZkSession*>(const_cast<void*>(ctx));
  self->Post([self, rc] { self->OnAuthAnswered(rc); });
}

void ZkSession::OnAuthAnswered(int rc) {
  if (rc != ZOK) {
    auth_refused_ = true;
    connected_ = false;
    spdlog::error("zookeeper session {}: ZooKeeper refused the credentials in zk-auth-file ({}); this session "
                  "is not used",
                  options_.hosts, zerror(rc));
    return;
  }
  spdlog::info("zookeeper session {}: authenticated as {}", options_.hosts,
               options_.auth.substr(0, options_.auth.find(':')));
  auth_ok_ = true;
  if (connected_pending_auth_) {
    connected_pending_auth_ = false;
    OnConnected();
  }
}

ZkSession::~ZkSession() { Close(); }

void ZkSession::Close() {
  std::unique_lock<std::shared_mutex> lock(handle_mu_);
  if (closed_) return;
  closed_ = true;
  connected_ = false;
  if (zh_ != nullptr) zookeeper_close(zh_);
  zh_ = nullptr;
}

int64_t ZkSession::session_id() const {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return 0;
  const clientid_t* id = zoo_client_id(zh_);
  return id != nullptr ? id->client_id : 0;
}

std::string ZkSession::connected_server() const {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr || !connected_.load()) return "";
  struct sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  if (zookeeper_get_connected_host(zh_, reinterpret_cast<struct sockaddr*>(&addr), &len) == nullptr) return "";
  char ip[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const struct sockaddr_in*>(&addr);
    if (inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip)) == nullptr) return "";
    return std::string(ip) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(&addr);
    if (inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip)) == nullptr) return "";
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "";
}

int ZkSession::AddListener(Listener listener) {
  std::lock_guard<std::mutex> lock(listener_mu_);
  int id = next_listener_id_++;
  listeners_[id] = std::move(listener);
  return id;
}

void ZkSession::RemoveListener(int id) {
  std::lock_guard<std::mutex> lock(listener_mu_);
  listeners_.erase(id);
}

// Runs on a ZooKeeper client thread: record, then hand over to the event thread.
void ZkSession::GlobalWatcher(zhandle_t* /*zh*/, int type, int state, const char* /*path*/,
                              void* ctx) {
  if (type != ZOO_SESSION_EVENT) return;
  auto* self = static_cast<ZkSession*>(ctx);
  // With credentials, a new handle is connected once they are answered
  // (OnAuthAnswered); a reconnected one resends them first thing.
  self->connected_ = state == ZOO_CONNECTED_STATE && (!self->has_credentials() || self->auth_ok_.load());
  self->Post([self, state] { self->OnSessionState(state); });
}

void ZkSession::OnSessionState(int state) {
  spdlog::info("zookeeper session {}: {}", options_.hosts, StateName(state));
  if (state == ZOO_CONNECTED_STATE) {
    if (has_credentials() && !auth_ok_.load()) {
      connected_pending_auth_ = !auth_refused_.load();  // reported once they are answered
      return;
    }
    OnConnected();
  } else if (state == ZOO_CONNECTING_STATE || state == ZOO_ASSOCIATING_STATE) {
    connected_pending_auth_ = false;
    Notify(Event::kDisconnected);
  } else if (state == ZOO_EXPIRED_SESSION_STATE) {
    connected_pending_auth_ = false;
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      watches_.clear();  // they belonged to the dead session
    }
    Notify(Event::kExpired);
    std::unique_lock<std::shared_mutex> lock(handle_mu_);
    if (closed_) return;
    zookeeper_close(zh_);
    Status st = OpenHandle();  // the same hosts parsed before: cannot fail
    if (!st.ok()) spdlog::error("zookeeper: cannot open a new session: {}", st.ToString());
  } else if (state == ZOO_AUTH_FAILED_STATE) {
    auth_refused_ = true;
    connected_pending_auth_ = false;
    spdlog::error("zookeeper session {}: authentication failed: ZooKeeper refused the credentials in "
                  "zk-auth-file; this session is not used",
                  options_.hosts);
  }
}

void ZkSession::OnConnected() {
  if (has_credentials()) {
    // The handle may have lost its connection while its credentials were
    // being answered: the next CONNECTED event reports it then.
    connected_ = true;
    std::shared_lock<std::shared_mutex> lock(handle_mu_);
    if (zh_ == nullptr || zoo_state(zh_) != ZOO_CONNECTED_STATE) {
      connected_ = false;
      return;
    }
  }
  int64_t id = session_id();
  int64_t previous = last_session_id_.exchange(id);
  Notify(previous == id ? Event::kReconnected : Event::kConnected);
}

void ZkSession::Notify(Event event) {
  std::vector<Listener> listeners;
  {
    std::lock_guard<std::mutex> lock(listener_mu_);
    for (auto& [id, l] : listeners_) listeners.push_back(l);
  }
  for (Listener& l : listeners) l(event);
}

void* ZkSession::RegisterWatch(Watch watch) {
  if (!watch) return nullptr;
  std::lock_guard<std::mutex> lock(watch_mu_);
  uint64_t id = next_watch_id_++;
  watches_[id] = std::move(watch);
  return reinterpret_cast<void*>(static_cast<uintptr_t>(id));
}

// Runs on a ZooKeeper client thread. The context is a watch id, never a
// pointer, so a watch outliving its owner is harmless.
void ZkSession::PathWatcher(zhandle_t* zh, int type, int /*state*/, const char* /*path*/,
                            void* ctx) {
  if (type == ZOO_SESSION_EVENT) return;  // connection news reach listeners
  auto* self = static_cast<ZkSession*>(const_cast<void*>(zoo_get_context(zh)));
  uint64_t id = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ctx));
  Watch watch;
  {
    std::lock_guard<std::mutex> lock(self->watch_mu_);
    auto it = self->watches_.find(id);
    if (it == self->watches_.end()) return;
    watch = std::move(it->second);
    self->watches_.erase(it);
  }
  self->Post(std::move(watch));
}

Result<std::string> ZkSession::Create(const std::string& path, const std::string& data, int flags,
                                      Access access) {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "create", path);
  std::vector<char> created(path.size() + 64);
  SluiceAcl acl(digest_id_, access);
  int rc = zoo_create(zh_, path.c_str(), data.data(), static_cast<int>(data.size()),
                      has_credentials() ? &acl.vector : &ZOO_OPEN_ACL_UNSAFE, flags, created.data(),
                      static_cast<int>(created.size()));
  if (rc != ZOK) return Check(rc, "create", path);
  return std::string(created.data());
}

Status ZkSession::EnsurePath(const std::string& path, const std::string& root) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    const std::string part = path.substr(0, pos);
    const bool shared = pos < root.size() && root[pos] == '/';
    // Look first: creating under a parent we may not write is NOAUTH even
    // when the znode is there, and a reader (sluicectl) may not write.
    Status there = Exists(part);
    if (there.ok()) {
      if (!shared) RETURN_IF_ERROR(Secure(part));
      continue;
    }
    if (!absl::IsNotFound(there)) return there;
    Result<std::string> r = Create(part, "", ZOO_PERSISTENT, shared ? Access::kShared : Access::kOwned);
    if (!r.ok() && r.status().code() != absl::StatusCode::kAlreadyExists) return r.status();
  }
  return absl::OkStatus();
}

Status ZkSession::Secure(const std::string& path) {
  if (!has_credentials()) return absl::OkStatus();
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "get the ACL of", path);
  struct ACL_vector acl {};
  struct Stat stat {};
  int rc = zoo_get_acl(zh_, path.c_str(), &acl, &stat);
  if (rc == ZNONODE) return absl::OkStatus();
  if (rc != ZOK) return Check(rc, "get the ACL of", path);
  const bool open = IsOpenAcl(acl);
  deallocate_ACL_vector(&acl);
  if (!open) return absl::OkStatus();
  SluiceAcl ours(digest_id_, Access::kOwned);
  rc = zoo_set_acl(zh_, path.c_str(), stat.aversion, &ours.vector);
  if (rc == ZBADVERSION) return absl::OkStatus();  // another process secured it meanwhile
  if (rc != ZOK) return Check(rc, "set the ACL of", path);
  spdlog::warn("zookeeper: {} was world-writable (made before the cluster had zk-auth-file); it now has Sluice's "
               "ACL: digest {} all, anyone read",
               path, options_.auth.substr(0, options_.auth.find(':')));
  return absl::OkStatus();
}

Result<ZkSession::Node> ZkSession::Get(const std::string& path, Watch watch) {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "get", path);
  std::vector<char> buf(1 << 16);
  int len = static_cast<int>(buf.size());
  struct Stat stat {};
  void* ctx = RegisterWatch(std::move(watch));
  int rc = zoo_wget(zh_, path.c_str(), ctx ? &ZkSession::PathWatcher : nullptr, ctx, buf.data(),
                    &len, &stat);
  if (rc != ZOK) return Check(rc, "get", path);
  return Node{std::string(buf.data(), len < 0 ? 0 : len), stat.version, stat.ephemeralOwner};
}

Result<std::vector<std::string>> ZkSession::GetChildren(const std::string& path, Watch watch) {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "get children", path);
  struct String_vector children {};
  void* ctx = RegisterWatch(std::move(watch));
  int rc = zoo_wget_children(zh_, path.c_str(), ctx ? &ZkSession::PathWatcher : nullptr, ctx,
                             &children);
  if (rc != ZOK) return Check(rc, "get children", path);
  std::vector<std::string> out(children.data, children.data + children.count);
  deallocate_String_vector(&children);
  return out;
}

Status ZkSession::Exists(const std::string& path, Watch watch) {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "exists", path);
  struct Stat stat {};
  void* ctx = RegisterWatch(std::move(watch));
  int rc = zoo_wexists(zh_, path.c_str(), ctx ? &ZkSession::PathWatcher : nullptr, ctx, &stat);
  return Check(rc, "exists", path);
}

Status ZkSession::Set(const std::string& path, const std::string& data, int version) {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "set", path);
  return Check(zoo_set(zh_, path.c_str(), data.data(), static_cast<int>(data.size()), version), "set", path);
}

Status ZkSession::Delete(const std::string& path, int version) {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "delete", path);
  return Check(zoo_delete(zh_, path.c_str(), version), "delete", path);
}

}  // namespace sluice::coord
