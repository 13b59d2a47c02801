// Unit tests of job files (lib/engine/job_file.h): the whole language, and
// every kind of mistake with its file, line and field.
#include "lib/engine/job_file.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::engine {
namespace {

using ::testing::HasSubstr;

constexpr const char* kGood = R"(# clicks from the Netherlands, projected
name: nl-clicks
batch_interval: 500ms
sources:
  - events
  - name: clicks
    kind: generator
    partitions: 4
    rate: 10000
operators:
  - parse: {format: json}
  - filter: {expr: "country == 'NL' and amount > 10"}
  - map:
      fields: {double: amount * 2}
  - project: {fields: [id, country, double], rename: {double: amount2}}
  - flat_map: {split: tags, separator: ","}
sink:
  file: {path: /tmp/out, format: csv}
max_batches_in_flight: 3
)";

std::string ErrorOf(const std::string& text) {
  Result<proto::JobSpec> job = ParseJobFile(text, "jobs/x.yaml");
  EXPECT_FALSE(job.ok()) << text;
  return job.ok() ? "" : std::string(job.status().message());
}

TEST(JobFileTest, ReadsEveryPartOfAJob) {
  Result<proto::JobSpec> job = ParseJobFile(kGood, "jobs/nl.yaml");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->name(), "nl-clicks");
  EXPECT_EQ(job->batch_interval_ms(), 500);
  EXPECT_THAT(job->sources(), ::testing::ElementsAre("events", "clicks"));
  ASSERT_EQ(job->inline_sources_size(), 1);
  EXPECT_EQ(job->inline_sources(0).kind(), proto::SOURCE_KIND_GENERATOR);
  EXPECT_EQ(job->inline_sources(0).generator().rate_per_partition(), 10000);
  ASSERT_EQ(job->operators_size(), 5);
  EXPECT_EQ(job->operators(0).parse().format(), "json");
  EXPECT_EQ(job->operators(1).filter().expr(), "country == 'NL' and amount > 10");
  EXPECT_EQ(job->operators(1).line(), 12);
  EXPECT_EQ(job->operators(2).map().fields().at("double"), "amount * 2");
  EXPECT_THAT(job->operators(3).project().fields(), ::testing::ElementsAre("id", "country", "double"));
  EXPECT_EQ(job->operators(3).project().rename().at("double"), "amount2");
  EXPECT_EQ(job->operators(4).flat_map().separator(), ",");
  EXPECT_EQ(job->sink().file().path(), "/tmp/out");
  EXPECT_EQ(job->sink().file().format(), "csv");
  EXPECT_EQ(job->max_batches_in_flight(), 3);
  EXPECT_EQ(job->max_task_failures(), 4);  // default
  EXPECT_EQ(job->file(), "jobs/nl.yaml");
  EXPECT_TRUE(ValidateJobSpec(*job).ok());
}

TEST(JobFileTest, TheNullSinkIsWrittenAsPlainYaml) {
  Result<proto::JobSpec> job = ParseJobFile("name: j\nsources: [e]\nsink: {null: {}}\n", "j.yaml");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_TRUE(job->sink().has_null());
  job = ParseJobFile("name: j\nsources: [e]\nsink:\n  stdout:\n", "j.yaml");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_TRUE(job->sink().has_stdout());
}

