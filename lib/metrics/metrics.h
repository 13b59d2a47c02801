// Metrics: a small Prometheus registry — counters, gauges and histograms
// with fixed buckets, in families by label values — and the text exposition
// format (version 0.0.4) a Prometheus server scrapes. Debian 12 packages no
// C++ Prometheus client; this is the part of one Sluice needs.
//
// Module sluice::metrics owns it. Each module registers its own metrics in
// a small probe object of its own (Redpanda's pattern), against the
// process's Registry; registering a name again with the same type, help and
// label names gives back the same family, anything else is an error naming
// the metric. Names follow Prometheus's rules ([a-zA-Z_:][a-zA-Z0-9_:]*;
// labels [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__") and the project's
// conventions (the `sluice_` prefix, `_total`, `_seconds`, `_bytes`), which
// the registry checks: a counter's name must end in `_total`.
//
// Thread-safe: metrics are updated with atomics (no lock on the hot path);
// With() and Expose() take the family's lock.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lib/common/status.h"

namespace sluice::metrics {

class Counter {
 public:
  void Inc(double by = 1);  // by >= 0; a negative amount is ignored
  // Raises the counter to `total` if that is higher: for a counter that
  // mirrors a running total kept elsewhere (a job's records, from the WAL).
  void RaiseTo(double total);
  // Back to zero: for a counter that mirrors a total which itself started
  // again (a job deleted and submitted again under its name). A scraper
  // reads the drop as a counter reset, as after a process restart.
  void Restart() { value_.store(0, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double by);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: the buckets' upper bounds, increasing; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  const std::vector<double>& bounds() const { return bounds_; }
  // Per bucket (not cumulative), the last one for +Inf.
  std::vector<uint64_t> counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

// Buckets for delays and durations in seconds: 5 ms to 60 s.
std::vector<double> DelayBuckets();

enum class Type { kCounter, kGauge, kHistogram };

// One metric name and its label names; a metric per distinct label values.
template <typename M>
class Family {
 public:
  // The metric for these label values, one per label name, in order; made
  // on first use and kept for the life of the registry.
  M& With(const std::vector<std::string>& label_values);
  // Without labels.
  M& Get() { return With({}); }
  // Drops the metric for these label values from the exposition (a job
  // no longer led here, a receiver moved away). References handed out stay
  // valid: the metric is kept, unexposed, for the life of the registry, and
  // With() the same values brings it back with its value (a counter stays
  // monotonic), so memory grows with the label values ever used, not with
  // how often they come and go.
  void Remove(const std::vector<std::string>& label_values);
  // The label values of every metric in the family.
  std::vector<std::vector<std::string>> LabelValues() const;

 private:
  friend class Registry;
  Family(std::vector<std::string> label_names, std::vector<double> bounds)
      : label_names_(std::move(label_names)), bounds_(std::move(bounds)) {}

  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;  // histograms
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::shared_ptr<M>> metrics_;  // guarded by mu_
  std::map<std::vector<std::string>, std::shared_ptr<M>> removed_;  // guarded by mu_
};

class Registry {
 public:
  [[nodiscard]] Result<Family<Counter>*> AddCounter(const std::string& name, const std::string& help,
                                                    std::vector<std::string> label_names = {});
  [[nodiscard]] Result<Family<Gauge>*> AddGauge(const std::string& name, const std::string& help,
                                                std::vector<std::string> label_names = {});
  [[nodiscard]] Result<Family<Histogram>*> AddHistogram(const std::string& name, const std::string& help,
                                                        std::vector<double> bounds,
                                                        std::vector<std::string> label_names = {});

  // A function run at the start of every Expose(), before anything is
  // written: it sets the gauges whose values are read rather than counted
  // (memory, a store's size, a leader's epoch). Returns an id for
  // RemoveCollector; collectors run one at a time, in the order added.
  int AddCollector(std::function<void()> collect);
  // After it returns, the collector is not running and will not run again.
  void RemoveCollector(int id);

  // Runs the collectors, then writes every family, sorted by name, in the
  // text exposition format.
  std::string Expose() const;

 private:
  struct Entry {
    Type type;
    std::string help;
    std::vector<std::string> label_names;
    std::vector<double> bounds;
    std::shared_ptr<void> family;  // Family<Counter|Gauge|Histogram>
  };
  [[nodiscard]] Result<Entry*> Add(const std::string& name, Type type, const std::string& help,
                                   std::vector<std::string> label_names, std::vector<double> bounds);

  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;  // guarded by mu_
  mutable std::mutex collect_mu_;         // held while collectors run
  std::map<int, std::function<void()>> collectors_;  // guarded by collect_mu_
  int next_collector_ = 1;                           // guarded by collect_mu_
};

// A label value or HELP text escaped as the exposition format wants:
// backslash, double quote (label values only) and newline.
std::string EscapeLabelValue(const std::string& v);
std::string EscapeHelp(const std::string& v);
// A sample value: Go's float formatting as Prometheus reads it (+Inf, -Inf, NaN).
std::string FormatValue(double v);

}  // namespace sluice::metrics
