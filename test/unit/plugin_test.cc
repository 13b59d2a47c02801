// Unit tests of plugins (lib/engine/plugin_api.h, plugin_loader.h): the
// example plugin through a Pipeline, one Operator per Pipeline, and every
// way loading one fails, each with its message. The modules are built by
// CMake before this test (examples/plugins, test/unit/plugins).
#include <dlfcn.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/engine/job_file.h"
#include "lib/engine/pipeline.h"
#include "lib/engine/plugin_loader.h"

namespace sluice::engine {
namespace {

using ::testing::HasSubstr;

constexpr const char* kUppercase = SLUICE_UPPERCASE_PLUGIN;
constexpr const char* kTestPlugin = SLUICE_TEST_PLUGIN;
constexpr const char* kVersion999 = SLUICE_VERSION_999_PLUGIN;
constexpr const char* kNotAPlugin = SLUICE_NOT_A_PLUGIN;

format::Block MakeBlock(const std::vector<std::string>& records) {
  format::BlockBuilder b("s", 0, 100);
  for (const auto& r : records) b.Add(r);
  return b.Cut();
}

// The libraries Plugin() named on this thread: a job names plugin "pN",
// and Create gives it the path pluginPaths()[N], as a worker does once its
// PathPolicy has resolved a name (confinement_test tests the resolving; this
// test, the loading).
std::vector<std::string>& PluginPaths() {
  thread_local std::vector<std::string> paths;
  return paths;
}

// The operators start on line 5 of the job file.
Result<std::unique_ptr<Pipeline>> Create(const std::string& operators) {
  Result<proto::JobSpec> spec =
      ParseJobFile("name: j\nsources: [s]\nsink: {stdout: {}}\noperators:\n" + operators, "j.yaml");
  if (!spec.ok()) return spec.status();
  for (proto::OperatorSpec& op : *spec->mutable_operators()) {
    if (op.has_plugin()) op.mutable_plugin()->set_path(PluginPaths().at(std::stoi(op.plugin().name().substr(1))));
  }
  return Pipeline::Create(*spec);
}

std::unique_ptr<Pipeline> Make(const std::string& operators) {
  Result<std::unique_ptr<Pipeline>> p = Create(operators);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

std::filesystem::path TempPath(const std::string& name) {
  return std::filesystem::path(::testing::TempDir()) / ("plugin_test_" + std::to_string(::getpid()) + "_" + name);
}

std::string Plugin(const std::string& path, const std::string& config = "{}") {
  PluginPaths().push_back(path);
  return "  - plugin: {name: p" + std::to_string(PluginPaths().size() - 1) + ", config: " + config + "}\n";
}

std::string RunBlock(Pipeline* p, const std::vector<std::string>& records, PipelineCounts* counts) {
  std::string out;
  p->Run(MakeBlock(records), &out, counts);
  return out;
}

TEST(PluginTest, TheExampleMapsAndFiltersAndMakesDeadLetters) {
  auto p = Make("  - parse: {format: json}\n" + Plugin(kUppercase, "{field: name}") +
                "  - project: {fields: [id, name]}\n");
  ASSERT_NE(p, nullptr);
  PipelineCounts counts;
  EXPECT_EQ(RunBlock(p.get(),
                {R"({"id":1,"name":"ada Lovelace"})", R"({"id":2,"name":""})", R"({"id":3})",
                 R"({"id":4,"name":5})", R"({"id":5,"name":"grace"})"},
                &counts),
            "{\"id\":1,\"name\":\"ADA LOVELACE\"}\n"
            "{\"id\":5,\"name\":\"GRACE\"}\n");
  EXPECT_EQ(counts.input, 5);
  EXPECT_EQ(counts.output, 2);
  EXPECT_EQ(counts.dead_letters, 1);
  EXPECT_THAT(counts.last_dead_letter, HasSubstr("offset 103: field 'name' is not a string"));
}

TEST(PluginTest, TheExampleFlatMapsIntoANewFieldThatLaterOperatorsSee) {
  auto p = Make("  - parse: {format: json}\n" + Plugin(kUppercase, "{field: tags, as: tag, split: ','}") +
                "  - filter: \"tag != 'BB'\"\n");
  ASSERT_NE(p, nullptr);
  PipelineCounts counts;
  EXPECT_EQ(RunBlock(p.get(), {R"({"id":1,"tags":"a,bb,,c"})", R"({"id":2,"tags":",,"})"}, &counts),
            "{\"id\":1,\"tags\":\"a,bb,,c\",\"tag\":\"A\"}\n"
            "{\"id\":1,\"tags\":\"a,bb,,c\",\"tag\":\"C\"}\n");
  EXPECT_EQ(counts.output, 2);
  EXPECT_EQ(counts.dead_letters, 0);
}

// Strings the plugin makes live in a per-record arena: many records, and
// values far larger than one of its chunks, all come out intact.
TEST(PluginTest, StringsThePluginMakesSurviveUntilWrittenAtAnySize) {
  auto p = Make("  - parse: {format: raw}\n" + Plugin(kUppercase, "{field: line, split: ' '}"));
  ASSERT_NE(p, nullptr);
  const std::string big(100'000, 'x');
  std::vector<std::string> records;
  std::string expected;
  for (int i = 0; i < 200; ++i) {
    const std::string word = i % 50 == 0 ? big : "w" + std::to_string(i);
    records.push_back(word + " " + word);
    std::string upper = word;
    for (char& c : upper) c = static_cast<char>(std::toupper(c));
    for (int k = 0; k < 2; ++k) expected += "{\"line\":\"" + upper + "\"}\n";
  }
  PipelineCounts counts;
  EXPECT_EQ(RunBlock(p.get(), records, &counts), expected);
  EXPECT_EQ(counts.output, 400);
}

TEST(PluginTest, EachPipelineHasItsOwnOperatorAndDestroysIt) {
  using LiveFn = int (*)();
  auto a = Make("  - parse: {format: raw}\n" + Plugin(kTestPlugin));
  auto b = Make("  - parse: {format: raw}\n" + Plugin(kTestPlugin));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  void* handle = dlopen(kTestPlugin, RTLD_NOW | RTLD_NOLOAD);  // already loaded, once
  ASSERT_NE(handle, nullptr);
  auto live = reinterpret_cast<LiveFn>(dlsym(handle, "test_plugin_live"));
  ASSERT_NE(live, nullptr);
  const int live_before = live();
  EXPECT_GE(live_before, 2);

  PipelineCounts counts;
  const std::string out_a = RunBlock(a.get(), {"r"}, &counts);
  const std::string out_b = RunBlock(b.get(), {"r"}, &counts);
  // Emitted twice each, and by two different instances.
  auto twice = [](const std::string& out) {
    const size_t half = out.size() / 2;
    return out.substr(0, half) == out.substr(half) && out.rfind("{\"line\":\"r\",\"instance\":", 0) == 0;
  };
  EXPECT_TRUE(twice(out_a)) << out_a;
  EXPECT_TRUE(twice(out_b)) << out_b;
  EXPECT_NE(out_a, out_b);
  EXPECT_EQ(counts.output, 4);

  a.reset();
  EXPECT_EQ(live(), live_before - 1);
  b.reset();
  EXPECT_EQ(live(), live_before - 2);
  dlclose(handle);  // drops only this test's reference
}

TEST(PluginTest, AnExceptionFromProcessMakesADeadLetter) {
  auto p = Make("  - parse: {format: json}\n" + Plugin(kTestPlugin));
  ASSERT_NE(p, nullptr);
  PipelineCounts counts;
  const std::string out = RunBlock(p.get(), {R"({"boom":1})", R"({"n":2})"}, &counts);
  EXPECT_EQ(counts.output, 2);
  EXPECT_EQ(counts.dead_letters, 1);
  EXPECT_THAT(counts.last_dead_letter, HasSubstr("offset 100: plugin " + std::string(kTestPlugin) + " threw: boom"));
  EXPECT_THAT(out, HasSubstr("\"n\":2"));
}

TEST(PluginTest, PipelinesMadeOnManyThreadsAtOnceShareTheLibrary) {
  std::vector<std::thread> threads;
  std::vector<std::string> outs(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([i, &outs] {
      Result<std::unique_ptr<Pipeline>> p =
          Create("  - parse: {format: raw}\n" + Plugin(kUppercase, "{field: line}"));
      if (!p.ok()) {
        outs[i] = p.status().ToString();
        return;
      }
      PipelineCounts counts;
      for (int k = 0; k < 100; ++k) outs[i] = RunBlock(p->get(), {"t" + std::to_string(i)}, &counts);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(outs[i], "{\"line\":\"T" + std::to_string(i) + "\"}\n");
}

Status ErrorOf(const std::string& operators) {
  Result<std::unique_ptr<Pipeline>> p = Create(operators);
  EXPECT_FALSE(p.ok());
  return p.ok() ? absl::OkStatus() : p.status();
}

TEST(PluginTest, AMissingFileNamesTheLineAndThePath) {
  Status st = ErrorOf(Plugin("/nonexistent/dir/x.so"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("j.yaml: line 5: operators[0].plugin: /nonexistent/dir/x.so: no such file on this worker"));
}

TEST(PluginTest, AFileThatIsNotASharedLibrary) {
  const std::filesystem::path path = TempPath("not_elf.so");
  std::ofstream(path) << std::string(200, '#') << "\nnot a shared library, though its name ends in .so\n";
  Status st = ErrorOf(Plugin(path.string()));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("line 5: operators[0].plugin: " + path.string() +
                        ": cannot load it as a shared library: invalid ELF header"));
  std::filesystem::remove(path);

  st = ErrorOf(Plugin("/"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("/: not a regular file"));
}

TEST(PluginTest, ALibraryWithoutTheEntryPoints) {
  Status st = ErrorOf("  - parse: {format: raw}\n" + Plugin(kNotAPlugin));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("line 6: operators[1].plugin: " + std::string(kNotAPlugin) +
                        ": not a Sluice plugin: it does not export sluice_plugin_api_version()"));
}

TEST(PluginTest, AnotherApiVersionIsRefusedBeforeCreate) {
  Status st = ErrorOf(Plugin(kVersion999));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr(std::string(kVersion999) +
                        ": built for plugin API version 999, but this worker supports version 1"));
}

TEST(PluginTest, CreateRefusingItsConfig) {
  Status st = ErrorOf(Plugin(kUppercase, "{field: name, colour: blue}"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("line 5: operators[0].plugin: " + std::string(kUppercase) +
                        ": unknown config key 'colour' (expected field, as, split)"));
  st = ErrorOf(Plugin(kUppercase));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("config needs 'field'"));
  st = ErrorOf(Plugin(kTestPlugin, "{throw: yes}"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("create threw: create was told to throw"));
  st = ErrorOf(Plugin(kTestPlugin, "{refuse: yes}"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("refused its config (no reason given)"));
}

// A spec that did not come through ParseJobFile is checked too.
TEST(PluginTest, ARelativePathIsRefused) {
  proto::PluginOp op;
  op.set_path("uppercase_plugin.so");
  Result<std::unique_ptr<plugin::Operator>> o = CreatePluginOperator(op, "j", 1);
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(o.status().message()), HasSubstr("'uppercase_plugin.so' is not an absolute path"));
}

// A failed load is not remembered: a library deployed afterwards loads.
TEST(PluginTest, ALibraryDeployedAfterAFailureLoads) {
  const std::filesystem::path path = TempPath("late.so");
  std::filesystem::remove(path);
  EXPECT_EQ(ErrorOf(Plugin(path.string(), "{field: line}")).code(), absl::StatusCode::kFailedPrecondition);
  std::filesystem::copy_file(kUppercase, path);
  auto p = Make("  - parse: {format: raw}\n" + Plugin(path.string(), "{field: line}"));
  ASSERT_NE(p, nullptr);
  PipelineCounts counts;
  EXPECT_EQ(RunBlock(p.get(), {"late"}, &counts), "{\"line\":\"LATE\"}\n");
  // Unlinking the file does not unmap the loaded library.
  std::filesystem::remove(path);
  EXPECT_EQ(RunBlock(p.get(), {"still"}, &counts), "{\"line\":\"STILL\"}\n");
}

}  // namespace
}  // namespace sluice::engine
