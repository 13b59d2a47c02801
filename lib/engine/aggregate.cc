// The aggregate functions; encodings in aggregate.h.
#include "lib/engine/aggregate.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <utility>
#include <vector>

#include "fmt/format.h"
#include "lib/engine/json_text.h"
#include "lib/format/varint.h"

namespace sluice::engine {
namespace {

// ---- byte helpers ----

Status Corrupt(std::string_view fn) {
  return absl::DataLossError(fmt::format("corrupt {} state", fn));
}

double AsDouble(uint64_t bits) { return std::bit_cast<double>(bits); }
uint64_t AsBits(double d) { return std::bit_cast<uint64_t>(d); }

// ---- JSON output ----

// Value keys (aggregate.h): order-preserving number encoding.
uint64_t OrderedBits(double d) {
  if (d == 0) d = 0;  // -0 as 0
  uint64_t bits = AsBits(d);
  return (bits & (uint64_t{1} << 63)) ? ~bits : bits | (uint64_t{1} << 63);
}

double FromOrderedBits(uint64_t bits) {
  return AsDouble((bits & (uint64_t{1} << 63)) ? bits & ~(uint64_t{1} << 63) : ~bits);
}

// ---- the functions ----

class CountAggregator final : public Aggregator {
 public:
  CountAggregator() : Aggregator("count") {}
  Status Add(const Value&, std::string* state) const override {
    return Put(state, 1);
  }
  Status Merge(std::string_view other, std::string* state) const override {
    if (other.empty()) return absl::OkStatus();
    if (other.size() != 8) return Corrupt(fn());
    return Put(state, static_cast<int64_t>(format::GetFixed64(other.data())));
  }
  Status AppendResult(std::string_view state, std::string* out) const override {
    if (!state.empty() && state.size() != 8) return Corrupt(fn());
    const int64_t n = state.empty() ? 0 : static_cast<int64_t>(format::GetFixed64(state.data()));
    fmt::format_to(std::back_inserter(*out), "{}", n);
    return absl::OkStatus();
  }

 private:
  Status Put(std::string* state, int64_t delta) const {
    if (!state->empty() && state->size() != 8) return Corrupt(fn());
    const int64_t n = state->empty() ? 0 : static_cast<int64_t>(format::GetFixed64(state->data()));
    int64_t sum = 0;
    // No count reaches 2^63: one that would is a corrupt state.
    if (__builtin_add_overflow(n, delta, &sum)) return Corrupt(fn());
    state->clear();
    format::PutFixed64(static_cast<uint64_t>(sum), state);
    return absl::OkStatus();
  }
};

// _events: the encoded events, each length-prefixed, in Add/Merge order.
class EventListAggregator final : public Aggregator {
 public:
  EventListAggregator() : Aggregator(std::string(kEventListFn)) {}
  Status Add(const Value& value, std::string* state) const override {
    const auto* s = std::get_if<std::string_view>(&value);
    if (s == nullptr) return absl::InvalidArgumentError("_events: an event arrives as its encoding");
    format::PutLengthPrefixed(*s, state);
    return absl::OkStatus();
  }
  Status Merge(std::string_view other, std::string* state) const override {
    state->append(other);
    return absl::OkStatus();
  }
  Status AppendResult(std::string_view state, std::string* out) const override {
    size_t pos = 0, n = 0;
    std::string_view e;
    while (pos < state.size()) {
      if (!format::GetLengthPrefixed(state, &pos, &e)) return Corrupt(fn());
      ++n;
    }
    fmt::format_to(std::back_inserter(*out), "{}", n);
    return absl::OkStatus();
  }
};

// sum (with_count false): [double]; avg (with_count true): [double][int64].
class SumAggregator final : public Aggregator {
 public:
  explicit SumAggregator(bool avg) : Aggregator(avg ? "avg" : "sum"), avg_(avg) {}
  Status Add(const Value& value, std::string* state) const override {
    const double* d = std::get_if<double>(&value);
    if (d == nullptr || std::isnan(*d)) return absl::OkStatus();
    return Combine(*d, 1, state);
  }
  Status Merge(std::string_view other, std::string* state) const override {
    if (other.empty()) return absl::OkStatus();
    if (other.size() != Size()) return Corrupt(fn());
    return Combine(AsDouble(format::GetFixed64(other.data())),
                   avg_ ? static_cast<int64_t>(format::GetFixed64(other.data() + 8)) : 0, state);
  }
  Status AppendResult(std::string_view state, std::string* out) const override {
    if (state.empty()) {
      out->append("null");
      return absl::OkStatus();
    }
    if (state.size() != Size()) return Corrupt(fn());
    const double sum = AsDouble(format::GetFixed64(state.data()));
    if (!avg_) {
      AppendJsonNumber(sum, out);
      return absl::OkStatus();
    }
    const auto n = static_cast<int64_t>(format::GetFixed64(state.data() + 8));
    if (n <= 0) return Corrupt(fn());
    AppendJsonNumber(sum / static_cast<double>(n), out);
    return absl::OkStatus();
  }

