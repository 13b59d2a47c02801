// ZooKeeper credentials and ACLs against the real server: what Sluice
// creates with zk-auth-file only its credentials may change (anyone may
// read); an open layout is secured by the first process with credentials;
// other credentials are refused with a message naming zk-auth-file; and a
// cluster of real processes keeps its leader while unauthorised clients try
// to delete its election znode, forge its epoch and join it.
#include <sys/stat.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/coord/coordinator.h"
#include "lib/coord/zk_session.h"
#include "test/harness/certs.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/tcp_proxy.h"
#include "test/harness/util.h"
#include "test/harness/zk_cluster.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kSecret = "sluice:s3cret";
// echo -n sluice:s3cret | openssl dgst -binary -sha1 | base64
constexpr const char* kDigestId = "sluice:R8/iCrpFbgmO6XqMxwzyKqzEOKg=";

// A bare ZooKeeper C client, with digest credentials or none.
class RawClient {
 public:
  explicit RawClient(const std::string& hosts, const std::string& auth = "") {
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    zh_ = zookeeper_init(hosts.c_str(), &RawClient::Watcher, 4000, nullptr, this, 0);
    if (zh_ != nullptr && !auth.empty()) {
      auth_pending_ = true;
      zoo_add_auth(zh_, "digest", auth.data(), static_cast<int>(auth.size()), &RawClient::AuthDone, this);
    }
  }
  ~RawClient() {
    if (zh_ != nullptr) zookeeper_close(zh_);
  }
  // Connected, and its credentials (if any) accepted.
  bool Ready(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return state_ == ZOO_CONNECTED_STATE && !auth_pending_; }) &&
           auth_rc_ == ZOK;
  }
  zhandle_t* zh() { return zh_; }

  int Create(const std::string& path, int flags = 0) {
    return zoo_create(zh_, path.c_str(), "x", 1, &ZOO_OPEN_ACL_UNSAFE, flags, nullptr, 0);
  }
  int Set(const std::string& path, const std::string& data) {
    return zoo_set(zh_, path.c_str(), data.data(), static_cast<int>(data.size()), -1);
  }
  int Delete(const std::string& path) { return zoo_delete(zh_, path.c_str(), -1); }
  int SetOpenAcl(const std::string& path) { return zoo_set_acl(zh_, path.c_str(), -1, &ZOO_OPEN_ACL_UNSAFE); }
  std::string Get(const std::string& path, int* rc) {
    char buf[1024];
    int len = sizeof(buf);
    *rc = zoo_get(zh_, path.c_str(), 0, buf, &len, nullptr);
    return *rc == ZOK && len > 0 ? std::string(buf, len) : std::string();
  }
  // Sorted.
  std::vector<std::string> Children(const std::string& path, int* rc) {
    struct String_vector v {};
    *rc = zoo_get_children(zh_, path.c_str(), 0, &v);
    std::vector<std::string> out(v.data, v.data + v.count);
    deallocate_String_vector(&v);
    std::sort(out.begin(), out.end());
    return out;
  }
  // "scheme:id=perms;..." sorted, or "error <rc>".
  std::string Acl(const std::string& path) {
    struct ACL_vector acl {};
    struct Stat stat {};
    int rc = zoo_get_acl(zh_, path.c_str(), &acl, &stat);
    if (rc != ZOK) return "error " + std::to_string(rc);
    std::vector<std::string> entries;
    for (int i = 0; i < acl.count; ++i) {
      entries.push_back(std::string(acl.data[i].id.scheme) + ":" + acl.data[i].id.id + "=" +
                        std::to_string(acl.data[i].perms));
    }
    deallocate_ACL_vector(&acl);
    std::sort(entries.begin(), entries.end());
    std::string out;
    for (const std::string& e : entries) out += e + ";";
    return out;
  }

 private:
  static void Watcher(zhandle_t*, int type, int state, const char*, void* ctx) {
    if (type != ZOO_SESSION_EVENT) return;
    auto* self = static_cast<RawClient*>(ctx);
    std::lock_guard<std::mutex> lock(self->mu_);
    self->state_ = state;
    self->cv_.notify_all();
  }
  static void AuthDone(int rc, const void* ctx) {
    auto* self = static_cast<RawClient*>(const_cast<void*>(ctx));
    std::lock_guard<std::mutex> lock(self->mu_);
    self->auth_pending_ = false;
    self->auth_rc_ = rc;
    self->cv_.notify_all();
  }
  zhandle_t* zh_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  int state_ = 0;
  bool auth_pending_ = false;
  int auth_rc_ = ZOK;
};

