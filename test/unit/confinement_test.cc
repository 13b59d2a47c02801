// Unit tests of PathPolicy (lib/engine/confinement.h): plugin names and where
// they resolve, output paths at submit (lexical) and on the worker (realpath
// of the nearest existing ancestor), on real files in a temporary directory.
#include "lib/engine/confinement.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "CLI/CLI.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/engine/job_file.h"

namespace sluice::engine {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ErrorOf(const Status& st) { return std::string(st.message()); }

class ConfinementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/sluice-confinement-XXXXXX";
    root_ = ::mkdtemp(templ);
    fs::create_directories(root_ + "/plugins");
    fs::create_directories(root_ + "/elsewhere");
    fs::create_directories(root_ + "/out");
    fs::create_directories(root_ + "/outside");
    Touch(root_ + "/plugins/upper.so");
    Touch(root_ + "/plugins/libcount.so");
    Touch(root_ + "/elsewhere/evil.so");
    policy_.plugin_dirs = {root_ + "/plugins/"};  // a trailing slash is the same dir
    policy_.output_dirs = {root_ + "/out"};
    ASSERT_TRUE(policy_.Validate().ok());
  }
  void TearDown() override { fs::remove_all(root_); }

  static void Touch(const std::string& path) { std::ofstream(path) << "x"; }

  // A job from a job file with these operators and this sink.
  static proto::JobSpec Job(const std::string& operators, const std::string& sink = "{stdout: {}}",
                            const std::string& extra = "") {
    Result<proto::JobSpec> spec = ParseJobFile(
        "name: j\nsources: [s]\nsink: " + sink + "\n" + extra + "operators:\n  - parse: {format: json}\n" + operators,
        "j.yaml");
    EXPECT_TRUE(spec.ok()) << spec.status();
    return spec.ok() ? *spec : proto::JobSpec();
  }

  std::string root_;
  PathPolicy policy_;
};

TEST(PluginNameTest, NamesAreWordsWithoutSlashesOrDotDot) {
  EXPECT_TRUE(IsPluginName("uppercase_plugin"));
  EXPECT_TRUE(IsPluginName("geo-ip.v2"));
  EXPECT_FALSE(IsPluginName(""));
  EXPECT_FALSE(IsPluginName("."));
  EXPECT_FALSE(IsPluginName(".."));
  EXPECT_FALSE(IsPluginName("a..b"));
  EXPECT_FALSE(IsPluginName("../x"));
  EXPECT_FALSE(IsPluginName("a/b"));
  EXPECT_FALSE(IsPluginName("/tmp/evil.so"));
  EXPECT_FALSE(IsPluginName("a b"));
}