 private:
  size_t Size() const { return avg_ ? 16 : 8; }
  Status Combine(double sum, int64_t n, std::string* state) const {
    if (!state->empty()) {
      if (state->size() != Size()) return Corrupt(fn());
      sum += AsDouble(format::GetFixed64(state->data()));
      if (avg_ && __builtin_add_overflow(n, static_cast<int64_t>(format::GetFixed64(state->data() + 8)), &n)) {
        return Corrupt(fn());  // no count reaches 2^63
      }
    }
    state->clear();
    format::PutFixed64(AsBits(sum), state);
    if (avg_) format::PutFixed64(static_cast<uint64_t>(n), state);
    return absl::OkStatus();
  }
  bool avg_;
};

// State: one value key; bytewise order of keys is the value order.
class MinMaxAggregator final : public Aggregator {
 public:
  explicit MinMaxAggregator(bool max) : Aggregator(max ? "max" : "min"), max_(max) {}
  Status Add(const Value& value, std::string* state) const override {
    if (std::holds_alternative<bool>(value)) return absl::OkStatus();
    std::string key;
    if (!EncodeValueKey(value, &key)) return absl::OkStatus();
    return Merge(key, state);
  }
  Status Merge(std::string_view other, std::string* state) const override {
    if (other.empty()) return absl::OkStatus();
    if (!Valid(other) || (!state->empty() && !Valid(*state))) return Corrupt(fn());
    if (state->empty() || (max_ ? other > *state : other < *state)) state->assign(other);
    return absl::OkStatus();
  }
  Status AppendResult(std::string_view state, std::string* out) const override {
    if (state.empty()) {
      out->append("null");
      return absl::OkStatus();
    }
    if (!Valid(state) || !AppendValueKeyJson(state, out)) return Corrupt(fn());
    return absl::OkStatus();
  }

 private:
  static bool Valid(std::string_view key) {
    return (key[0] == 'n' && key.size() == 9) || key[0] == 's';
  }
  bool max_;
};

// count_distinct: sorted length-prefixed keys.
class CountDistinctAggregator final : public Aggregator {
 public:
  CountDistinctAggregator() : Aggregator("count_distinct") {}
  Status Add(const Value& value, std::string* state) const override {
    std::string key;
    if (!EncodeValueKey(value, &key)) return absl::OkStatus();
    size_t pos = 0, n = 0, insert_at = std::string::npos;
    while (pos < state->size()) {
      const size_t at = pos;
      std::string_view k;
      if (!format::GetLengthPrefixed(*state, &pos, &k)) return Corrupt(fn());
      if (k == key) return absl::OkStatus();
      if (insert_at == std::string::npos && key < k) insert_at = at;
      ++n;
    }
    if (n >= kMaxDistinctValues) return LimitError();
    std::string entry;
    format::PutLengthPrefixed(key, &entry);
    state->insert(insert_at == std::string::npos ? state->size() : insert_at, entry);
    return absl::OkStatus();
  }
  Status Merge(std::string_view other, std::string* state) const override {
    if (other.empty()) return absl::OkStatus();
    std::string merged;
    size_t a = 0, b = 0, n = 0;
    std::string_view ka, kb;
    bool has_a = Next(*state, &a, &ka), has_b = Next(other, &b, &kb);
    while (has_a || has_b) {
      if (has_b && (!has_a || kb < ka)) {
        format::PutLengthPrefixed(kb, &merged);
        has_b = Next(other, &b, &kb);
      } else {
        format::PutLengthPrefixed(ka, &merged);
        if (has_b && kb == ka) has_b = Next(other, &b, &kb);
        has_a = Next(*state, &a, &ka);
      }
      if (++n > kMaxDistinctValues) return LimitError();
    }
    if (a != state->size() || b != other.size()) return Corrupt(fn());
    *state = std::move(merged);
    return absl::OkStatus();
  }
  Status AppendResult(std::string_view state, std::string* out) const override {
    size_t pos = 0, n = 0;
    std::string_view k;
    while (Next(state, &pos, &k)) ++n;
    if (pos != state.size()) return Corrupt(fn());
    fmt::format_to(std::back_inserter(*out), "{}", n);
    return absl::OkStatus();
  }

