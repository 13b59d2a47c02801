#include "lib/coord/zk_session.h"

#include <zookeeper/zookeeper.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

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

}  // namespace

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

ZkSession::ZkSession(Options options, Clock* clock) : options_(std::move(options)), clock_(clock) {}

Result<std::unique_ptr<ZkSession>> ZkSession::Connect(const Options& options, Clock* clock) {
  zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
  std::unique_ptr<ZkSession> session(new ZkSession(options, clock));
  {
    std::unique_lock<std::shared_mutex> lock(session->handle_mu_);
    RETURN_IF_ERROR(session->OpenHandle());
  }
  auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
  while (!session->connected()) {
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
  return absl::OkStatus();
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
  self->connected_ = state == ZOO_CONNECTED_STATE;
  self->Post([self, state] { self->OnSessionState(state); });
}

void ZkSession::OnSessionState(int state) {
  spdlog::info("zookeeper session {}: {}", options_.hosts, StateName(state));
  if (state == ZOO_CONNECTED_STATE) {
    int64_t id = session_id();
    int64_t previous = last_session_id_.exchange(id);
    Notify(previous == id ? Event::kReconnected : Event::kConnected);
  } else if (state == ZOO_CONNECTING_STATE || state == ZOO_ASSOCIATING_STATE) {
    Notify(Event::kDisconnected);
  } else if (state == ZOO_EXPIRED_SESSION_STATE) {
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
    spdlog::error("zookeeper session {}: authentication failed", options_.hosts);
  }
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

Result<std::string> ZkSession::Create(const std::string& path, const std::string& data, int flags) {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "create", path);
  std::vector<char> created(path.size() + 64);
  int rc = zoo_create(zh_, path.c_str(), data.data(), static_cast<int>(data.size()),
                      &ZOO_OPEN_ACL_UNSAFE, flags, created.data(), static_cast<int>(created.size()));
  if (rc != ZOK) return ZkStatus(rc, "create", path);
  return std::string(created.data());
}

Status ZkSession::EnsurePath(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    Result<std::string> r = Create(path.substr(0, pos), "", ZOO_PERSISTENT);
    if (!r.ok() && r.status().code() != absl::StatusCode::kAlreadyExists) return r.status();
  }
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
  if (rc != ZOK) return ZkStatus(rc, "get", path);
  return Node{std::string(buf.data(), len < 0 ? 0 : len), stat.version, stat.ephemeralOwner};
}

Result<std::vector<std::string>> ZkSession::GetChildren(const std::string& path, Watch watch) {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "get children", path);
  struct String_vector children {};
  void* ctx = RegisterWatch(std::move(watch));
  int rc = zoo_wget_children(zh_, path.c_str(), ctx ? &ZkSession::PathWatcher : nullptr, ctx,
                             &children);
  if (rc != ZOK) return ZkStatus(rc, "get children", path);
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
  return ZkStatus(rc, "exists", path);
}

Status ZkSession::Set(const std::string& path, const std::string& data, int version) {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "set", path);
  return ZkStatus(zoo_set(zh_, path.c_str(), data.data(), static_cast<int>(data.size()), version),
                  "set", path);
}

Status ZkSession::Delete(const std::string& path, int version) {
  std::shared_lock<std::shared_mutex> lock(handle_mu_);
  if (zh_ == nullptr) return ZkStatus(ZCLOSING, "delete", path);
  return ZkStatus(zoo_delete(zh_, path.c_str(), version), "delete", path);
}

}  // namespace sluice::coord