TEST(PluginNameTest, AJobFileWithAPathIsToldToUseAName) {
  Result<proto::JobSpec> spec = ParseJobFile(
      "name: j\nsources: [s]\nsink: {stdout: {}}\noperators:\n  - plugin: {path: /tmp/evil.so}\n", "j.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(ErrorOf(spec.status()),
              HasSubstr("j.yaml: line 5: operators[0].plugin.path: '/tmp/evil.so' is a path: plugins are loaded by "
                        "name from the workers' plugin-dirs: use name: evil and install the library in one of them"));
  spec = ParseJobFile(
      "name: j\nsources: [s]\nsink: {stdout: {}}\noperators:\n  - key_by: k\n  - update_state: {plugin: "
      "/opt/libcount.so}\n",
      "j.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(ErrorOf(spec.status()), HasSubstr("use name: count and install"));
  spec = ParseJobFile(
      "name: j\nsources: [s]\nsink: {stdout: {}}\noperators:\n  - plugin: {name: ../x}\n", "j.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(ErrorOf(spec.status()), HasSubstr("'../x' is not a plugin name"));
}

TEST(PathPolicyOptionsTest, CommaSeparatedAbsoluteDirectoriesOnly) {
  PathPolicy p;
  CLI::App app;
  p.Register(app);
  const char* argv[] = {"d", "--plugin-dirs", "/a,/b/", "--output-dirs", "/data/out"};
  app.parse(5, const_cast<char**>(argv));
  EXPECT_EQ(p.plugin_dirs, (std::vector<std::string>{"/a", "/b/"}));
  EXPECT_EQ(p.output_dirs, (std::vector<std::string>{"/data/out"}));
  EXPECT_TRUE(p.Validate().ok());
  p.output_dirs = {"data/out"};
  EXPECT_THAT(ErrorOf(p.Validate()), HasSubstr("output-dirs: 'data/out' is not an absolute path"));
  p.output_dirs = {"/data/../etc"};
  EXPECT_THAT(ErrorOf(p.Validate()), HasSubstr("output-dirs: '/data/../etc' has a '..' component"));
  p.output_dirs = {};
  p.plugin_dirs = {"plugins"};
  EXPECT_THAT(ErrorOf(p.Validate()), HasSubstr("plugin-dirs: 'plugins' is not an absolute path"));
}

TEST_F(ConfinementTest, SubmitWantsPluginsByNameAndPluginDirs) {
  const proto::JobSpec by_name = Job("  - plugin: {name: upper}\n");
  EXPECT_TRUE(policy_.CheckJobSpec(by_name).ok());
  proto::JobSpec by_path = by_name;  // from a client that skipped the job file checks
  by_path.mutable_operators(1)->mutable_plugin()->set_path("/tmp/evil.so");
  Status st = policy_.CheckJobSpec(by_path);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ErrorOf(st), HasSubstr("operators[1].plugin.path: '/tmp/evil.so' is a path: plugins are loaded by "
                                     "name from the workers' plugin-dirs: use name: evil"));
  PathPolicy none;
  st = none.CheckJobSpec(by_name);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ErrorOf(st), HasSubstr("plugin 'upper' refused: this cluster loads no plugins; an operator sets "
                                     "plugin-dirs"));
  EXPECT_THAT(ErrorOf(none.CheckJobSpec(Job("  - key_by: k\n  - update_state: {plugin: count}\n"))),
              HasSubstr("operators[2].update_state.plugin: plugin 'count' refused"));
  EXPECT_TRUE(none.CheckJobSpec(Job("  - filter: {expr: 'x > 1'}\n")).ok()) << "no plugin, no file: nothing needed";
}

TEST_F(ConfinementTest, SubmitWantsOutputUnderOutputDirsLexically) {
  auto check = [&](const std::string& path) {
    return policy_.CheckJobSpec(Job("", "{file: {path: '" + path + "'}}"));
  };
  EXPECT_TRUE(check(root_ + "/out").ok());
  EXPECT_TRUE(check(root_ + "/out/").ok()) << "a trailing slash";
  EXPECT_TRUE(check(root_ + "//out/./clicks").ok());
  EXPECT_TRUE(check(root_ + "/out/not/there/yet").ok()) << "need not exist at submit";
  Status st = check(root_ + "/outside");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ErrorOf(st), HasSubstr("sink.file.path: '" + root_ + "/outside' is outside output-dirs: file sinks "
                                     "and dead letters write at or under one of " + root_ + "/out"));
  EXPECT_THAT(ErrorOf(check(root_ + "/out/../outside")), HasSubstr("has a '..' component, which is never allowed"));
  EXPECT_THAT(ErrorOf(check(root_ + "/out/a/..")), HasSubstr("has a '..' component"));
  EXPECT_THAT(ErrorOf(check("/")), HasSubstr("is outside output-dirs"));
  Status dead = policy_.CheckJobSpec(Job("", "{stdout: {}}", "dead_letters: /var/tmp/rejects\n"));
  EXPECT_THAT(ErrorOf(dead), HasSubstr("j.yaml: dead_letters: '/var/tmp/rejects' is outside output-dirs"));
  EXPECT_TRUE(policy_.CheckJobSpec(Job("", "{stdout: {}}", "dead_letters: " + root_ + "/out/rejects\n")).ok());
  PathPolicy none;
  EXPECT_THAT(ErrorOf(none.CheckJobSpec(Job("", "{file: {path: '" + root_ + "/out'}}"))),
              HasSubstr("this cluster writes no files; an operator sets output-dirs"));
  EXPECT_TRUE(none.CheckJobSpec(Job("", "{null: {}}")).ok());
}

