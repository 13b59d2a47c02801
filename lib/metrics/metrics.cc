#include "lib/metrics/metrics.h"

#include <algorithm>
#include <cmath>

#include "spdlog/fmt/fmt.h"

namespace sluice::metrics {
namespace {

bool ValidName(const std::string& s, bool colon) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

void AtomicAdd(std::atomic<double>& a, double by) {
  double old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, old + by, std::memory_order_relaxed)) {
  }
}

// {a="x",b="y"} with `extra` (e.g. le="0.5") appended; empty without labels.
std::string Labels(const std::vector<std::string>& names, const std::vector<std::string>& values,
                   const std::string& extra = "") {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    out += (out.empty() ? "" : ",") + names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (!extra.empty()) out += (out.empty() ? "" : ",") + extra;
  return out.empty() ? out : "{" + out + "}";
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

void Counter::Inc(double by) {
  if (by > 0) AtomicAdd(value_, by);
}

void Gauge::Add(double by) { AtomicAdd(value_, by); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i] = 0;
}

void Histogram::Observe(double v) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();  // le: v <= bound
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::counts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  for (size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

std::vector<double> DelayBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

void Counter::RaiseTo(double total) {
  double cur = value_.load(std::memory_order_relaxed);
  while (total > cur && !value_.compare_exchange_weak(cur, total, std::memory_order_relaxed)) {
  }
}

template <typename M>
void Family<M>::Remove(const std::vector<std::string>& label_values) {
  std::vector<std::string> key = label_values;
  key.resize(label_names_.size());
  std::lock_guard<std::mutex> lock(mu_);
  auto it = metrics_.find(key);
  if (it == metrics_.end()) return;
  removed_[key] = std::move(it->second);
  metrics_.erase(it);
}

template <typename M>
std::vector<std::vector<std::string>> Family<M>::LabelValues() const {
  std::vector<std::vector<std::string>> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, m] : metrics_) out.push_back(values);
  return out;
}

