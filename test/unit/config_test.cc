// Unit tests of lib/common/config: config file parsing, flags over file,
// and the one-line errors with exit code 2.
#include "lib/common/config.h"

#include <sstream>

#include "CLI/CLI.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

TEST(ParseConfigText, ReadsKeysValuesCommentsAndQuotes) {
  auto entries = ParseConfigText(
      "# comment\n\n  id = d1  \nrpc-address=127.0.0.1:7100 # trailing\npath = \"/a b/#c\"\n", "x.conf");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 3u);
  EXPECT_EQ((*entries)[0].key, "id");
  EXPECT_EQ((*entries)[0].value, "d1");
  EXPECT_EQ((*entries)[0].line, 3);
  EXPECT_EQ((*entries)[1].value, "127.0.0.1:7100");
  EXPECT_EQ((*entries)[2].value, "/a b/#c");
  EXPECT_EQ((*entries)[2].line, 5);
}

TEST(ParseConfigText, RejectsLineWithoutEqualsNamingLine) {
  auto entries = ParseConfigText("id = a\nbogus line\n", "d.conf");
  ASSERT_FALSE(entries.ok());
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(entries.status().message()), HasSubstr("d.conf:2: expected 'key = value'"));
}

TEST(ParseConfigText, RejectsDuplicateKey) {
  auto entries = ParseConfigText("id = a\n\nid = b\n", "d.conf");
  ASSERT_FALSE(entries.ok());
  EXPECT_THAT(std::string(entries.status().message()),
              HasSubstr("d.conf:3: key 'id' given twice (first on line 1)"));
}

TEST(ParseConfigText, RejectsEmptyKey) {
  auto entries = ParseConfigText(" = a\n", "d.conf");
  ASSERT_FALSE(entries.ok());
  EXPECT_THAT(std::string(entries.status().message()), HasSubstr("d.conf:1: missing key"));
}

struct TestFlags {
  std::string name = "default";
  int count = 1;
  bool verbose = false;
  CLI::App app{"test", "prog"};
  TestFlags() {
    app.add_option("--name", name);
    app.add_option("--count", count);
    app.add_flag("--verbose", verbose);
  }
};

int Parse(TestFlags& f, std::vector<const char*> args, std::string* out_text = nullptr,
          std::string* err_text = nullptr) {
  args.insert(args.begin(), "prog");
  std::ostringstream out, err;
  std::optional<int> code = ParseCommandLine(f.app, static_cast<int>(args.size()), args.data(), out, err);
  if (out_text) *out_text = out.str();
  if (err_text) *err_text = err.str();
  return code.value_or(-1);
}

TEST(ApplyConfig, SetsValuesButCommandLineWins) {
  TestFlags f;
  f.app.parse(std::vector<std::string>{"--count=7"});  // CLI11 takes these reversed
  auto entries = ParseConfigText("name = fromfile\ncount = 3\nverbose = true\n", "t.conf");
  ASSERT_TRUE(entries.ok());
  ASSERT_TRUE(ApplyConfig(f.app, *entries, "t.conf").ok());
  EXPECT_EQ(f.name, "fromfile");
  EXPECT_EQ(f.count, 7);
  EXPECT_TRUE(f.verbose);
}

TEST(ApplyConfig, UnknownKeyNamesFileLineAndKey) {
  TestFlags f;
  f.app.parse(std::vector<std::string>{});
  auto entries = ParseConfigText("name = a\ncuont = 3\n", "t.conf");
  Status st = ApplyConfig(f.app, *entries, "t.conf");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "t.conf:2: unknown key 'cuont'");
}

TEST(ApplyConfig, BadValueNamesFileLineAndKey) {
  TestFlags f;
  f.app.parse(std::vector<std::string>{});
  auto entries = ParseConfigText("count = many\n", "t.conf");
  Status st = ApplyConfig(f.app, *entries, "t.conf");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("t.conf:1: count: "));
}

