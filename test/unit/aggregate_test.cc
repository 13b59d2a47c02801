// Unit tests of the aggregate functions (lib/engine/aggregate.h): each against
// a reference computed here over random data, merges of partial states, the
// documented encodings and limits.
#include "lib/engine/aggregate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/format/varint.h"

namespace sluice::engine {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Aggregator> Make(const std::string& fn, int k = 0) {
  proto::Aggregation spec;
  spec.set_fn(fn);
  spec.set_field("x");
  spec.set_k(k);
  Result<std::unique_ptr<Aggregator>> agg = Aggregator::Create(spec);
  EXPECT_TRUE(agg.ok()) << agg.status();
  return agg.ok() ? std::move(*agg) : nullptr;
}

std::string Build(const Aggregator& agg, const std::vector<Value>& values, size_t begin,
                  size_t end) {
  std::string state;
  for (size_t i = begin; i < end; ++i) EXPECT_TRUE(agg.Add(values[i], &state).ok());
  return state;
}

std::string Build(const Aggregator& agg, const std::vector<Value>& values) {
  return Build(agg, values, 0, values.size());
}

std::string ResultOf(const Aggregator& agg, std::string_view state) {
  std::string out;
  Status s = agg.AppendResult(state, &out);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

// The state built from random splits of `values`, merged in shuffled order
// (as combiner outputs of several map tasks arrive at a reducer).
std::string BuildSplit(const Aggregator& agg, const std::vector<Value>& values,
                       std::mt19937_64& rng) {
  std::vector<size_t> cuts = {0, values.size()};
  for (int i = 0; i < 4; ++i) cuts.push_back(rng() % (values.size() + 1));
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::string> parts;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    parts.push_back(Build(agg, values, cuts[i], cuts[i + 1]));
  }
  std::shuffle(parts.begin(), parts.end(), rng);
  std::string state;
  for (const std::string& p : parts) EXPECT_TRUE(agg.Merge(p, &state).ok());
  return state;
}

// Random rows: integers in [-50, 50] (so sums are exact in any order),
// strings from a small alphabet, booleans and nulls. Strings point into `pool`.
std::vector<Value> RandomValues(size_t n, std::mt19937_64& rng,
                                const std::vector<std::string>& pool) {
  std::vector<Value> out;
  for (size_t i = 0; i < n; ++i) {
    switch (rng() % 6) {
      case 0: out.emplace_back(Null{}); break;
      case 1: out.emplace_back(std::string_view(pool[rng() % pool.size()])); break;
      case 2: out.emplace_back(rng() % 2 == 0); break;
      default: out.emplace_back(static_cast<double>(static_cast<int>(rng() % 101) - 50));
    }
  }
  return out;
}

const std::vector<std::string>& Pool() {
  static const std::vector<std::string> pool = {"a", "b", "ab", "z", "\"q\"", "", "é", "a\n"};
  return pool;
}

std::vector<double> Numbers(const std::vector<Value>& values) {
  std::vector<double> out;
  for (const Value& v : values) {
    if (const double* d = std::get_if<double>(&v)) out.push_back(*d);
  }
  return out;
}

TEST(AggregateTest, CountCountsEveryRowAndMerges) {
  std::mt19937_64 rng(7);
  auto agg = Make("count");
  std::vector<Value> values = RandomValues(5000, rng, Pool());
  std::string whole = Build(*agg, values);
  EXPECT_EQ(ResultOf(*agg, whole), "5000");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(BuildSplit(*agg, values, rng), whole);
  EXPECT_EQ(ResultOf(*agg, ""), "0");
}

// A count that would pass 2^63 in a merge is a corrupt state, not signed
// overflow (found by shuffle_fuzz and state_fuzz under UBSan).
TEST(AggregateTest, ACountOverflowingInAMergeIsDataLoss) {
  std::string half;  // 2^62: twice it is past INT64_MAX
  format::PutFixed64(uint64_t{1} << 62, &half);
  for (const std::string fn : {"count", "avg"}) {
    std::unique_ptr<Aggregator> agg = Make(fn);
    const std::string other = fn == "avg" ? std::string(8, '\0') + half : half;
    std::string state = other;
    Status st = agg->Merge(other, &state);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << fn;
    EXPECT_THAT(std::string(st.message()), HasSubstr("corrupt " + fn + " state"));
  }
}

TEST(AggregateTest, SumAndAvgMatchReferenceOverSplits) {
  std::mt19937_64 rng(11);
  auto sum = Make("sum");
  auto avg = Make("avg");
  std::vector<Value> values = RandomValues(20000, rng, Pool());
  std::vector<double> nums = Numbers(values);
  double ref = 0;
  for (double d : nums) ref += d;
  std::string s = Build(*sum, values), a = Build(*avg, values);
  EXPECT_EQ(std::stod(ResultOf(*sum, s)), ref);
  EXPECT_DOUBLE_EQ(std::stod(ResultOf(*avg, a)), ref / static_cast<double>(nums.size()));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(BuildSplit(*sum, values, rng), s);  // integers: exact in any order
    EXPECT_EQ(BuildSplit(*avg, values, rng), a);
  }
  // Fractions print as the shortest round-trip form.
  std::string f;
  ASSERT_TRUE(avg->Add(1.0, &f).ok());
  ASSERT_TRUE(avg->Add(2.0, &f).ok());
  EXPECT_EQ(ResultOf(*avg, f), "1.5");
}