template <typename M>
M& Family<M>::With(const std::vector<std::string>& label_values) {
  std::vector<std::string> key = label_values;
  key.resize(label_names_.size());  // missing values are empty, extra ones dropped
  std::lock_guard<std::mutex> lock(mu_);
  auto it = metrics_.find(key);
  if (it == metrics_.end()) {
    if (auto gone = removed_.find(key); gone != removed_.end()) {
      it = metrics_.emplace(std::move(key), std::move(gone->second)).first;
      removed_.erase(gone);
      return *it->second;
    }
    std::shared_ptr<M> m;
    if constexpr (std::is_same_v<M, Histogram>) {
      m = std::make_shared<Histogram>(bounds_);
    } else {
      m = std::make_shared<M>();
    }
    it = metrics_.emplace(std::move(key), std::move(m)).first;
  }
  return *it->second;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Result<Registry::Entry*> Registry::Add(const std::string& name, Type type, const std::string& help,
                                       std::vector<std::string> label_names, std::vector<double> bounds) {
  if (!ValidName(name, true) || name.rfind("sluice_", 0) != 0) {
    return absl::InvalidArgumentError(fmt::format("metric '{}': a name is sluice_ then [a-zA-Z0-9_:]", name));
  }
  if (type == Type::kCounter && (name.size() < 6 || name.compare(name.size() - 6, 6, "_total") != 0)) {
    return absl::InvalidArgumentError(fmt::format("metric '{}': a counter's name ends in _total", name));
  }
  for (const std::string& l : label_names) {
    if (!ValidName(l, false) || l.rfind("__", 0) == 0 || (type == Type::kHistogram && l == "le")) {
      return absl::InvalidArgumentError(fmt::format("metric '{}': '{}' is not a valid label name", name, l));
    }
  }
  if (type == Type::kHistogram &&
      (bounds.empty() || !std::is_sorted(bounds.begin(), bounds.end()) ||
       std::adjacent_find(bounds.begin(), bounds.end()) != bounds.end() || !std::isfinite(bounds.back()))) {
    return absl::InvalidArgumentError(fmt::format("metric '{}': buckets must be finite and increasing", name));
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it != entries_.end()) {
    const Entry& e = it->second;
    if (e.type != type || e.help != help || e.label_names != label_names || e.bounds != bounds) {
      return absl::AlreadyExistsError(
          fmt::format("metric '{}' is registered already as a {} with other help, labels or buckets", name,
                      TypeName(e.type)));
    }
    return &it->second;
  }
  Entry e{type, help, label_names, bounds, nullptr};
  switch (type) {
    case Type::kCounter:
      e.family.reset(new Family<Counter>(label_names, {}));
      break;
    case Type::kGauge:
      e.family.reset(new Family<Gauge>(label_names, {}));
      break;
    case Type::kHistogram:
      e.family.reset(new Family<Histogram>(label_names, bounds));
      break;
  }
  return &entries_.emplace(name, std::move(e)).first->second;
}

Result<Family<Counter>*> Registry::AddCounter(const std::string& name, const std::string& help,
                                              std::vector<std::string> label_names) {
  ASSIGN_OR_RETURN(Entry * e, Add(name, Type::kCounter, help, std::move(label_names), {}));
  return static_cast<Family<Counter>*>(e->family.get());
}

Result<Family<Gauge>*> Registry::AddGauge(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names) {
  ASSIGN_OR_RETURN(Entry * e, Add(name, Type::kGauge, help, std::move(label_names), {}));
  return static_cast<Family<Gauge>*>(e->family.get());
}

Result<Family<Histogram>*> Registry::AddHistogram(const std::string& name, const std::string& help,
                                                  std::vector<double> bounds, std::vector<std::string> label_names) {
  ASSIGN_OR_RETURN(Entry * e, Add(name, Type::kHistogram, help, std::move(label_names), std::move(bounds)));
  return static_cast<Family<Histogram>*>(e->family.get());
}

int Registry::AddCollector(std::function<void()> collect) {
  std::lock_guard<std::mutex> lock(collect_mu_);
  const int id = next_collector_++;
  collectors_.emplace(id, std::move(collect));
  return id;
}

void Registry::RemoveCollector(int id) {
  std::lock_guard<std::mutex> lock(collect_mu_);
  collectors_.erase(id);
}

std::string Registry::Expose() const {
  {
    std::lock_guard<std::mutex> lock(collect_mu_);
    for (const auto& [id, collect] : collectors_) collect();
  }
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& entry : entries_) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one.
    const std::string& name = entry.first;
    const Entry& e = entry.second;
    out += "# HELP " + name + " " + EscapeHelp(e.help) + "\n";
    out += "# TYPE " + name + " " + TypeName(e.type) + "\n";
    auto each = [&](const auto* family, auto&& line) {
      std::lock_guard<std::mutex> family_lock(family->mu_);
      for (const auto& [values, m] : family->metrics_) line(values, *m);
    };
    switch (e.type) {
      case Type::kCounter:
        each(static_cast<const Family<Counter>*>(e.family.get()), [&](const auto& values, const Counter& c) {
          out += name + Labels(e.label_names, values) + " " + FormatValue(c.value()) + "\n";
        });
        break;
      case Type::kGauge:
        each(static_cast<const Family<Gauge>*>(e.family.get()), [&](const auto& values, const Gauge& g) {
          out += name + Labels(e.label_names, values) + " " + FormatValue(g.value()) + "\n";
        });
        break;
      case Type::kHistogram:
        each(static_cast<const Family<Histogram>*>(e.family.get()), [&](const auto& values, const Histogram& h) {
          const std::vector<uint64_t> counts = h.counts();
          uint64_t cumulative = 0;
          for (size_t i = 0; i < counts.size(); ++i) {
            cumulative += counts[i];
            const std::string le = i < h.bounds().size() ? FormatValue(h.bounds()[i]) : "+Inf";
            out += name + "_bucket" + Labels(e.label_names, values, "le=\"" + le + "\"") + " " +
                   std::to_string(cumulative) + "\n";
          }
          out += name + "_sum" + Labels(e.label_names, values) + " " + FormatValue(h.sum()) + "\n";
          out += name + "_count" + Labels(e.label_names, values) + " " + std::to_string(cumulative) + "\n";
        });
        break;
    }
  }
  return out;
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

}  // namespace sluice::metrics