// The ACL Sluice gives a znode it owns, as RawClient::Acl prints it to a
// client with the credentials; to others ZooKeeper shows the digest as "x".
std::string OwnedAcl(bool as_owner = true) {
  return std::string("digest:") + (as_owner ? kDigestId : "sluice:x") + "=" + std::to_string(ZOO_PERM_ALL) +
         ";world:anyone=" + std::to_string(ZOO_PERM_READ) + ";";
}
std::string OpenAcl() { return "world:anyone=" + std::to_string(ZOO_PERM_ALL) + ";"; }

std::string SecretFile(const TempDir& dir, const std::string& name, const std::string& secret,
                       mode_t mode = 0600) {
  const std::string path = dir.Sub(name);
  EXPECT_TRUE(WriteFile(path, secret + "\n").ok());
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path;
}

class ZkAclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto zk = ZkCluster::Start({.base_dir = dir_.path()});
    ASSERT_TRUE(zk.ok()) << zk.status();
    zk_ = std::move(*zk);
  }
  Result<std::unique_ptr<coord::Coordinator>> Coordinator(const std::string& root, const std::string& auth) {
    return coord::Coordinator::Create("zookeeper://" + zk_->connect_string() + root,
                                      {.session_timeout_ms = 2000,
                                       .connect_timeout = std::chrono::seconds(10),
                                       .zk_auth = auth});
  }
  static proto::MemberInfo Member(const std::string& id) {
    proto::MemberInfo m;
    m.set_id(id);
    m.set_rpc_address("127.0.0.1:1");
    return m;
  }

  TempDir dir_;
  std::unique_ptr<ZkCluster> zk_;
};

TEST_F(ZkAclTest, AnOpenLayoutIsSecuredByTheFirstProcessWithCredentials) {
  const std::string root = "/sluice/up";
  RawClient anon(zk_->connect_string());
  ASSERT_TRUE(anon.Ready());
  {
    // A cluster from before credentials: open layout, an epoch.
    auto open = Coordinator(root, "");
    ASSERT_TRUE(open.ok()) << open.status();
    ASSERT_EQ(anon.Create(root + "/epoch"), ZOK);
    ASSERT_EQ(anon.Set(root + "/epoch", "7"), ZOK);
    EXPECT_EQ(anon.Acl(root + "/workers"), OpenAcl());
  }
  auto secured = Coordinator(root, kSecret);
  ASSERT_TRUE(secured.ok()) << secured.status();
  RawClient right(zk_->connect_string(), kSecret);
  ASSERT_TRUE(right.Ready());
  for (const std::string& p : {root, root + "/election", root + "/workers", root + "/drivers", root + "/epoch"}) {
    EXPECT_EQ(right.Acl(p), OwnedAcl()) << p;
    EXPECT_EQ(anon.Acl(p), OwnedAcl(false)) << p;
    EXPECT_EQ(anon.Set(p, "666"), ZNOAUTH) << p;
  }
  int rc = 0;
  EXPECT_EQ(anon.Get(root + "/epoch", &rc), "7");
  EXPECT_EQ(rc, ZOK);

  // A member's znode carries the ACL too.
  auto members = (*secured)->NewMembership(coord::Group::kWorkers);
  ASSERT_TRUE(members->Join(Member("w1")).ok());
  EXPECT_EQ(right.Acl(root + "/workers/w1"), OwnedAcl());
  EXPECT_EQ(anon.Delete(root + "/workers/w1"), ZNOAUTH);
}