TEST(AggregateTest, MinMaxNumbersThenStrings) {
  std::mt19937_64 rng(13);
  auto mn = Make("min");
  auto mx = Make("max");
  std::vector<Value> values = RandomValues(5000, rng, Pool());
  std::vector<Value> numbers_only;
  for (const Value& v : values) {
    if (std::holds_alternative<double>(v) || std::holds_alternative<Null>(v)) {
      numbers_only.push_back(v);
    }
  }
  std::vector<double> nums = Numbers(values);
  const double lo = *std::min_element(nums.begin(), nums.end());
  const double hi = *std::max_element(nums.begin(), nums.end());
  EXPECT_EQ(ResultOf(*mn, Build(*mn, numbers_only)), std::to_string(static_cast<int>(lo)));
  EXPECT_EQ(ResultOf(*mx, Build(*mx, numbers_only)), std::to_string(static_cast<int>(hi)));
  // With strings: a number is below every string; strings compare bytewise.
  std::string smin = Build(*mn, values), smax = Build(*mx, values);
  EXPECT_EQ(ResultOf(*mn, smin), std::to_string(static_cast<int>(lo)));
  EXPECT_EQ(ResultOf(*mx, smax), "\"é\"");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(BuildSplit(*mn, values, rng), smin);
    EXPECT_EQ(BuildSplit(*mx, values, rng), smax);
  }
  // Negative numbers, fractions and -0 order numerically.
  std::string m;
  for (double d : {-0.0, -1.5, 3.25, -1e300, 0.0}) ASSERT_TRUE(mn->Add(d, &m).ok());
  EXPECT_EQ(ResultOf(*mn, m), "-1e+300");
  std::string x;
  for (double d : {-0.0, -1.5, -0.25}) ASSERT_TRUE(mx->Add(d, &x).ok());
  EXPECT_EQ(ResultOf(*mx, x), "0");
}

// The reference's notion of one distinct value: type-tagged.
std::string Tag(const Value& v) {
  if (const bool* b = std::get_if<bool>(&v)) return *b ? "b1" : "b0";
  if (const double* d = std::get_if<double>(&v)) return "n" + std::to_string(*d);
  return "s" + std::string(std::get<std::string_view>(v));
}

TEST(AggregateTest, CountDistinctMatchesReferenceOverSplits) {
  std::mt19937_64 rng(17);
  auto agg = Make("count_distinct");
  std::vector<Value> values = RandomValues(5000, rng, Pool());
  std::set<std::string> ref;
  for (const Value& v : values) {
    if (!std::holds_alternative<Null>(v)) ref.insert(Tag(v));
  }
  std::string whole = Build(*agg, values);
  EXPECT_EQ(ResultOf(*agg, whole), std::to_string(ref.size()));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(BuildSplit(*agg, values, rng), whole);
  // Canonical: the same set added in another order is the same bytes.
  std::vector<Value> shuffled = values;
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  EXPECT_EQ(Build(*agg, shuffled), whole);
  // 1 (number) and "1" (string) and true are three values.
  std::string s;
  for (Value v : {Value(1.0), Value(std::string_view("1")), Value(true), Value(1.0)}) {
    ASSERT_TRUE(agg->Add(v, &s).ok());
  }
  EXPECT_EQ(ResultOf(*agg, s), "3");
}

