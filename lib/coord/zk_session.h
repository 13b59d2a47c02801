// ZkSession: a ZooKeeper session that survives its own expiry, plus the
// thread on which every coordination callback runs.
//
// Module sluice::coord owns it. It wraps the ZooKeeper C client
// (zookeeper_mt) and is shared by ZkLeaderElector, ZkLeaderDetector and
// ZkMembership, which receive it in their constructors.
//
//   CONNECTING --connected--> CONNECTED --connection lost--> CONNECTING
//       ^                                                        |
//       |                     (server expired the session)  expired
//       +---------- new handle, new session <---- EXPIRED <------+
//
// Listeners hear kConnected (a new session: ephemeral nodes and watches are
// gone and must be made again), kReconnected (the same session is back),
// kDisconnected and kExpired. The client library notices a silent server
// after about 2/3 of the session timeout, before the server can expire the
// session: that is the moment a leader must stop acting (docs/design.md, rule 5).
//
// With credentials (Options::auth), every new handle presents them
// (zoo_add_auth, scheme digest) and the session counts as connected only once
// ZooKeeper has answered; every znode it creates then carries Sluice's ACL
// (digest:<user>:<ZkDigestId> all, world:anyone read; Access below), and
// persistent ones found with the open ACL are given it (Secure).
// Without, znodes are created world-writable, as ZooKeeper's default.
//
// Callbacks (listeners, watches, Post) run one at a time on the session's own
// event thread, never on the ZooKeeper client's threads, so they may call the
// synchronous operations below (which would deadlock on the client's thread).
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/serial_executor.h"
#include "lib/common/status.h"

typedef struct _zhandle zhandle_t;

namespace sluice::coord {

class ZkSession {
 public:
  struct Options {
    std::string hosts;  // "host:port,host:port"
    int session_timeout_ms = 10'000;
    std::chrono::milliseconds connect_timeout{15'000};
    std::string auth;  // "user:password" (digest); empty: none, open ACLs
  };
  // Who may do what to a znode created with credentials. kOwned: those
  // credentials everything, anyone READ. kShared (a parent other clusters
  // may create under, above a cluster's root): anyone READ and CREATE too.
  enum class Access { kOwned, kShared };
  enum class Event { kConnected, kReconnected, kDisconnected, kExpired };
  using Listener = std::function<void(Event)>;
  using Watch = std::function<void()>;

  struct Node {
    std::string data;
    int32_t version = 0;
    int64_t ephemeral_owner = 0;  // session id of its owner, 0 if persistent
  };

  // Connects and waits for the first session (and, with credentials, for
  // ZooKeeper's answer to them). INVALID_ARGUMENT for a malformed host list;
  // UNAVAILABLE if no server answers in time; PERMISSION_DENIED if ZooKeeper
  // refuses the credentials.
  [[nodiscard]] static Result<std::unique_ptr<ZkSession>> Connect(const Options& options,
                                                                  Clock* clock);
  ~ZkSession();

  // Ends the session now: its ephemeral nodes vanish at once. Operations
  // fail with UNAVAILABLE afterwards. Idempotent.
  void Close();

  int AddListener(Listener listener);
  void RemoveListener(int id);
  // Runs `fn` on the event thread, now or after `delay`.
  void Post(std::function<void()> fn) { executor_.Post(std::move(fn)); }
  void PostAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
    executor_.PostAfter(delay, std::move(fn));
  }