TEST(JobFileTest, BackpressureAndTheBatchBound) {
  Result<proto::JobSpec> job = ParseJobFile(
      "name: j\nsources: [e]\nsink: {null: {}}\nmax_records_per_batch: 200000\n"
      "backpressure: {enabled: false, initial_rate: 50000, min_rate: 500}\n",
      "j.yaml");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->max_records_per_batch(), 200'000);
  EXPECT_TRUE(job->backpressure().disabled());
  EXPECT_EQ(job->backpressure().initial_rate(), 50'000);
  EXPECT_EQ(job->backpressure().min_rate(), 500);
  job = ParseJobFile("name: j\nsources: [e]\nsink: {null: {}}\n", "j.yaml");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_FALSE(job->backpressure().disabled());  // on by default
  EXPECT_EQ(job->max_records_per_batch(), 0);    // no bound
  auto error = [](const std::string& tail) {
    return std::string(ParseJobFile("name: j\nsources: [e]\nsink: {null: {}}\n" + tail, "j.yaml").status().message());
  };
  EXPECT_EQ(error("max_records_per_batch: 0\n"), "j.yaml: line 4: max_records_per_batch: 0 is not in 1..1000000000000");
  EXPECT_EQ(error("max_records_per_batch: 10000000000000000\n"),
            "j.yaml: line 4: max_records_per_batch: 10000000000000000 is not in 1..1000000000000");
  EXPECT_EQ(error("backpressure: {enabled: maybe}\n"), "j.yaml: line 4: backpressure.enabled: expected true or false");
  EXPECT_EQ(error("backpressure: {rate: 5}\n"),
            "j.yaml: line 4: backpressure.rate: unknown field 'rate' (expected one of: enabled, initial_rate, min_rate)");
}

TEST(JobFileTest, JsonIsYamlToo) {
  Result<proto::JobSpec> job = ParseJobFile(
      R"({"name": "j", "sources": ["events"], "operators": [{"filter": "n > 1"}], "sink": {"null": {}}})", "j.json");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->batch_interval_ms(), 1000);
  EXPECT_EQ(job->operators(0).filter().expr(), "n > 1");
  EXPECT_TRUE(job->sink().has_null());
}

TEST(JobFileTest, EachKindOfMistakeNamesFileLineAndField) {
  const std::string base = "name: j\nsources: [events]\nsink: {stdout: {}}\n";
  EXPECT_THAT(ErrorOf(base + "operators:\n  - filter: {regon: x}\n"),
              HasSubstr("jobs/x.yaml: line 5: operators[0].filter.regon: unknown field 'regon' (expected one of: expr)"));
  EXPECT_THAT(ErrorOf(base + "operators:\n  - filter: {expr: \"amount >\"}\n"),
              HasSubstr("line 5: operators[0].filter.expr: column 9: expected a value"));
  EXPECT_THAT(ErrorOf(base + "operators:\n  - sort: {by: x}\n"),
              HasSubstr("line 5: operators[0]: unknown operator 'sort'"));
  EXPECT_THAT(ErrorOf(base + "operators:\n  - parse: {format: xml}\n"),
              HasSubstr("operators[0].parse.format: 'xml' is not json, csv or raw"));
  EXPECT_THAT(ErrorOf(base + "operators:\n  - parse: {format: csv}\n"), HasSubstr("csv needs the column names"));
  EXPECT_THAT(ErrorOf(base + "batch_interval: soon\n"),
              HasSubstr("line 4: batch_interval: 'soon' is not a duration"));
  EXPECT_THAT(ErrorOf(base + "batch_interval: 5ms\n"), HasSubstr("not between 10ms and 1h"));
  EXPECT_THAT(ErrorOf(base + "max_batches_in_flight: 0\n"), HasSubstr("max_batches_in_flight: 0 is not in 1..100"));
  EXPECT_THAT(ErrorOf(base + "colour: blue\n"), HasSubstr("line 4: colour: unknown field 'colour'"));
  EXPECT_THAT(ErrorOf("name: j\nsources: [events]\n"), HasSubstr("sink: a job needs a sink"));
  EXPECT_THAT(ErrorOf("name: j\nsink: {null: {}}\n"), HasSubstr("sources: a job needs at least one source"));
  EXPECT_THAT(ErrorOf("name: 'bad/name'\nsources: [e]\nsink: {null: {}}\n"), HasSubstr("line 1: name:"));
  EXPECT_THAT(ErrorOf("name: j\nsources: [e]\nsink: {s3: {}}\n"), HasSubstr("line 3: sink: unknown sink 's3'"));
  EXPECT_THAT(ErrorOf("name: j\nsources: [e]\nsink: {file: {format: csv}}\n"), HasSubstr("needs a path"));
  EXPECT_THAT(ErrorOf("name: j\nsources:\n  - {name: s, kind: ftp}\nsink: {null: {}}\n"),
              HasSubstr("line 3: sources[0].kind: 'ftp' is not generator, kafka or socket"));
  EXPECT_THAT(ErrorOf("name: j\nsources:\n  - {name: s, kind: generator, partitions: many}\nsink: {null: {}}\n"),
              HasSubstr("sources[0].partitions: 'many' is not a whole number"));
  EXPECT_THAT(ErrorOf(base + "operators:\n  - plugin: {path: libx.so}\n"),
              HasSubstr("line 5: operators[0].plugin.path: 'libx.so' is a path: plugins are loaded by name from "
                        "the workers' plugin-dirs: use name: x and install the library in one of them"));
  EXPECT_THAT(ErrorOf(base + "operators:\n  - plugin: {config: {a: b}}\n"),
              HasSubstr("plugin needs the name of its library (name: NAME loads NAME.so)"));
  EXPECT_THAT(ErrorOf(base + "operators:\n  - plugin: {name: a/b}\n"),
              HasSubstr("operators[0].plugin.name: 'a/b' is not a plugin name"));
  EXPECT_THAT(ErrorOf("name: [j\n"), HasSubstr("jobs/x.yaml: line 2: not valid YAML: end of sequence flow not found"));
  EXPECT_THAT(ErrorOf(base + "dead_letters: rejects\n"),
              HasSubstr("line 4: dead_letters: 'rejects' is not an absolute directory"));
  EXPECT_THAT(ErrorOf(""), HasSubstr("the job file is empty"));
  EXPECT_THAT(ErrorOf("- just\n- a list\n"), HasSubstr("job: expected a mapping"));
}

