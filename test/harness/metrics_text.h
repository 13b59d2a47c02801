// ParseMetrics: the Prometheus text exposition format (0.0.4) read back, as
// far as lib/metrics writes it — samples with their (unescaped) labels, and
// each family's HELP and TYPE — for tests that scrape a daemon's /metrics.
//
// Part of sluice::test_harness. Thread-compatible.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sluice::testing {

struct MetricSample {
  std::string name;  // as written: a histogram's have _bucket, _sum, _count
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct ParsedMetrics {
  std::map<std::string, std::string> help, type;  // by family name
  std::vector<MetricSample> samples;
  std::string error;  // the first line that did not parse; "" if all did

  // The value of the sample with exactly these labels, if there is one.
  std::optional<double> Value(const std::string& name, const std::map<std::string, std::string>& labels = {}) const;
  // The sum over the samples named `name` whose labels include `match`
  // (0 if none); `count` (if given) gets how many there were.
  double Sum(const std::string& name, const std::map<std::string, std::string>& match = {},
             int* count = nullptr) const;
  // The family names (those with a TYPE line).
  std::set<std::string> Families() const;
};

ParsedMetrics ParseMetrics(const std::string& text);

}  // namespace sluice::testing