TEST_F(ZkAclTest, ANewSessionAfterAnExpiryPresentsTheCredentialsAgain) {
  auto proxy = TcpProxy::Start("127.0.0.1", zk_->client_port(0));
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const std::string root = "/sluice/expiry";
  auto secured = coord::Coordinator::Create("zookeeper://" + (*proxy)->address() + root,
                                            {.session_timeout_ms = 2000,
                                             .connect_timeout = std::chrono::seconds(10),
                                             .zk_auth = kSecret});
  ASSERT_TRUE(secured.ok()) << secured.status();
  auto members = (*secured)->NewMembership(coord::Group::kWorkers);
  ASSERT_TRUE(members->Join(Member("w1")).ok());
  RawClient right(zk_->connect_string(), kSecret);
  ASSERT_TRUE(right.Ready());
  int rc = 0;
  const std::string first_owner = right.Acl(root + "/workers/w1");
  EXPECT_EQ(first_owner, OwnedAcl());
  auto present = [&] { return right.Children(root + "/workers", &rc) == std::vector<std::string>{"w1"}; };
  // The server expires the session behind a silent network...
  (*proxy)->Stall();
  ASSERT_TRUE(WaitUntil([&] { return !present(); }, std::chrono::seconds(10)));
  // ...and the new handle may create under workers only with the credentials.
  (*proxy)->Restore();
  ASSERT_TRUE(WaitUntil(present, std::chrono::seconds(15)));
  EXPECT_EQ(right.Acl(root + "/workers/w1"), OwnedAcl());
}

TEST_F(ZkAclTest, OtherCredentialsOrNoneCannotJoinButMayRead) {
  const std::string root = "/sluice/acl";
  auto secured = Coordinator(root, kSecret);
  ASSERT_TRUE(secured.ok()) << secured.status();
  auto mine = (*secured)->NewMembership(coord::Group::kWorkers);
  ASSERT_TRUE(mine->Join(Member("w1")).ok());

  struct Case {
    std::string auth;
    std::string says;
  };
  for (const Case& c : {Case{"sluice:wrong", "the credentials in zk-auth-file are not those of the cluster"},
                        Case{"", "the cluster's znodes are protected; set zk-auth-file to its credentials"}}) {
    auto other = Coordinator(root, c.auth);  // the layout is there: it only reads it
    ASSERT_TRUE(other.ok()) << other.status();
    auto members = (*other)->NewMembership(coord::Group::kWorkers);
    const auto started = std::chrono::steady_clock::now();
    Status st = members->Join(Member("w-bad"));
    EXPECT_TRUE(absl::IsPermissionDenied(st)) << st;
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));  // not retried as a taken id
    EXPECT_THAT(std::string(st.message()),
                HasSubstr("ZooKeeper refused to create " + root + "/workers/w-bad (NOAUTH): " + c.says));
    auto listed = members->Members();
    ASSERT_TRUE(listed.ok()) << listed.status();
    ASSERT_EQ(listed->size(), 1u);
    EXPECT_EQ((*listed)[0].id(), "w1");
  }
}

TEST_F(ZkAclTest, ClustersUnderOneParentKeepTheirOwnCredentials) {
  auto first = Coordinator("/shared/a/one", kSecret);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Coordinator("/shared/a/two", "other:pw");
  ASSERT_TRUE(second.ok()) << second.status();
  RawClient anon(zk_->connect_string());
  RawClient right(zk_->connect_string(), kSecret);
  ASSERT_TRUE(anon.Ready());
  ASSERT_TRUE(right.Ready());
  const std::string shared = std::string("digest:") + kDigestId + "=" + std::to_string(ZOO_PERM_ALL) +
                             ";world:anyone=" + std::to_string(ZOO_PERM_READ | ZOO_PERM_CREATE) + ";";
  EXPECT_EQ(right.Acl("/shared"), shared);
  EXPECT_EQ(right.Acl("/shared/a"), shared);
  EXPECT_EQ(right.Acl("/shared/a/one"), OwnedAcl());
  EXPECT_EQ(anon.Delete("/shared/a/one/election"), ZNOAUTH);
  EXPECT_EQ(anon.Delete("/shared/a/one"), ZNOAUTH);
  EXPECT_EQ(anon.SetOpenAcl("/shared/a"), ZNOAUTH);
  EXPECT_EQ(anon.Set("/shared/a", "x"), ZNOAUTH);
  EXPECT_THAT(anon.Acl("/shared/a/two"), HasSubstr("digest:other:"));
  EXPECT_EQ(right.Delete("/shared/a/two/election"), ZNOAUTH);  // each cluster keeps its own
}