// A count_distinct state of keys 's' + 8-digit i for i in [begin, end), built
// directly in the documented encoding (sorted, varint length + key).
std::string DistinctState(int begin, int end) {
  std::string s;
  char key[16];
  for (int i = begin; i < end; ++i) {
    std::snprintf(key, sizeof(key), "s%08d", i);
    s.push_back(9);
    s.append(key, 9);
  }
  return s;
}

TEST(AggregateTest, CountDistinctLimit) {
  auto agg = Make("count_distinct");
  const int limit = static_cast<int>(kMaxDistinctValues);
  std::string full = DistinctState(0, limit);
  EXPECT_EQ(ResultOf(*agg, full), std::to_string(limit));
  std::string state = full;
  EXPECT_TRUE(agg->Add(std::string_view("00000042"), &state).ok());  // already there
  EXPECT_EQ(state, full);
  Status s = agg->Add(std::string_view("new"), &state);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(s.message(), HasSubstr("count_distinct"));
  // Overlapping halves whose union is exactly the limit merge; one more fails.
  std::string a = DistinctState(0, 60000);
  ASSERT_TRUE(agg->Merge(DistinctState(40000, limit), &a).ok());
  EXPECT_EQ(a, full);
  std::string b = DistinctState(0, 60000);
  EXPECT_EQ(agg->Merge(DistinctState(40000, limit + 1), &b).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(AggregateTest, ApproxDistinctWithinFivePercent) {
  auto agg = Make("approx_distinct");
  for (int n : {10'000, 1'000'000}) {
    std::string whole, half1, half2;
    std::vector<std::string> strs;
    for (int i = 0; i < n; ++i) {
      // Half numbers, half strings; every value added twice (duplicates).
      std::string str = "user-" + std::to_string(i);
      Value v = i % 2 ? Value(static_cast<double>(i)) : Value(std::string_view(str));
      for (int rep = 0; rep < 2; ++rep) {
        ASSERT_TRUE(agg->Add(v, &whole).ok());
        ASSERT_TRUE(agg->Add(v, i < n / 2 ? &half1 : &half2).ok());
      }
    }
    ASSERT_EQ(whole.size(), kHllRegisters);
    const double est = std::stod(ResultOf(*agg, whole));
    EXPECT_NEAR(est, n, 0.05 * n) << n;
    ASSERT_TRUE(agg->Merge(half2, &half1).ok());
    EXPECT_EQ(half1, whole);
  }
  EXPECT_EQ(ResultOf(*agg, ""), "0");
  std::string small;
  for (double d : {1.0, 2.0, 3.0, 2.0}) ASSERT_TRUE(agg->Add(d, &small).ok());
  EXPECT_EQ(ResultOf(*agg, small), "3");  // linear counting is exact this small
}

TEST(AggregateTest, StableHashIsPinned) {
  // States built on other machines and builds must merge: the hash may never
  // change. FNV-1a 64 + splitmix64 finalizer, values computed independently.
  EXPECT_EQ(StableHash64(""), 0xc3817c016ba4ff30ULL);
  EXPECT_EQ(StableHash64("sabc"), 0x62c4605e1b7f1c18ULL);
}

TEST(AggregateTest, TopKMatchesReferenceOverSplits) {
  std::mt19937_64 rng(19);
  std::vector<std::string> pool;
  for (int i = 0; i < 40; ++i) pool.push_back("v" + std::to_string(i));
  std::vector<Value> values;
  std::map<std::string, int> counts;
  for (int i = 0; i < 20000; ++i) {
    // Skewed: small indexes are frequent; many ties among the rare ones.
    const std::string& s = pool[std::min(rng() % 40, rng() % 40)];
    values.emplace_back(std::string_view(s));
    ++counts[s];
    if (i % 10 == 0) values.emplace_back(Null{});
  }
  for (int k : {1, 5, 40, 100}) {
    auto agg = Make("top_k", k);
    std::vector<std::pair<std::string, int>> ref(counts.begin(), counts.end());
    std::stable_sort(ref.begin(), ref.end(),
                     [](const auto& x, const auto& y) { return x.second > y.second; });
    std::string want = "[";
    for (size_t i = 0; i < ref.size() && i < static_cast<size_t>(k); ++i) {
      if (i > 0) want += ",";
      want += "{\"value\":\"" + ref[i].first + "\",\"count\":" + std::to_string(ref[i].second) + "}";
    }
    want += "]";
    std::string whole = Build(*agg, values);
    EXPECT_EQ(ResultOf(*agg, whole), want) << k;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(BuildSplit(*agg, values, rng), whole);
  }
}

TEST(AggregateTest, TopKTiesOrderByValue) {
  auto agg = Make("top_k", 4);
  std::string s;
  for (Value v : {Value(std::string_view("b")), Value(std::string_view("a")), Value(5.0),
                  Value(std::string_view("c")), Value(std::string_view("b")),
                  Value(std::string_view("a")), Value(5.0), Value(std::string_view("c")),
                  Value(std::string_view("c")), Value(-2.0), Value(false), Value(-2.0)}) {
    ASSERT_TRUE(agg->Add(v, &s).ok());
  }
  // c:3, then the count-2 ties in value order: -2 < 5 < "a" < "b" (cut at k=4).
  EXPECT_EQ(ResultOf(*agg, s),
            "[{\"value\":\"c\",\"count\":3},{\"value\":-2,\"count\":2},"
            "{\"value\":5,\"count\":2},{\"value\":\"a\",\"count\":2}]");
}

TEST(AggregateTest, EncodeDecodeRoundTripAndCorruption) {
  std::mt19937_64 rng(23);
  std::vector<Value> values = RandomValues(3000, rng, Pool());
  for (const char* fn : {"count", "sum", "avg", "min", "max", "count_distinct",
                         "approx_distinct", "top_k"}) {
    auto agg = Make(fn, 3);
    std::string state = Build(*agg, values);
    // The state is the wire/storage form: copied bytes decode to the same
    // state (merge into empty is identity) and the same result.
    std::string copy(state.data(), state.size());
    std::string decoded;
    ASSERT_TRUE(agg->Merge(copy, &decoded).ok()) << fn;
    EXPECT_EQ(decoded, state) << fn;
    EXPECT_EQ(ResultOf(*agg, decoded), ResultOf(*agg, state)) << fn;
    std::string unchanged = state;
    ASSERT_TRUE(agg->Merge("", &unchanged).ok()) << fn;
    EXPECT_EQ(unchanged, state) << fn;
    // A truncated state is refused, not misread.
    if (std::string(fn) != "min" && std::string(fn) != "max") {
      std::string out;
      std::string cut = state.substr(0, state.size() - 1);
      if (std::string(fn) == "count_distinct" || std::string(fn) == "top_k") {
        cut = state.substr(0, state.size() - 2);
      }
      EXPECT_EQ(agg->AppendResult(cut, &out).code(), absl::StatusCode::kDataLoss) << fn;
      std::string target = state;
      EXPECT_EQ(agg->Merge(cut, &target).code(), absl::StatusCode::kDataLoss) << fn;
    }
  }
}

TEST(AggregateTest, NullsAndMissingIgnoredExceptByCount) {
  const std::vector<Value> nulls = {Null{}, Null{}, Value(std::nan(""))};
  const std::map<std::string, std::string> want = {
      {"count", "3"}, {"sum", "null"}, {"avg", "null"}, {"min", "null"}, {"max", "null"},
      {"count_distinct", "0"}, {"approx_distinct", "0"}, {"top_k", "[]"}};
  for (const auto& [fn, result] : want) {
    auto agg = Make(fn, 2);
    std::string state = Build(*agg, nulls);
    EXPECT_EQ(ResultOf(*agg, state), result) << fn;
    if (fn != "count") {
      EXPECT_EQ(state, "") << fn;
    }
  }
  // avg and sum ignore strings and booleans; avg of none is null.
  auto avg = Make("avg");
  std::string s = Build(*avg, {Value(std::string_view("7")), Value(true), Null{}});
  EXPECT_EQ(ResultOf(*avg, s), "null");
  ASSERT_TRUE(avg->Add(4.0, &s).ok());
  EXPECT_EQ(ResultOf(*avg, s), "4");
}

TEST(AggregateTest, CreateRefusesBadSpecs) {
  proto::Aggregation spec;
  spec.set_fn("median");
  spec.set_field("x");
  Result<std::unique_ptr<Aggregator>> r = Aggregator::Create(spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("unknown aggregate function 'median'"));
  spec.set_fn("sum");
  spec.clear_field();
  EXPECT_EQ(Aggregator::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec.set_fn("top_k");
  spec.set_field("x");
  spec.set_k(0);
  EXPECT_EQ(Aggregator::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec.set_fn("count");
  spec.clear_field();
  EXPECT_TRUE(Aggregator::Create(spec).ok());
}

}  // namespace
}  // namespace sluice::engine