 private:
  // The next key, or false at the end or at a malformed entry (then *pos
  // stays before it, which the callers check).
  static bool Next(std::string_view s, size_t* pos, std::string_view* k) {
    size_t p = *pos;
    if (p >= s.size() || !format::GetLengthPrefixed(s, &p, k)) return false;
    *pos = p;
    return true;
  }
  static Status LimitError() {
    return absl::ResourceExhaustedError(fmt::format(
        "count_distinct: more than {} distinct values in one state", kMaxDistinctValues));
  }
};

// Ertl's sigma(x) = x + sum_k x^(2^k) 2^(k-1), for the empty registers.
double Sigma(double x) {
  if (x == 1) return std::numeric_limits<double>::infinity();
  double y = 1, z = x, prev;
  do {
    x *= x;
    prev = z;
    z += x * y;
    y += y;
  } while (z != prev);
  return z;
}

// Ertl's tau(x), for the saturated registers.
double Tau(double x) {
  if (x == 0 || x == 1) return 0;
  double y = 1, z = 1 - x, prev;
  do {
    x = std::sqrt(x);
    prev = z;
    y *= 0.5;
    z -= (1 - x) * (1 - x) * y;
  } while (z != prev);
  return z / 3;
}

class ApproxDistinctAggregator final : public Aggregator {
 public:
  ApproxDistinctAggregator() : Aggregator("approx_distinct") {}
  Status Add(const Value& value, std::string* state) const override {
    std::string key;
    if (!EncodeValueKey(value, &key)) return absl::OkStatus();
    if (state->empty()) state->assign(kHllRegisters, '\0');
    if (state->size() != kHllRegisters) return Corrupt(fn());
    const uint64_t h = StableHash64(key);
    const size_t j = h >> (64 - kHllPrecision);
    const uint64_t w = h << kHllPrecision;
    const int rank = w == 0 ? 64 - kHllPrecision + 1 : std::countl_zero(w) + 1;
    auto& reg = (*state)[j];
    if (static_cast<unsigned char>(reg) < rank) reg = static_cast<char>(rank);
    return absl::OkStatus();
  }
  Status Merge(std::string_view other, std::string* state) const override {
    if (other.empty()) return absl::OkStatus();
    if (other.size() != kHllRegisters) return Corrupt(fn());
    if (state->empty()) state->assign(kHllRegisters, '\0');
    if (state->size() != kHllRegisters) return Corrupt(fn());
    for (size_t j = 0; j < kHllRegisters; ++j) {
      if (static_cast<unsigned char>((*state)[j]) < static_cast<unsigned char>(other[j])) {
        (*state)[j] = other[j];
      }
    }
    return absl::OkStatus();
  }
  Status AppendResult(std::string_view state, std::string* out) const override {
    if (state.empty()) {
      out->append("0");
      return absl::OkStatus();
    }
    if (state.size() != kHllRegisters) return Corrupt(fn());
    // Ertl's improved estimator ("New cardinality estimation algorithms for
    // HyperLogLog sketches", 2017, Algorithm 6): the standard estimator's
    // harmonic mean with linear counting's small-range term (sigma) and a
    // large-range term (tau) built in, so it has no bias near the 2.5 m
    // switch of the original (5% high at 10,000 values with m = 4096).
    constexpr int q = 64 - kHllPrecision;
    int counts[q + 2] = {};
    for (char c : state) {
      const auto r = static_cast<unsigned char>(c);
      if (r > q + 1) return Corrupt(fn());
      ++counts[r];
    }
    const double m = kHllRegisters;
    double z = m * Tau(1 - counts[q + 1] / m);
    for (int k = q; k >= 1; --k) z = 0.5 * (z + counts[k]);
    z += m * Sigma(counts[0] / m);
    const double e = (1 / (2 * std::log(2.0))) * m * m / z;
    fmt::format_to(std::back_inserter(*out), "{}", std::llround(e));
    return absl::OkStatus();
  }
};

// top_k: exact counts, entries (key, count) sorted by key.
class TopKAggregator final : public Aggregator {
 public:
  explicit TopKAggregator(int k) : Aggregator("top_k"), k_(k) {}
  Status Add(const Value& value, std::string* state) const override {
    std::string key;
    if (!EncodeValueKey(value, &key)) return absl::OkStatus();
    size_t pos = 0, n = 0, insert_at = std::string::npos;
    while (pos < state->size()) {
      const size_t at = pos;
      std::string_view k;
      uint64_t count;
      if (!format::GetLengthPrefixed(*state, &pos, &k)) return Corrupt(fn());
      const size_t count_at = pos;
      if (!format::GetVarint(*state, &pos, &count)) return Corrupt(fn());
      if (k == key) {
        std::string c;
        format::PutVarint(count + 1, &c);
        state->replace(count_at, pos - count_at, c);
        return absl::OkStatus();
      }
      if (insert_at == std::string::npos && key < k) insert_at = at;
      ++n;
    }
    if (n >= kMaxTopKValues) return LimitError();
    std::string entry;
    format::PutLengthPrefixed(key, &entry);
    format::PutVarint(1, &entry);
    state->insert(insert_at == std::string::npos ? state->size() : insert_at, entry);
    return absl::OkStatus();
  }
  Status Merge(std::string_view other, std::string* state) const override {
    if (other.empty()) return absl::OkStatus();
    std::vector<Entry> a, b;
    if (!Decode(*state, &a) || !Decode(other, &b)) return Corrupt(fn());
    std::string merged;
    size_t i = 0, j = 0, n = 0;
    while (i < a.size() || j < b.size()) {
      Entry e;
      if (j == b.size() || (i < a.size() && a[i].key < b[j].key)) {
        e = a[i++];
      } else if (i == a.size() || b[j].key < a[i].key) {
        e = b[j++];
      } else {
        e = {a[i].key, a[i].count + b[j].count};
        ++i, ++j;
      }
      if (++n > kMaxTopKValues) return LimitError();
      format::PutLengthPrefixed(e.key, &merged);
      format::PutVarint(e.count, &merged);
    }
    *state = std::move(merged);
    return absl::OkStatus();
  }
  Status AppendResult(std::string_view state, std::string* out) const override {
    std::vector<Entry> entries;
    if (!Decode(state, &entries)) return Corrupt(fn());
    const size_t k = std::min(entries.size(), static_cast<size_t>(k_));
    // Entries are in key order, so a stable sort by count keeps ties by value.
    std::stable_sort(entries.begin(), entries.end(),
                     [](const Entry& x, const Entry& y) { return x.count > y.count; });
    out->push_back('[');
    for (size_t i = 0; i < k; ++i) {
      if (i > 0) out->push_back(',');
      out->append("{\"value\":");
      if (!AppendValueKeyJson(entries[i].key, out)) return Corrupt(fn());
      fmt::format_to(std::back_inserter(*out), ",\"count\":{}}}", entries[i].count);
    }
    out->push_back(']');
    return absl::OkStatus();
  }

