// Unit tests of the metrics registry (lib/metrics/metrics.h): what it
// exposes is parsed back by a small parser of the Prometheus text format
// written here — samples with their labels (unescaped), HELP and TYPE —
// including histograms' cumulative buckets and awkward label values.
#include "lib/metrics/metrics.h"

#include <cmath>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::metrics {
namespace {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value;
};

struct Parsed {
  std::map<std::string, std::string> help, type;
  std::vector<Sample> samples;
  std::string error;  // the first line that did not parse
};

// The text format, version 0.0.4, as far as the registry writes it.
Parsed Parse(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      const size_t sp = line.find(' ', 7);
      const std::string name = line.substr(7, sp - 7);
      std::string rest = sp == std::string::npos ? "" : line.substr(sp + 1);
      if (line[2] == 'T') {
        p.type[name] = rest;
        continue;
      }
      std::string help;
      for (size_t i = 0; i < rest.size(); ++i) {
        if (rest[i] == '\\' && i + 1 < rest.size()) {
          help += rest[i + 1] == 'n' ? '\n' : rest[i + 1];
          ++i;
        } else {
          help += rest[i];
        }
      }
      p.help[name] = help;
      continue;
    }
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') s.name += line[i++];
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::string key, value;
        while (i < line.size() && line[i] != '=') key += line[i++];
        if (line.compare(i, 2, "=\"") != 0) {
          p.error = line;
          return p;
        }
        i += 2;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) {
            const char c = line[i + 1];
            value += c == 'n' ? '\n' : c;
            i += 2;
          } else {
            value += line[i++];
          }
        }
        ++i;  // the closing quote
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // the closing brace
    }
    if (i >= line.size() || line[i] != ' ') {
      p.error = line;
      return p;
    }
    const std::string v = line.substr(i + 1);
    s.value = v == "+Inf" ? INFINITY : v == "-Inf" ? -INFINITY : v == "NaN" ? NAN : std::stod(v);
    p.samples.push_back(std::move(s));
  }
  return p;
}

const Sample* Find(const Parsed& p, const std::string& name, const std::map<std::string, std::string>& labels) {
  for (const Sample& s : p.samples) {
    if (s.name == name && s.labels == labels) return &s;
  }
  return nullptr;
}

TEST(Metrics, CountersGaugesAndLabelsAreExposedAndParseBack) {
  Registry r;
  auto batches = r.AddCounter("sluice_batches_committed_total", "Batches committed", {"job"});
  ASSERT_TRUE(batches.ok()) << batches.status();
  (*batches)->With({"clicks"}).Inc();
  (*batches)->With({"clicks"}).Inc(2);
  (*batches)->With({"views"}).Inc(-5);  // ignored: counters only go up
  auto leader = r.AddGauge("sluice_is_leader", "1 on the serving leader");
  ASSERT_TRUE(leader.ok());
  (*leader)->Get().Set(1);
  const Parsed p = Parse(r.Expose());
  ASSERT_TRUE(p.error.empty()) << p.error;
  EXPECT_EQ(p.type.at("sluice_batches_committed_total"), "counter");
  EXPECT_EQ(p.type.at("sluice_is_leader"), "gauge");
  EXPECT_EQ(p.help.at("sluice_batches_committed_total"), "Batches committed");
  ASSERT_NE(Find(p, "sluice_batches_committed_total", {{"job", "clicks"}}), nullptr);
  EXPECT_EQ(Find(p, "sluice_batches_committed_total", {{"job", "clicks"}})->value, 3);
  EXPECT_EQ(Find(p, "sluice_batches_committed_total", {{"job", "views"}})->value, 0);
  EXPECT_EQ(Find(p, "sluice_is_leader", {})->value, 1);
}

TEST(Metrics, RemovedSeriesLeaveTheExpositionAndComeBackWithTheirValue) {
  Registry r;
  Family<Counter>* f = r.AddCounter("sluice_moves_total", "Moves", {"partition"}).value();
  Counter& held = f->With({"3"});
  held.Inc(5);
  f->With({"4"}).Inc(1);
  f->Remove({"3"});
  EXPECT_EQ(r.Expose().find("partition=\"3\""), std::string::npos);
  held.Inc(1);  // a reference handed out before stays valid
  Counter& back = f->With({"3"});
  EXPECT_EQ(&back, &held);  // the same series: a counter never goes down
  EXPECT_EQ(back.value(), 6);
  EXPECT_NE(r.Expose().find("sluice_moves_total{partition=\"3\"} 6\n"), std::string::npos) << r.Expose();
  // Coming and going again and again keeps one series per label value.
  for (int i = 0; i < 100; ++i) {
    f->Remove({"3"});
    f->With({"3"}).Inc(1);
  }
  EXPECT_EQ(f->LabelValues().size(), 2u);
  EXPECT_EQ(f->With({"3"}).value(), 106);
}