TEST(ParseCommandLine, HelpAndVersionExitZero) {
  TestFlags f1;
  std::string out;
  EXPECT_EQ(Parse(f1, {"--help"}, &out), 0);
  EXPECT_THAT(out, HasSubstr("--count"));
  TestFlags f2;
  EXPECT_EQ(Parse(f2, {"--version"}, &out), 0);
  EXPECT_THAT(out, HasSubstr("prog "));
}

TEST(ParseCommandLine, UnknownFlagIsOneLineAndExitTwo) {
  TestFlags f;
  std::string err;
  EXPECT_EQ(Parse(f, {"--bogus"}, nullptr, &err), kExitUsage);
  EXPECT_THAT(err, HasSubstr("prog: error: "));
  EXPECT_THAT(err, HasSubstr("--bogus"));
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1);
}

TEST(ParseCommandLine, MalformedValueExitTwo) {
  TestFlags f;
  std::string err;
  EXPECT_EQ(Parse(f, {"--count", "x"}, nullptr, &err), kExitUsage);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1);
}

TEST(ParseCommandLine, MissingConfigFileExitTwo) {
  TestFlags f;
  std::string err;
  EXPECT_EQ(Parse(f, {"--config", "/nonexistent/x.conf"}, nullptr, &err), kExitUsage);
  EXPECT_THAT(err, HasSubstr("cannot read config file '/nonexistent/x.conf'"));
}

TEST(ParseCommandLine, GoesOnWhenAllIsWell) {
  TestFlags f;
  EXPECT_EQ(Parse(f, {"--name", "n", "--verbose"}), -1);
  EXPECT_EQ(f.name, "n");
  EXPECT_TRUE(f.verbose);
}

TEST(ParseHostPort, AcceptsHostPortAndIpv6) {
  auto hp = ParseHostPort("127.0.0.1:7100", "addr");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 7100);
  auto v6 = ParseHostPort("[::1]:0", "addr");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 0);
}

TEST(ParseHostPort, RejectsMalformed) {
  for (const char* bad : {"nohost", ":80", "h:", "h:99999", "h:12x", "h:-1"}) {
    auto hp = ParseHostPort(bad, "rpc-address");
    EXPECT_FALSE(hp.ok()) << bad;
    EXPECT_THAT(std::string(hp.status().message()), HasSubstr("rpc-address: '")) << bad;
  }
}

// sluicectl's file: a key of the subcommand run applies to it; a key only
// another subcommand has is skipped; a key nobody has is an error.
TEST(ApplyConfig, KeysOfTheSubcommandRun) {
  CLI::App app("t", "t");
  std::string coordinator;
  std::vector<std::string> drivers, workers;
  app.add_option("--coordinator", coordinator);
  CLI::App* list = app.add_subcommand("list");
  list->add_option("--driver", drivers)->delimiter(',');
  CLI::App* status = app.add_subcommand("status");
  status->add_option("--worker", workers)->delimiter(',');
  const char* argv[] = {"t", "list"};
  app.parse(2, argv);
  Result<std::vector<ConfigEntry>> entries =
      ParseConfigText("coordinator = zookeeper://h:1/r\ndriver = a:1,b:2\nworker = c:3\n", "ctl.conf");
  ASSERT_TRUE(entries.ok());
  ASSERT_TRUE(ApplyConfig(app, *entries, "ctl.conf").ok());
  EXPECT_EQ(coordinator, "zookeeper://h:1/r");
  EXPECT_EQ(drivers, (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_TRUE(workers.empty());
  entries = ParseConfigText("drivr = a:1\n", "ctl.conf");
  Status st = ApplyConfig(app, *entries, "ctl.conf");
  EXPECT_THAT(st.message(), HasSubstr("ctl.conf:1: unknown key 'drivr'"));
}

TEST(ReadConfigFile, ADirectoryIsNotAConfigFile) {
  Result<std::vector<ConfigEntry>> got = ReadConfigFile("/tmp");
  EXPECT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("is a directory"));
}

}  // namespace
}  // namespace sluice
