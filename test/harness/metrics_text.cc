#include "test/harness/metrics_text.h"

#include <cmath>
#include <sstream>

namespace sluice::testing {
namespace {

std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out += s[i + 1] == 'n' ? '\n' : s[i + 1];
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::optional<double> ParsedMetrics::Value(const std::string& name,
                                           const std::map<std::string, std::string>& labels) const {
  for (const MetricSample& s : samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return std::nullopt;
}

double ParsedMetrics::Sum(const std::string& name, const std::map<std::string, std::string>& match,
                          int* count) const {
  double sum = 0;
  int n = 0;
  for (const MetricSample& s : samples) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& [k, v] : match) {
      auto it = s.labels.find(k);
      all = all && it != s.labels.end() && it->second == v;
    }
    if (!all) continue;
    sum += s.value;
    ++n;
  }
  if (count != nullptr) *count = n;
  return sum;
}

std::set<std::string> ParsedMetrics::Families() const {
  std::set<std::string> out;
  for (const auto& [name, t] : type) out.insert(name);
  return out;
}

ParsedMetrics ParseMetrics(const std::string& text) {
  ParsedMetrics p;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      const size_t sp = line.find(' ', 7);
      const std::string name = line.substr(7, sp - 7);
      const std::string rest = sp == std::string::npos ? "" : line.substr(sp + 1);
      (line[2] == 'T' ? p.type : p.help)[name] = line[2] == 'T' ? rest : Unescape(rest);
      continue;
    }
    if (line[0] == '#') continue;
    MetricSample s;
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
            value += line[i + 1] == 'n' ? '\n' : line[i + 1];
            i += 2;
          } else {
            value += line[i++];
          }
        }
        ++i;
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') {
      p.error = line;
      return p;
    }
    const std::string v = line.substr(i + 1);
    try {
      s.value = v == "+Inf" ? INFINITY : v == "-Inf" ? -INFINITY : v == "NaN" ? NAN : std::stod(v);
    } catch (...) {
      p.error = line;
      return p;
    }
    p.samples.push_back(std::move(s));
  }
  return p;
}

}  // namespace sluice::testing
