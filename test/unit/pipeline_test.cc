// Unit tests of the operators over blocks (lib/engine/pipeline.h).
#include "lib/engine/pipeline.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/engine/job_file.h"
#include "lib/source/generator_source.h"

namespace sluice::engine {
namespace {

format::Block MakeBlock(const std::vector<std::string>& records) {
  format::BlockBuilder b("s", 0, 100);
  for (const auto& r : records) b.Add(r);
  return b.Cut();
}

std::unique_ptr<Pipeline> Make(const std::string& operators) {
  Result<proto::JobSpec> spec = ParseJobFile("name: j\nsources: [s]\nsink: {stdout: {}}\noperators:\n" + operators, "j.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  Result<std::unique_ptr<Pipeline>> p = Pipeline::Create(*spec);
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(*p);
}

TEST(PipelineTest, ParseFilterMapProjectWithDeadLetters) {
  auto p = Make(R"(  - parse: {format: json}
  - filter: "country == 'NL'"
  - map: {fields: {double: amount * 2}}
  - project: {fields: [id, double, user.name], rename: {user.name: who}}
)");
  format::Block block = MakeBlock({R"({"id":"a","country":"NL","amount":12.5})",
                                   R"({"id":"b","country":"DE","amount":50})",
                                   "not json at all",
                                   R"({"id":"c\"q","country":"NL","amount":3,"user":{"name":"Ada"}})"});
  std::string out;
  PipelineCounts counts;
  p->Run(block, &out, &counts);
  EXPECT_EQ(out,
            "{\"id\":\"a\",\"double\":25,\"who\":null}\n"
            "{\"id\":\"c\\\"q\",\"double\":6,\"who\":\"Ada\"}\n");
  EXPECT_EQ(counts.input, 4);
  EXPECT_EQ(counts.output, 2);
  EXPECT_EQ(counts.dead_letters, 1);
  EXPECT_THAT(counts.last_dead_letter, ::testing::HasSubstr("offset 102: not a JSON object"));
  EXPECT_EQ(counts.dead_letter_lines,
            "{\"source\":\"s\",\"partition\":0,\"offset\":102,\"error\":\"not a JSON object\","
            "\"record\":\"not json at all\"}\n");
}

TEST(PipelineTest, TheFileSinkWritesCsvRowsWhenAskedTo) {
  Result<proto::JobSpec> spec = ParseJobFile(
      "name: j\nsources: [s]\nsink: {file: {path: /tmp/x, format: csv}}\noperators:\n"
      "  - parse: {format: json}\n  - project: {fields: [id, n, ok, none]}\n",
      "j.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  Result<std::unique_ptr<Pipeline>> p = Pipeline::Create(*spec);
  ASSERT_TRUE(p.ok()) << p.status();
  std::string out;
  PipelineCounts counts;
  (*p)->Run(MakeBlock({R"({"id":"a","n":1.5,"ok":true})", R"({"id":"b,\"c\"","n":2,"ok":false,"none":null})"}), &out,
            &counts);
  EXPECT_EQ(out, "a,1.5,true,\n\"b,\"\"c\"\"\",2,false,\n");
}

TEST(PipelineTest, CsvRawAndFlatMap) {
  auto csv = Make("  - parse: {format: csv, fields: [user, n]}\n  - filter: \"user != 'bob'\"\n");
  std::string out;
  PipelineCounts counts;
  csv->Run(MakeBlock({"ann,1", "bob,2", "cid"}), &out, &counts);
  EXPECT_EQ(out, "{\"user\":\"ann\",\"n\":\"1\"}\n{\"user\":\"cid\",\"n\":\"\"}\n");

  auto words = Make("  - parse: {format: raw}\n  - flat_map: {split: line, as: word}\n"
                    "  - project: {fields: [word]}\n");
  out.clear();
  words->Run(MakeBlock({"to be  or", "not"}), &out, &counts);
  EXPECT_EQ(out, "{\"word\":\"to\"}\n{\"word\":\"be\"}\n{\"word\":\"or\"}\n{\"word\":\"not\"}\n");
}

// A record followed by enough bytes of its block is parsed where it is, the
// last ones of a block in a padded copy: the same records give the same
// lines and dead letters either way, truncated ones included (the bytes
// after a record are the next record's, never part of it).
TEST(PipelineTest, RecordsParseTheSameInsideABlockAsAtItsEnd) {
  const std::vector<std::string> records = {
      R"({"a":1,"b":"x"})",
      R"({"a":2)",
      R"({"k\"ey":"v\\w","n":{"m":{"o":3}},"arr":[1,{"z":2}],"t":true,"nil":null})",
      R"({"a":)",
      R"({"a":"unterminated)",
      R"(["not","an","object"])",
      R"({"a":1e3,"b":"\u00e9"} trailing)",
      R"({"a":4,"b":"y"})",
  };
  const std::string ops = R"(  - parse: {format: json}
  - project: {fields: [a, b, 'k"ey', n.m.o, arr, t, nil]}
)";
  std::vector<std::string> many;
  for (int i = 0; i < 20; ++i) many.insert(many.end(), records.begin(), records.end());
  auto together = Make(ops);
  std::string out_together;
  PipelineCounts counts_together;
  together->Run(MakeBlock(many), &out_together, &counts_together);
  auto alone = Make(ops);
  std::string out_alone;
  PipelineCounts counts_alone;
  for (const std::string& r : many) alone->Run(MakeBlock({r}), &out_alone, &counts_alone);
  EXPECT_EQ(out_together, out_alone);
  EXPECT_EQ(counts_together.output, counts_alone.output);
  EXPECT_EQ(counts_together.dead_letters, counts_alone.dead_letters);
  EXPECT_GT(counts_together.dead_letters, 0);
  EXPECT_THAT(out_together, ::testing::HasSubstr(R"({"a":1,"b":"x","k\"ey":null)"));
  EXPECT_THAT(out_together, ::testing::HasSubstr(R"("k\"ey":"v\\w","n.m.o":3,"arr":"[1,{\"z\":2}]","t":true)"));
}

// The generator's events, filtered: exactly the events whose value passes,
// checked against the generator's own text.
TEST(PipelineTest, GeneratorEventsThroughAFilterMatchAnIndependentCount) {
  source::GeneratorOptions o{.partitions = 1, .num_keys = 10, .payload_size = 200};
  source::GeneratorSource gen(o, Clock::Real());
  format::BlockBuilder b("gen", 0, 0);
  gen.ReadInto(0, 10'000, 10'000, &b);
  format::Block block = b.Cut();
  int64_t expected = 0;
  for (int64_t i = 0; i < 10'000; ++i) {
    const std::string e = gen.EventString(0, i);
    if (e.find("\"key\":\"k00000003\"") != std::string::npos) ++expected;
  }
  ASSERT_GT(expected, 0);
  auto p = Make("  - parse: {format: json}\n  - filter: \"key == 'k00000003' and v >= 0\"\n  - project: {fields: [id]}\n");
  std::string out;
  PipelineCounts counts;
  p->Run(block, &out, &counts);
  EXPECT_EQ(counts.input, 10'000);
  EXPECT_EQ(counts.output, expected);
  EXPECT_EQ(counts.dead_letters, 0);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), expected);
}

}  // namespace
}  // namespace sluice::engine