TEST_F(ConfinementTest, APluginResolvesToItsRealPathInThePluginDir) {
  Result<std::string> upper = policy_.ResolvePlugin("upper");
  ASSERT_TRUE(upper.ok()) << upper.status();
  EXPECT_EQ(*upper, fs::canonical(root_ + "/plugins/upper.so").string());
  Result<std::string> count = policy_.ResolvePlugin("count");
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, fs::canonical(root_ + "/plugins/libcount.so").string()) << "libNAME.so";
  EXPECT_TRUE(policy_.ResolvePlugin("upper.so").ok());

  Status missing = policy_.ResolvePlugin("nothere").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ErrorOf(missing), HasSubstr("plugin 'nothere': no nothere.so or libnothere.so in plugin-dirs"));
  EXPECT_THAT(ErrorOf(policy_.ResolvePlugin("../elsewhere/evil").status()), HasSubstr("is not a plugin name"));
  EXPECT_THAT(ErrorOf(policy_.ResolvePlugin("/tmp/evil.so").status()), HasSubstr("is not a plugin name"));
  EXPECT_THAT(ErrorOf(PathPolicy().ResolvePlugin("upper").status()), HasSubstr("this worker has no plugin-dirs"));

  // A second dir is searched after the first; a missing one is skipped.
  PathPolicy two{.plugin_dirs = {root_ + "/missing", root_ + "/plugins", root_ + "/elsewhere"}};
  Result<std::string> evil = two.ResolvePlugin("evil");
  ASSERT_TRUE(evil.ok()) << evil.status();
  EXPECT_EQ(*evil, fs::canonical(root_ + "/elsewhere/evil.so").string());
}

TEST_F(ConfinementTest, ASymlinkOutOfThePluginDirIsRefused) {
  fs::create_symlink(root_ + "/elsewhere/evil.so", root_ + "/plugins/evil.so");
  Status st = policy_.ResolvePlugin("evil").status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ErrorOf(st), HasSubstr("plugins/evil.so is " + fs::canonical(root_ + "/elsewhere/evil.so").string() +
                                     ", outside the plugin dir"));
  // Relative, through "..", and dangling: all refused.
  fs::create_symlink("../elsewhere/evil.so", root_ + "/plugins/rel.so");
  EXPECT_THAT(ErrorOf(policy_.ResolvePlugin("rel").status()), HasSubstr("outside the plugin dir"));
  fs::create_symlink(root_ + "/nowhere.so", root_ + "/plugins/dangling.so");
  EXPECT_EQ(policy_.ResolvePlugin("dangling").status().code(), absl::StatusCode::kFailedPrecondition);
  // A symlink that stays inside the dir is fine, and so is a plugin dir
  // that is itself a symlink (its realpath is the dir).
  fs::create_symlink("upper.so", root_ + "/plugins/alias.so");
  EXPECT_TRUE(policy_.ResolvePlugin("alias").ok());
  fs::create_directory_symlink(root_ + "/plugins", root_ + "/plugins-link");
  PathPolicy linked{.plugin_dirs = {root_ + "/plugins-link"}};
  EXPECT_TRUE(linked.ResolvePlugin("upper").ok());
}

TEST_F(ConfinementTest, ResolvePluginsRewritesTheSpecOrSaysWhichOperator) {
  proto::JobSpec spec = Job("  - plugin: {name: upper}\n  - key_by: k\n  - update_state: {plugin: count}\n");
  ASSERT_TRUE(policy_.ResolvePlugins(&spec).ok());
  EXPECT_EQ(spec.operators(1).plugin().path(), fs::canonical(root_ + "/plugins/upper.so").string());
  EXPECT_EQ(spec.operators(3).update_state().plugin(), fs::canonical(root_ + "/plugins/libcount.so").string());

  proto::JobSpec bad = Job("  - plugin: {name: gone}\n");
  Status st = policy_.ResolvePlugins(&bad);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ErrorOf(st), HasSubstr("j.yaml: line 6: operators[1].plugin: plugin 'gone': no gone.so"));
  proto::JobSpec by_path = Job("  - plugin: {name: upper}\n");
  by_path.mutable_operators(1)->mutable_plugin()->set_path(root_ + "/plugins/upper.so");
  EXPECT_THAT(ErrorOf(policy_.ResolvePlugins(&by_path)), HasSubstr("is a path: plugins are loaded by name"));
}