// The whole cluster as real processes with zk-auth-file.
TEST(ZkAclCluster, UnauthorisedClientsCannotDisturbTheLeaderOrJoin) {
  TempDir dir;
  const std::string secret = SecretFile(dir, "zk.secret", kSecret);
  const std::string wrong = SecretFile(dir, "wrong.secret", "sluice:not-it");
  const std::string root = "/sluice/acl";
  auto started = LocalCluster::Start({.dir = dir.path(),
                                      .drivers = 2,
                                      .workers = 1,
                                      .driver_flags = {"--zk-auth-file", secret},
                                      .worker_flags = {"--zk-auth-file", secret},
                                      .zk_root = root});
  ASSERT_TRUE(started.ok()) << started.status();
  LocalCluster& c = **started;
  int leader = -1;
  ASSERT_TRUE(WaitUntil([&] { return (leader = c.LeaderIndex()) >= 0; }, std::chrono::seconds(20)));
  EXPECT_THAT(*ReadFile(c.driver_log(0)), HasSubstr("authenticated as sluice"));
  EXPECT_THAT(*ReadFile(c.driver_log(0)), Not(HasSubstr("world-writable")));

  RawClient right(c.zk().connect_string(), kSecret);
  ASSERT_TRUE(right.Ready());
  int rc = 0;
  ASSERT_TRUE(WaitUntil([&] { return right.Children(root + "/workers", &rc).size() == 1; }, std::chrono::seconds(10)));
  std::vector<std::string> candidates = right.Children(root + "/election", &rc);
  ASSERT_EQ(rc, ZOK);
  ASSERT_EQ(candidates.size(), 2u);
  auto seq = [](const std::string& n) { return std::stoll(n.substr(n.rfind('_') + 1)); };
  std::sort(candidates.begin(), candidates.end(),
            [&](const std::string& a, const std::string& b) { return seq(a) < seq(b); });
  const std::string leader_node = root + "/election/" + candidates[0];
  ASSERT_THAT(right.Get(leader_node, &rc), HasSubstr(c.driver_id(leader)));
  const std::string epoch = right.Get(root + "/epoch", &rc);
  ASSERT_EQ(rc, ZOK);
  ASSERT_FALSE(epoch.empty());
  for (const std::string& p : {root + "/workers/worker-1", leader_node, root + "/epoch", root + "/election"}) {
    EXPECT_EQ(right.Acl(p), OwnedAcl()) << p;
  }

  RawClient anon(c.zk().connect_string());
  RawClient impostor(c.zk().connect_string(), "sluice:not-it");
  ASSERT_TRUE(anon.Ready());
  ASSERT_TRUE(impostor.Ready());  // digest takes any password: the ACL is what refuses
  for (RawClient* client : {&anon, &impostor}) {
    SCOPED_TRACE(client == &anon ? "no credentials" : "wrong credentials");
    EXPECT_EQ(client->Delete(leader_node), ZNOAUTH);
    EXPECT_EQ(client->Set(leader_node, "id: \"forged\""), ZNOAUTH);
    EXPECT_EQ(client->Set(root + "/epoch", "999999"), ZNOAUTH);
    EXPECT_EQ(client->Delete(root + "/epoch"), ZNOAUTH);
    EXPECT_EQ(client->Create(root + "/election/n_forged_0000000000", ZOO_EPHEMERAL), ZNOAUTH);
    EXPECT_EQ(client->Create(root + "/workers/intruder", ZOO_EPHEMERAL), ZNOAUTH);
    EXPECT_EQ(client->Create(root + "/drivers/intruder", ZOO_EPHEMERAL), ZNOAUTH);
    EXPECT_EQ(client->SetOpenAcl(root + "/election"), ZNOAUTH);
    // Reading stays open to the cluster's tools.
    EXPECT_THAT(client->Get(leader_node, &rc), HasSubstr(c.driver_id(leader)));
    EXPECT_EQ(client->Get(root + "/epoch", &rc), epoch);
    EXPECT_EQ(client->Children(root + "/workers", &rc), (std::vector<std::string>{"worker-1"}));
  }
  // The same writes with the cluster's credentials are allowed: the refusals
  // above are the ACL's.
  ASSERT_EQ(right.Create(root + "/acl-probe"), ZOK);
  EXPECT_EQ(right.Delete(root + "/acl-probe"), ZOK);

  // The leader leads on, over the same epoch and znode.
  EXPECT_FALSE(WaitUntil([&] { return c.LeaderIndex() != leader; }, std::chrono::seconds(2),
                         std::chrono::milliseconds(200)));
  EXPECT_EQ(right.Get(root + "/epoch", &rc), epoch);
  EXPECT_EQ(right.Children(root + "/election", &rc).size(), 2u);
  EXPECT_THAT(right.Get(leader_node, &rc), HasSubstr(c.driver_id(leader)));

  // sluicectl finds the cluster with the same credentials; a file others may
  // read is refused as usage.
  ASSERT_EQ(c.Sluicectl({"--zk-auth-file", secret, "status"}, dir.Sub("status.log")), 0)
      << ReadFile(dir.Sub("status.log")).value_or("");
  const std::string status = *ReadFile(dir.Sub("status.log"));
  for (const char* id : {"driver-1", "driver-2", "worker-1"}) EXPECT_THAT(status, HasSubstr(id));
  const std::string loose = SecretFile(dir, "loose.secret", kSecret, 0644);
  EXPECT_EQ(c.Sluicectl({"--zk-auth-file", loose, "status"}, dir.Sub("loose.log")), 2);
  EXPECT_THAT(*ReadFile(dir.Sub("loose.log")), HasSubstr("chmod 600"));

  // A workerd and a driverd with the wrong secret never join; each says why
  // and exits (1, not a crash).
  for (bool is_driver : {false, true}) {
    const std::string id = is_driver ? "driver-bad" : "worker-bad";
    const std::string log = dir.Sub(id + ".log");
    std::vector<std::string> argv = {is_driver ? kDriverdPath : kWorkerdPath,
                                     "--id", id,
                                     "--rpc-address", "127.0.0.1:" + std::to_string(FreePort()),
                                     "--data-dir", dir.Sub(id),
                                     "--coordinator", c.coordinator(),
                                     "--zk-session-timeout-ms", "4000",
                                     "--zk-auth-file", wrong};
    for (std::string& f : TlsFlags(is_driver ? "driver" : "worker")) argv.push_back(std::move(f));
    auto bad = Subprocess::Start(argv, {.log_path = log});
    ASSERT_TRUE(bad.ok()) << bad.status();
    Result<int> exit = (*bad)->Wait(std::chrono::seconds(15));
    ASSERT_TRUE(exit.ok()) << id << " still runs; its log:\n" << ReadFile(log).value_or("");
    EXPECT_EQ(*exit, 1) << ReadFile(log).value_or("");
    EXPECT_THAT(*ReadFile(log),
                HasSubstr("ZooKeeper refused to create " + root + (is_driver ? "/drivers/" : "/workers/") + id +
                          " (NOAUTH): the credentials in zk-auth-file are not those of the cluster"));
    const std::vector<std::string> members =
        is_driver ? std::vector<std::string>{"driver-1", "driver-2"} : std::vector<std::string>{"worker-1"};
    EXPECT_EQ(right.Children(root + (is_driver ? "/drivers" : "/workers"), &rc), members);
  }
  EXPECT_EQ(c.LeaderIndex(), leader);
}

}  // namespace
}  // namespace sluice::testing
