// The ZooKeeper part of the harness, against the real server: a client
// creates and reads a znode; an ensemble keeps serving with one server down;
// a TcpProxy cut disconnects a client, and Restore lets it reconnect.
#include <zookeeper/zookeeper.h>

#include <condition_variable>
#include <mutex>

#include "gtest/gtest.h"
#include "test/harness/tcp_proxy.h"
#include "test/harness/util.h"
#include "test/harness/zk_cluster.h"

namespace sluice::testing {
namespace {

// A bare ZooKeeper C client that records its connection state.
class ZkClient {
 public:
  explicit ZkClient(const std::string& hosts, int timeout_ms = 4000) {
    zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
    zh_ = zookeeper_init(hosts.c_str(), &ZkClient::Watcher, timeout_ms, nullptr, this, 0);
  }
  ~ZkClient() {
    if (zh_ != nullptr) zookeeper_close(zh_);
  }
  bool WaitState(int state, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return state_ == state; });
  }
  zhandle_t* handle() { return zh_; }

 private:
  static void Watcher(zhandle_t*, int type, int state, const char*, void* ctx) {
    if (type != ZOO_SESSION_EVENT) return;
    auto* self = static_cast<ZkClient*>(ctx);
    std::lock_guard<std::mutex> lock(self->mu_);
    self->state_ = state;
    self->cv_.notify_all();
  }
  zhandle_t* zh_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  int state_ = 0;
};

std::string Get(zhandle_t* zh, const char* path, int* rc) {
  char buf[256];
  int len = sizeof(buf);
  *rc = zoo_get(zh, path, 0, buf, &len, nullptr);
  return *rc == ZOK ? std::string(buf, len) : std::string();
}

TEST(ZooKeeperHarness, ClientCreatesAndReadsZnode) {
  TempDir dir;
  auto zk = ZkCluster::Start({.base_dir = dir.path()});
  ASSERT_TRUE(zk.ok()) << zk.status();
  ZkClient client((*zk)->connect_string());
  ASSERT_TRUE(client.WaitState(ZOO_CONNECTED_STATE, std::chrono::seconds(10)));
  ASSERT_EQ(zoo_create(client.handle(), "/sluice-test", "hello", 5, &ZOO_OPEN_ACL_UNSAFE, 0,
                       nullptr, 0),
            ZOK);
  int rc = 0;
  EXPECT_EQ(Get(client.handle(), "/sluice-test", &rc), "hello");
  EXPECT_EQ(rc, ZOK);
  EXPECT_EQ(zoo_create(client.handle(), "/sluice-test", "x", 1, &ZOO_OPEN_ACL_UNSAFE, 0, nullptr, 0),
            ZNODEEXISTS);
}

TEST(ZooKeeperHarness, DataSurvivesServerRestart) {
  TempDir dir;
  auto zk = ZkCluster::Start({.base_dir = dir.path()});
  ASSERT_TRUE(zk.ok()) << zk.status();
  {
    ZkClient client((*zk)->connect_string());
    ASSERT_TRUE(client.WaitState(ZOO_CONNECTED_STATE, std::chrono::seconds(10)));
    ASSERT_EQ(zoo_create(client.handle(), "/kept", "v", 1, &ZOO_OPEN_ACL_UNSAFE, 0, nullptr, 0), ZOK);
  }
  (*zk)->StopServer(0);
  EXPECT_FALSE((*zk)->Serving(0));
  ASSERT_TRUE((*zk)->RestartServer(0).ok());
  ZkClient client((*zk)->connect_string());
  ASSERT_TRUE(client.WaitState(ZOO_CONNECTED_STATE, std::chrono::seconds(10)));
  int rc = 0;
  EXPECT_EQ(Get(client.handle(), "/kept", &rc), "v");
}

TEST(ZooKeeperHarness, EnsembleServesWithOneServerDown) {
  TempDir dir;
  auto zk = ZkCluster::Start({.base_dir = dir.path(), .servers = 3});
  ASSERT_TRUE(zk.ok()) << zk.status();
  ZkClient client((*zk)->connect_string());
  ASSERT_TRUE(client.WaitState(ZOO_CONNECTED_STATE, std::chrono::seconds(10)));
  ASSERT_EQ(zoo_create(client.handle(), "/e", "1", 1, &ZOO_OPEN_ACL_UNSAFE, 0, nullptr, 0), ZOK);
  (*zk)->KillServer(0);
  // A quorum of two still serves (possibly after re-electing), and the client
  // reconnects to a live server by itself.
  int rc = ZCONNECTIONLOSS;
  std::string value;
  EXPECT_TRUE(WaitUntil(
      [&] {
        value = Get(client.handle(), "/e", &rc);
        return rc == ZOK;
      },
      std::chrono::seconds(20), std::chrono::milliseconds(200)));
  EXPECT_EQ(value, "1");
  EXPECT_TRUE((*zk)->Serving(1) || (*zk)->Serving(2));
}

TEST(ZooKeeperHarness, ProxyCutDisconnectsAndRestoreReconnects) {
  TempDir dir;
  auto zk = ZkCluster::Start({.base_dir = dir.path()});
  ASSERT_TRUE(zk.ok()) << zk.status();
  auto proxy = TcpProxy::Start("127.0.0.1", (*zk)->client_port(0));
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ZkClient client((*proxy)->address(), /*timeout_ms=*/10000);
  ASSERT_TRUE(client.WaitState(ZOO_CONNECTED_STATE, std::chrono::seconds(10)));
  (*proxy)->Cut();
  EXPECT_TRUE(client.WaitState(ZOO_CONNECTING_STATE, std::chrono::seconds(5)));
  (*proxy)->Restore();
  EXPECT_TRUE(client.WaitState(ZOO_CONNECTED_STATE, std::chrono::seconds(10)));
  int rc = 0;
  Get(client.handle(), "/", &rc);
  EXPECT_EQ(rc, ZOK);
}

}  // namespace
}  // namespace sluice::testing