TEST_F(ConfinementTest, OutputOnTheWorkerIsCheckedByRealPath) {
  EXPECT_TRUE(policy_.CheckOutputPath(root_ + "/out").ok());
  EXPECT_TRUE(policy_.CheckOutputPath(root_ + "/out/").ok());
  EXPECT_TRUE(policy_.CheckOutputPath(root_ + "/out/new/deeper").ok()) << "not created yet";
  Status st = policy_.CheckOutputPath(root_ + "/outside");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ErrorOf(st), HasSubstr("outside output-dirs"));
  EXPECT_THAT(ErrorOf(policy_.CheckOutputPath(root_ + "/outside/x")), HasSubstr("outside output-dirs"))
      << "/out is a prefix of /outside as a string, not as a directory";
  EXPECT_THAT(ErrorOf(policy_.CheckOutputPath(root_ + "/out/../outside")), HasSubstr("'..' component"));

  // A symlink in the output dir pointing out of it, existing or dangling.
  fs::create_directory_symlink(root_ + "/outside", root_ + "/out/escape");
  st = policy_.CheckOutputPath(root_ + "/out/escape/x");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ErrorOf(st), HasSubstr("/out/escape/x is " + fs::canonical(root_ + "/outside").string() +
                                     "/x on this worker, outside output-dirs"));
  fs::create_directory_symlink(root_ + "/not-yet", root_ + "/out/dangling");
  EXPECT_EQ(policy_.CheckOutputPath(root_ + "/out/dangling/x").code(), absl::StatusCode::kFailedPrecondition);
  // A symlink inside, to inside, is fine; so is an output dir that does not
  // exist yet, or that is itself a symlink.
  fs::create_directories(root_ + "/out/real");
  fs::create_directory_symlink(root_ + "/out/real", root_ + "/out/alias");
  EXPECT_TRUE(policy_.CheckOutputPath(root_ + "/out/alias/x").ok());
  PathPolicy later{.output_dirs = {root_ + "/later"}};
  EXPECT_TRUE(later.CheckOutputPath(root_ + "/later/x").ok());
  EXPECT_FALSE(later.CheckOutputPath(root_ + "/laterx").ok());
  fs::create_directory_symlink(root_ + "/out", root_ + "/out-link");
  PathPolicy linked{.output_dirs = {root_ + "/out-link"}};
  EXPECT_TRUE(linked.CheckOutputPath(root_ + "/out-link/x").ok());
  EXPECT_THAT(ErrorOf(PathPolicy().CheckOutputPath(root_ + "/out")), HasSubstr("this worker has no output-dirs"));

  proto::JobSpec spec = Job("", "{file: {path: '" + root_ + "/out/escape'}}");
  EXPECT_THAT(ErrorOf(policy_.CheckOutputs(spec)), HasSubstr("outside output-dirs"));
  spec = Job("", "{file: {path: '" + root_ + "/out/ok'}}", "dead_letters: " + root_ + "/out/escape/dl\n");
  EXPECT_THAT(ErrorOf(policy_.CheckOutputs(spec)), HasSubstr("/out/escape/dl is"));
  // The default dead-letter directory, <path>/dead-letters, as a symlink out.
  fs::create_directories(root_ + "/out/ok");
  fs::create_directory_symlink(root_ + "/outside", root_ + "/out/ok/dead-letters");
  spec = Job("", "{file: {path: '" + root_ + "/out/ok'}}");
  EXPECT_THAT(ErrorOf(policy_.CheckOutputs(spec)), HasSubstr("/out/ok/dead-letters is"));
}

}  // namespace
}  // namespace sluice::engine
