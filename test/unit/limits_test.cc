// Unit tests of the limits on the job language's inputs (lib/engine/limits.h):
// each limit refuses what is over it with INVALID_ARGUMENT naming it, and
// nothing over a limit crashes (the 100,000 parentheses that overflowed the
// expression parser's stack, and their cousins).
#include "lib/engine/limits.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/engine/expr.h"
#include "lib/engine/job_file.h"
#include "lib/engine/pipeline.h"

namespace sluice::engine {
namespace {

using ::testing::HasSubstr;

std::string Repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

std::string Nested(int depth) { return Repeat("(", depth) + "a" + Repeat(")", depth); }

void ExpectRefused(const Status& st, std::string_view what) {
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(what));
}

TEST(LimitsTest, AHundredThousandParenthesesAreRefusedByLength) {
  Result<std::unique_ptr<Expr>> e = ParseExpr(Nested(100'000));
  ExpectRefused(e.status(), "more than the limit of 8192 bytes");
}

TEST(LimitsTest, ExpressionNestingIsBoundedWhateverOpensIt) {
  EXPECT_TRUE(ParseExpr(Nested(kMaxExprDepth)).ok());
  ExpectRefused(ParseExpr(Nested(kMaxExprDepth + 1)).status(), "nests deeper than the limit of 64");
  EXPECT_TRUE(ParseExpr(Repeat("not ", kMaxExprDepth) + "a").ok());
  ExpectRefused(ParseExpr(Repeat("not ", kMaxExprDepth + 1) + "a").status(), "nests deeper");
  ExpectRefused(ParseExpr(Repeat("-", 2000) + "1").status(), "nests deeper");
  ExpectRefused(ParseExpr(Repeat("lower(", 100) + "a" + Repeat(")", 100)).status(), "nests deeper");
  // Mixed, inside a function's arguments.
  ExpectRefused(ParseExpr("contains(a, " + Repeat("not (", 40) + "b" + Repeat(")", 40) + ")").status(),
                "nests deeper");
}

TEST(LimitsTest, LongChainsAreBoundedByLengthAndEvaluate) {
  // A chain does not nest in the parser; its tree is as deep as it is long.
  std::string chain = "a" + Repeat(" or a", 1500);
  ASSERT_LE(chain.size(), kMaxExprBytes);
  Result<std::unique_ptr<Expr>> e = ParseExpr(chain);
  ASSERT_TRUE(e.ok()) << e.status();
  std::deque<std::string> scratch;
  EXPECT_FALSE(Truthy((*e)->Eval([](std::string_view) { return Value(Null{}); }, &scratch)));
  ExpectRefused(ParseExpr("a" + Repeat(" or a", 2000)).status(), "more than the limit of 8192 bytes");
}

TEST(LimitsTest, AHugeStringLiteralIsRefused) {
  ExpectRefused(ParseExpr("a == '" + std::string(1 << 20, 'x') + "'").status(), "more than the limit");
}

std::string Job(const std::string& operators) {
  return "name: j\nsources: [s]\nsink: {stdout: {}}\noperators:\n" + operators;
}

TEST(LimitsTest, AJobFileWithTheNestedFilterIsRefusedNamingTheField) {
  Result<proto::JobSpec> spec = ParseJobFile(Job("  - filter: \"" + Nested(100'000) + "\"\n"), "deep.yaml");
  ExpectRefused(spec.status(), "deep.yaml: line 5: operators[0].filter: the expression is 200001 bytes");
  spec = ParseJobFile(Job("  - filter: \"" + Nested(100) + "\"\n"), "deep.yaml");
  ExpectRefused(spec.status(), "nests deeper than the limit of 64");
  spec = ParseJobFile(Job("  - map: {fields: {x: \"" + Repeat("not ", 100) + "a\"}}\n"), "deep.yaml");
  ExpectRefused(spec.status(), "operators[0].map.fields.x: column");
}

TEST(LimitsTest, DeepYamlIsRefusedBeforeTheYamlParserSeesIt) {
  // Flow collections, as JSON or YAML.
  ExpectRefused(ParseJobFile(Repeat("[", 100'000), "f.yaml").status(), "f.yaml: line 1: the job file nests 33");
  ExpectRefused(ParseJobFile(Repeat("{\"a\":", 100'000), "f.json").status(), "more than the limit of 32");
  ExpectRefused(ParseJobFile(Job("  - filter: " + Repeat("[", 40) + "\n"), "f.yaml").status(), "line 5");
  // Block collections: compact sequences on one line, and indentation.
  ExpectRefused(ParseJobFile(Repeat("- ", 100'000) + "x\n", "b.yaml").status(), "nests");
  std::string indented;
  for (int i = 0; i < 40; ++i) indented += std::string(i, ' ') + "k:\n";
  ExpectRefused(ParseJobFile(indented, "b.yaml").status(), "line 33: the job file nests 33 levels deep");
  // Brackets inside quotes and comments are text, not nesting.
  Result<proto::JobSpec> spec = ParseJobFile(
      Job("  - filter: \"x == '" + Repeat("[", 40) + "'\"  # " + Repeat("{", 40) + "\n  - project: {fields: [it's]}\n"),
      "q.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
}

// A duration whose milliseconds pass int64 is out of range, not wrapped into
// range (found by job_file_fuzz under UBSan): 2^61 + 1 seconds wrapped to
// 1000 ms, which was taken for one second.
TEST(LimitsTest, ADurationOverflowingInt64IsRefused) {
  for (const char* d : {"12222222222222222s", "2305843009213693953s", "9223372036854775807h"}) {
    Result<proto::JobSpec> spec =
        ParseJobFile(std::string("name: j\nbatch_interval: ") + d + "\nsources: [s]\nsink: {stdout: {}}\n", "d.yaml");
    ExpectRefused(spec.status(), "is not between 10ms and 1h");
  }
}

TEST(LimitsTest, AJobFileOverTheSizeLimitIsRefused) {
  std::string big = Job("  - filter: a\n") + "# " + std::string(kMaxJobFileBytes, 'x') + "\n";
  ExpectRefused(ParseJobFile(big, "big.yaml").status(), "big.yaml: the job file is 1048644 bytes");
}

TEST(LimitsTest, YamlAliasesCannotMultiplyTheSpec) {
  // One 60 KiB plugin config repeated by aliases: each is under its limit,
  // the whole is not.
  std::string config = "{";
  for (int i = 0; i < 600; ++i) config += fmt::format("k{}: {}, ", i, std::string(90, 'v'));
  config += "z: z}";
  std::string ops = "  - &p {plugin: {name: p, config: " + config + "}}\n";
  for (int i = 0; i < 40; ++i) ops += "  - *p\n";
  ExpectRefused(ParseJobFile(Job(ops), "alias.yaml").status(), "more than the limit of 1048576 bytes");
}

TEST(LimitsTest, ASpecFromAnywhereIsCheckedAgainstEveryLimit) {
  Result<proto::JobSpec> good = ParseJobFile(Job("  - filter: a\n"), "j.yaml");
  ASSERT_TRUE(good.ok()) << good.status();

  proto::JobSpec spec = *good;
  spec.mutable_operators(0)->mutable_filter()->set_expr(Nested(100'000));
  ExpectRefused(ValidateJobSpec(spec), "operators[0].filter.expr: the expression is 200001 bytes");

  spec = *good;
  auto* config = spec.add_operators()->mutable_plugin();
  config->set_name("p");
  (*config->mutable_config())["k"] = std::string(kMaxPluginConfigBytes, 'v');
  ExpectRefused(ValidateJobSpec(spec), "operators[1].plugin.config: the plugin config is 65537 bytes");

  spec = *good;
  for (int i = 0; i < kMaxOperators; ++i) spec.add_operators()->mutable_filter()->set_expr("a");
  ExpectRefused(ValidateJobSpec(spec), "257 operators, more than the limit of 256");

  spec = *good;
  spec.set_dead_letters("/" + std::string(kMaxJobSpecBytes, 'd'));
  ExpectRefused(ValidateJobSpec(spec), "more than the limit of 1048576 bytes");
}

std::string JsonNested(int depth) { return Repeat("{\"a\":", depth) + "1" + Repeat("}", depth); }

TEST(LimitsTest, AnEventNestedTooDeepIsADeadLetter) {
  Result<proto::JobSpec> spec = ParseJobFile(Job("  - parse: {format: json}\n"), "j.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  Result<std::unique_ptr<Pipeline>> p = Pipeline::Create(*spec);
  ASSERT_TRUE(p.ok()) << p.status();
  format::BlockBuilder b("s", 0, 0);
  b.Add(JsonNested(kMaxJsonDepth));
  b.Add(JsonNested(kMaxJsonDepth + 1));
  b.Add(JsonNested(100'000));
  b.Add("[" + Repeat("[", 100'000) + "]");
  std::string out;
  PipelineCounts counts;
  (*p)->Run(b.Cut(), &out, &counts);
  EXPECT_EQ(counts.output, 1);
  EXPECT_EQ(counts.dead_letters, 3);
  EXPECT_THAT(counts.dead_letter_lines, HasSubstr("offset\":1,\"error\":\"JSON objects nested deeper than the limit "
                                                  "of 64\""));
  EXPECT_THAT(out, HasSubstr(std::string("\"") + Repeat("a.", kMaxJsonDepth - 1) + "a\":1"));
}

}  // namespace
}  // namespace sluice::engine