 private:
  struct Entry {
    std::string_view key;
    uint64_t count = 0;
  };
  static bool Decode(std::string_view s, std::vector<Entry>* out) {
    size_t pos = 0;
    while (pos < s.size()) {
      Entry e;
      if (!format::GetLengthPrefixed(s, &pos, &e.key) || !format::GetVarint(s, &pos, &e.count)) return false;
      out->push_back(e);
    }
    return true;
  }
  static Status LimitError() {
    return absl::ResourceExhaustedError(fmt::format(
        "top_k: more than {} distinct values in one state", kMaxTopKValues));
  }
  int k_;
};

}  // namespace

bool EncodeValueKey(const Value& value, std::string* key) {
  key->clear();
  if (const bool* b = std::get_if<bool>(&value)) {
    key->push_back('b');
    key->push_back(*b ? 1 : 0);
    return true;
  }
  if (const double* d = std::get_if<double>(&value)) {
    if (std::isnan(*d)) return false;
    const uint64_t bits = OrderedBits(*d);
    key->push_back('n');
    for (int i = 7; i >= 0; --i) key->push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
    return true;
  }
  if (const std::string_view* s = std::get_if<std::string_view>(&value)) {
    key->push_back('s');
    key->append(*s);
    return true;
  }
  return false;
}

uint64_t StableHash64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  h += 0x9e3779b97f4a7c15ULL;  // splitmix64 finalizer
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

Result<std::unique_ptr<Aggregator>> Aggregator::Create(const proto::Aggregation& spec) {
  const std::string& fn = spec.fn();
  if (fn == kEventListFn) return std::make_unique<EventListAggregator>();
  static constexpr std::string_view kKnown[] = {"count", "sum", "avg", "min", "max",
      "count_distinct", "approx_distinct", "top_k"};
  if (std::find(std::begin(kKnown), std::end(kKnown), fn) == std::end(kKnown)) {
    return absl::InvalidArgumentError(fmt::format(
        "unknown aggregate function '{}' (count, sum, min, max, avg, count_distinct, "
        "approx_distinct, top_k)",
        fn));
  }
  if (fn != "count" && spec.field().empty()) {
    return absl::InvalidArgumentError(fmt::format("aggregate {}: needs a field", fn));
  }
  if (fn == "count") return std::make_unique<CountAggregator>();
  if (fn == "sum") return std::make_unique<SumAggregator>(false);
  if (fn == "avg") return std::make_unique<SumAggregator>(true);
  if (fn == "min") return std::make_unique<MinMaxAggregator>(false);
  if (fn == "max") return std::make_unique<MinMaxAggregator>(true);
  if (fn == "count_distinct") return std::make_unique<CountDistinctAggregator>();
  if (fn == "approx_distinct") return std::make_unique<ApproxDistinctAggregator>();
  if (spec.k() < 1) {
    return absl::InvalidArgumentError(
        fmt::format("aggregate top_k: k must be at least 1, not {}", spec.k()));
  }
  return std::make_unique<TopKAggregator>(spec.k());
}

bool DecodeValueKey(std::string_view key, Value* out) {
  if (key.empty()) return false;
  std::string_view body = key.substr(1);
  switch (key[0]) {
    case 'b':
      if (body.size() != 1 || static_cast<unsigned char>(body[0]) > 1) return false;
      *out = body[0] != 0;
      return true;
    case 'n': {
      if (body.size() != 8) return false;
      uint64_t be = 0;
      for (char c : body) be = (be << 8) | static_cast<unsigned char>(c);
      *out = FromOrderedBits(be);
      return true;
    }
    case 's':
      *out = body;
      return true;
    default:
      return false;
  }
}

bool AppendValueKeyJson(std::string_view key, std::string* out) {
  Value v;
  if (!DecodeValueKey(key, &v)) return false;
  if (const auto* s = std::get_if<std::string_view>(&v)) {
    AppendJsonString(*s, out);
  } else if (const double* d = std::get_if<double>(&v)) {
    AppendJsonNumber(*d, out);
  } else {
    out->append(std::get<bool>(v) ? "true" : "false");
  }
  return true;
}

}  // namespace sluice::engine