TEST(JobFileTest, ValidationRefusesASpecFromAnywhere) {
  Result<proto::JobSpec> job = ParseJobFile(kGood, "jobs/nl.yaml");
  ASSERT_TRUE(job.ok());
  proto::JobSpec bad = *job;
  bad.mutable_operators(1)->mutable_filter()->set_expr("x ==");
  EXPECT_THAT(std::string(ValidateJobSpec(bad).message()),
              HasSubstr("jobs/nl.yaml: line 12: operators[1].filter.expr: column 5"));
  bad = *job;
  bad.clear_sink();
  EXPECT_THAT(std::string(ValidateJobSpec(bad).message()), HasSubstr("sink: none given"));
}

}  // namespace
}  // namespace sluice::engine

namespace sluice::engine {
namespace {

// The keyed operators of docs/state.md: read and checked; a second keyed
// stage after the first is a shape that cannot run (CheckRunnable).
TEST(KeyedJobFileTest, KeyByAggregateWindowAndUpdateStateAreRead) {
  Result<proto::JobSpec> job = ParseJobFile(R"(name: counts
batch_interval: 2s
sources: [events]
operators:
  - parse: {format: json}
  - key_by: [user, page]
  - window: {type: sliding, length: 30s, slide: 10s, event_time: ts, max_delay: 2s, allowed_lateness: 5s}
  - aggregate:
      - {fn: count}
      - {fn: sum, field: amount, as: total}
      - {fn: top_k, field: page, k: 3}
  - key_by: user
  - update_state: {running: [{fn: avg, field: total}], timeout: 10m}
reduce_partitions: 16
sink: {null: {}}
)",
                                            "counts.yaml");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->reduce_partitions(), 16);
  EXPECT_THAT(job->operators(1).key_by().fields(), ::testing::ElementsAre("user", "page"));
  const proto::WindowOp& w = job->operators(2).window();
  EXPECT_EQ(w.type(), "sliding");
  EXPECT_EQ(w.length_ms(), 30'000);
  EXPECT_EQ(w.slide_ms(), 10'000);
  EXPECT_EQ(w.event_time(), "ts");
  EXPECT_EQ(w.max_delay_ms(), 2'000);
  EXPECT_EQ(w.allowed_lateness_ms(), 5'000);
  const proto::AggregateOp& a = job->operators(3).aggregate();
  ASSERT_EQ(a.aggregations_size(), 3);
  EXPECT_EQ(a.aggregations(0).as(), "count");
  EXPECT_EQ(a.aggregations(1).as(), "total");
  EXPECT_EQ(a.aggregations(2).as(), "top_k_page");
  EXPECT_EQ(a.aggregations(2).k(), 3);
  EXPECT_EQ(job->operators(5).update_state().running(0).fn(), "avg");
  EXPECT_EQ(job->operators(5).update_state().timeout_ms(), 600'000);

  Status runnable = CheckRunnable(*job);
  EXPECT_TRUE(absl::IsInvalidArgument(runnable)) << runnable;
  EXPECT_THAT(std::string(runnable.message()),
              HasSubstr("counts.yaml: line 12: operators[4]: the keyed stage (key_by ... aggregate/update_state) "
                        "must be the job's last operators"));
}

TEST(KeyedJobFileTest, EachKeyedMistakeNamesFileLineAndField) {
  const std::string base = "name: j\nsources: [events]\nsink: {stdout: {}}\noperators:\n";
  EXPECT_THAT(ErrorOf(base + "  - aggregate: [{fn: count}]\n"),
              HasSubstr("line 5: operators[0].aggregate: needs a key_by before it"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - aggregate: [{fn: median, field: x}]\n"),
              HasSubstr("line 6: operators[1].aggregate[0].fn: 'median' is not one of count, sum"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - aggregate: [{fn: sum}]\n"), HasSubstr("sum needs a field"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - aggregate: [{fn: count, field: x}]\n"),
              HasSubstr("count takes no field"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - aggregate: [{fn: top_k, field: x}]\n"), HasSubstr("top_k needs k"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - aggregate: [{fn: top_k, field: x, k: 0}]\n"),
              HasSubstr("k: 0 is not in 1..1000"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - window: {type: tumbling, length: 1500ms}\n  - aggregate: [{fn: count}]\n"),
              HasSubstr("1500 ms is not a multiple of the batch interval, 1000 ms"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - window: {type: sliding, length: 10s, slide: 3s}\n"
                             "  - aggregate: [{fn: count}]\n"),
              HasSubstr("window.slide: 3000 ms does not divide the length, 10000 ms"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - window: {type: session, gap: 30s}\n  - aggregate: [{fn: count}]\n"),
              HasSubstr("a session window needs an event_time field"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - window: {type: hopping, length: 2s}\n  - aggregate: [{fn: count}]\n"),
              HasSubstr("window.type: 'hopping' is not tumbling, sliding or session"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - window: {type: tumbling, length: 2s}\n  - project: {fields: [u]}\n"),
              HasSubstr("line 7: operators[2]: a window must be followed by aggregate"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - window: {type: tumbling, length: 2s, max_delay: 1s}\n"
                             "  - aggregate: [{fn: count}]\n"),
              HasSubstr("max_delay and allowed_lateness need an event_time field"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - window: {type: tumbling, length: 2s}\n"),
              HasSubstr("operators: a window must be followed by aggregate"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - update_state: {timeout: 1m}\n"),
              HasSubstr("needs either running: [functions] or plugin: <name>"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - update_state: {running: [{fn: top_k, field: x, k: 2}]}\n"),
              HasSubstr("'top_k' is not one of count, sum, min, max, avg"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - update_state: {plugin: /opt/rel.so}\n"),
              HasSubstr("update_state.plugin: '/opt/rel.so' is a path: plugins are loaded by name"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: u\n  - update_state: {plugin: '..'}\n"),
              HasSubstr("update_state.plugin: '..' is not a plugin name"));
  EXPECT_THAT(ErrorOf(base + "  - key_by: {fields: []}\n"), HasSubstr("key_by needs at least one field"));
  EXPECT_THAT(ErrorOf("name: j\nsources: [e]\nsink: {null: {}}\nreduce_partitions: 0\n"),
              HasSubstr("reduce_partitions: 0 is not in 1..1024"));
}

}  // namespace
}  // namespace sluice::engine