TEST(Metrics, AwkwardLabelValuesAndHelpAreEscaped) {
  Registry r;
  auto f = r.AddGauge("sluice_odd", "help with \\ and\nnewline", {"path", "q"});
  ASSERT_TRUE(f.ok());
  const std::string path = "C:\\dir\\\"quoted\"\nnext line";
  (*f)->With({path, "{a=\"b\",c}"}).Set(-2.5);
  const Parsed p = Parse(r.Expose());
  ASSERT_TRUE(p.error.empty()) << p.error;
  EXPECT_EQ(p.help.at("sluice_odd"), "help with \\ and\nnewline");
  const Sample* s = Find(p, "sluice_odd", {{"path", path}, {"q", "{a=\"b\",c}"}});
  ASSERT_NE(s, nullptr) << r.Expose();
  EXPECT_EQ(s->value, -2.5);
  // One sample per line: no raw newline inside a value.
  EXPECT_EQ(p.samples.size(), 1u);
}

TEST(Metrics, HistogramsHaveCumulativeBucketsSumAndCount) {
  Registry r;
  auto f = r.AddHistogram("sluice_batch_total_delay_seconds", "Batch time to last task done", {0.1, 0.5, 1},
                          {"job"});
  ASSERT_TRUE(f.ok()) << f.status();
  Histogram& h = (*f)->With({"j"});
  for (double v : {0.05, 0.1, 0.3, 0.7, 0.9, 5.0}) h.Observe(v);
  const Parsed p = Parse(r.Expose());
  ASSERT_TRUE(p.error.empty()) << p.error;
  EXPECT_EQ(p.type.at("sluice_batch_total_delay_seconds"), "histogram");
  auto bucket = [&](const std::string& le) {
    const Sample* s = Find(p, "sluice_batch_total_delay_seconds_bucket", {{"job", "j"}, {"le", le}});
    return s ? s->value : -1;
  };
  EXPECT_EQ(bucket("0.1"), 2);  // le: 0.05 and exactly 0.1
  EXPECT_EQ(bucket("0.5"), 3);
  EXPECT_EQ(bucket("1"), 5);
  EXPECT_EQ(bucket("+Inf"), 6);
  EXPECT_EQ(Find(p, "sluice_batch_total_delay_seconds_count", {{"job", "j"}})->value, 6);
  EXPECT_NEAR(Find(p, "sluice_batch_total_delay_seconds_sum", {{"job", "j"}})->value, 7.05, 1e-9);
}

TEST(Metrics, BadNamesAndConflictingRegistrationsAreRefusedNamingTheMetric) {
  Registry r;
  EXPECT_EQ(std::string(r.AddCounter("sluice_batches", "x").status().message()),
            "metric 'sluice_batches': a counter's name ends in _total");
  EXPECT_FALSE(r.AddGauge("batches", "no prefix").ok());
  EXPECT_FALSE(r.AddGauge("sluice_bad-name", "x").ok());
  EXPECT_FALSE(r.AddGauge("sluice_g", "x", {"__reserved"}).ok());
  EXPECT_FALSE(r.AddHistogram("sluice_h", "x", {1, 0.5}).ok());
  EXPECT_FALSE(r.AddHistogram("sluice_h", "x", {1}, {"le"}).ok());
  // The same registration again is the same family (probes in two modules).
  auto a = r.AddGauge("sluice_g", "x", {"job"});
  auto b = r.AddGauge("sluice_g", "x", {"job"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  // The same name with other help, labels or type is a conflict.
  EXPECT_TRUE(absl::IsAlreadyExists(r.AddGauge("sluice_g", "other help", {"job"}).status()));
  EXPECT_TRUE(absl::IsAlreadyExists(r.AddGauge("sluice_g", "x", {"worker"}).status()));
  auto as_counter = r.AddHistogram("sluice_g", "x", {1}, {"job"});
  EXPECT_EQ(std::string(as_counter.status().message()),
            "metric 'sluice_g' is registered already as a gauge with other help, labels or buckets");
}

TEST(Metrics, UpdatesFromManyThreadsAreAllCounted) {
  Registry r;
  auto c = r.AddCounter("sluice_events_total", "x");
  auto h = r.AddHistogram("sluice_d_seconds", "x", DelayBuckets());
  ASSERT_TRUE(c.ok() && h.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10'000; ++i) {
        (*c)->Get().Inc();
        (*h)->Get().Observe(0.2);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ((*c)->Get().value(), 40'000);
  EXPECT_EQ((*h)->Get().count(), 40'000u);
  EXPECT_NEAR((*h)->Get().sum(), 8'000, 1e-6);
}

}  // namespace
}  // namespace sluice::metrics