  // Synchronous operations. Errors: NOT_FOUND (no node), ALREADY_EXISTS,
  // ABORTED (version mismatch), FAILED_PRECONDITION (not empty),
  // UNAVAILABLE (connection loss, expired or closed session),
  // PERMISSION_DENIED (NOAUTH: the znode's ACL does not let us; the message
  // says which credentials to check).
  // A watch fires once, on the event thread, when the node (or its children)
  // changes; a session expiry drops every watch without firing it.
  [[nodiscard]] Result<std::string> Create(const std::string& path, const std::string& data,
                                           int flags, Access access = Access::kOwned);
  // Creates `path` and its missing parents; those above `root` (its proper
  // ancestors) are kShared, the rest kOwned. Existing kOwned ones are
  // Secure()d.
  [[nodiscard]] Status EnsurePath(const std::string& path, const std::string& root = "");
  // With credentials: gives an existing znode that has the open ACL
  // (world:anyone ALL, e.g. made before the cluster had credentials)
  // Sluice's ACL, and logs it. OK if absent, already secured or without
  // credentials.
  [[nodiscard]] Status Secure(const std::string& path);
  [[nodiscard]] Result<Node> Get(const std::string& path, Watch watch = nullptr);
  [[nodiscard]] Result<std::vector<std::string>> GetChildren(const std::string& path,
                                                             Watch watch = nullptr);
  // NOT_FOUND if absent (the watch then fires when it is created).
  [[nodiscard]] Status Exists(const std::string& path, Watch watch = nullptr);
  [[nodiscard]] Status Set(const std::string& path, const std::string& data, int version);
  [[nodiscard]] Status Delete(const std::string& path, int version = -1);

  bool connected() const { return connected_.load(); }
  bool has_credentials() const { return !options_.auth.empty(); }
  int64_t session_id() const;
  // "ip:port" of the server the session is connected to now ("[ip6]:port");
  // "" while not connected.
  std::string connected_server() const;
  int session_timeout_ms() const { return options_.session_timeout_ms; }
  const std::string& hosts() const { return options_.hosts; }
  Clock* clock() const { return clock_; }

 private:
  ZkSession(Options options, Clock* clock);
  static void GlobalWatcher(zhandle_t* zh, int type, int state, const char* path, void* ctx);
  static void PathWatcher(zhandle_t* zh, int type, int state, const char* path, void* ctx);
  [[nodiscard]] Status OpenHandle();
  void OnSessionState(int state);
  void Notify(Event event);
  static void AuthAnswered(int rc, const void* ctx);
  void OnAuthAnswered(int rc);
  void OnConnected();
  // ZkStatus, worded for an operator when ZooKeeper says NOAUTH.
  Status Check(int rc, const std::string& op, const std::string& path) const;
  void* RegisterWatch(Watch watch);

  const Options options_;
  Clock* const clock_;

  // The handle is replaced after an expiry; operations hold it shared.
  mutable std::shared_mutex handle_mu_;
  zhandle_t* zh_ = nullptr;  // guarded by handle_mu_
  bool closed_ = false;      // guarded by handle_mu_

  std::atomic<bool> connected_{false};
  std::atomic<int64_t> last_session_id_{0};  // of the last CONNECTED session
  // Credentials of the current handle: answered OK; refused. Event thread
  // writes them (and the handle's opener resets them).
  std::atomic<bool> auth_ok_{false};
  std::atomic<bool> auth_refused_{false};
  bool connected_pending_auth_ = false;  // event thread only
  const std::string digest_id_;          // "user:base64(sha1(user:password))"; "" without

  std::mutex watch_mu_;
  uint64_t next_watch_id_ = 1;               // guarded by watch_mu_
  std::map<uint64_t, Watch> watches_;        // guarded by watch_mu_

  std::mutex listener_mu_;
  int next_listener_id_ = 1;                 // guarded by listener_mu_
  std::map<int, Listener> listeners_;        // guarded by listener_mu_

  SerialExecutor executor_;  // last: destroyed (joined) first
};

// Maps a ZooKeeper return code to a Status, naming the operation and path.
Status ZkStatus(int rc, const std::string& op, const std::string& path);

// The id ZooKeeper's digest scheme gives credentials "user:password":
// "user:" + base64(sha1("user:password")), as its
// DigestAuthenticationProvider.generateDigest. "" if there is no ':'.
std::string ZkDigestId(const std::string& user_password);

}  // namespace sluice::coord
