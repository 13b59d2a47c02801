// ZooKeeper credentials without ZooKeeper: the digest id Sluice puts in its
// ACLs, and the checks on zk-auth-file (ReadZkAuthFile, DaemonOptions).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/common/daemon_options.h"
#include "lib/common/zk_auth_file.h"
#include "lib/coord/zk_session.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

// References from `echo -n USER:PASSWORD | openssl dgst -binary -sha1 | base64`,
// which is ZooKeeper's DigestAuthenticationProvider.generateDigest.
TEST(ZkAuth, DigestIdIsZooKeepersDigestOfUserAndPassword) {
  EXPECT_EQ(coord::ZkDigestId("user:password"), "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY=");
  EXPECT_EQ(coord::ZkDigestId("super:secret"), "super:lK75jTNcA+U9vtVEw5vB51mj/w4=");
  EXPECT_EQ(coord::ZkDigestId("sluice:s3cret"), "sluice:R8/iCrpFbgmO6XqMxwzyKqzEOKg=");
  // Only the first ':' splits: the password may hold more.
  EXPECT_EQ(coord::ZkDigestId("u:a:b").substr(0, 2), "u:");
  EXPECT_NE(coord::ZkDigestId("u:a:b"), coord::ZkDigestId("u:a"));
  EXPECT_EQ(coord::ZkDigestId("no-colon"), "");
}

class ZkAuthFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-zkauth-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& contents, mode_t mode) {
    const std::string path = dir_ + "/secret" + std::to_string(n_++);
    std::ofstream(path) << contents;
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }
  std::string dir_;
  int n_ = 0;
};

TEST_F(ZkAuthFileTest, ReadsOneLineUserColonPassword) {
  auto r = ReadZkAuthFile(Write("sluice:s3cret\n", 0600));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "sluice:s3cret");
  r = ReadZkAuthFile(Write("sluice:s3:cret\r\nignored\n", 0400));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "sluice:s3:cret");
}

TEST_F(ZkAuthFileTest, RefusesWhatIsNotASecretFile) {
  struct Case {
    std::string contents;
    mode_t mode;
    const char* says;
  };
  for (const Case& c : {Case{"sluice:s3cret\n", 0640, "chmod 600"}, Case{"sluice:s3cret\n", 0604, "chmod 600"},
                        Case{"", 0600, "empty"}, Case{"\n", 0600, "empty"}, Case{"sluice\n", 0600, "no ':'"},
                        Case{":s3cret\n", 0600, "must not be empty"}, Case{"sluice:\n", 0600, "must not be empty"}}) {
    const std::string path = Write(c.contents, c.mode);
    auto r = ReadZkAuthFile(path);
    ASSERT_FALSE(r.ok()) << "'" << c.contents << "' mode " << std::oct << c.mode;
    EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.says));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("zk-auth-file: " + path));
  }
  auto missing = ReadZkAuthFile(dir_ + "/absent");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("No such file"));
  auto directory = ReadZkAuthFile(dir_);
  EXPECT_FALSE(directory.ok());
}

TEST_F(ZkAuthFileTest, DaemonOptionsCheckTheFileAtStart) {
  DaemonOptions o;
  o.id = "worker-1";
  o.rpc_address = "127.0.0.1:7200";
  o.data_dir = dir_;
  o.coordinator = "zookeeper://127.0.0.1:2181/sluice";
  ASSERT_TRUE(o.Validate().ok());
  o.zk_auth_file = Write("sluice:s3cret\n", 0644);
  Status st = o.Validate();
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;  // exit code 2
  EXPECT_THAT(std::string(st.message()), HasSubstr("chmod 600"));
  o.zk_auth_file = Write("sluice:s3cret\n", 0600);
  EXPECT_TRUE(o.Validate().ok());
}

}  // namespace
}  // namespace sluice
