// Unit tests of event-time windows (lib/engine/window.h): event time parsing
// against epoch values computed with `date -u` and Python, window starts, and
// session sets merged in every order.
#include "lib/engine/window.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// ---- ParseEventTime ----

int64_t TimeOfValue(const Value& v) {
  Result<int64_t> t = ParseEventTime(v);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : -999'999;
}

int64_t TimeOf(std::string_view s) { return TimeOfValue(Value(s)); }

Status ErrorOfValue(const Value& v) {
  Result<int64_t> t = ParseEventTime(v);
  EXPECT_FALSE(t.ok()) << "parsed as " << *t;
  return t.ok() ? absl::OkStatus() : t.status();
}

Status ErrorOf(std::string_view s) { return ErrorOfValue(Value(s)); }

TEST(ParseEventTime, Numbers) {
  EXPECT_EQ(TimeOfValue(Value(0.0)), 0);
  EXPECT_EQ(TimeOfValue(Value(1795827723456.0)), 1795827723456);
  EXPECT_EQ(TimeOfValue(Value(-14182940000.0)), -14182940000);
  EXPECT_EQ(TimeOfValue(Value(1.9)), 1);    // truncated toward zero
  EXPECT_EQ(TimeOfValue(Value(-1.9)), -1);
  EXPECT_EQ(TimeOfValue(Value(9007199254740992.0)), 9007199254740992);  // 2^53
  EXPECT_EQ(TimeOfValue(Value(-9007199254740992.0)), -9007199254740992);
}

TEST(ParseEventTime, DigitStrings) {
  EXPECT_EQ(TimeOf("0"), 0);
  EXPECT_EQ(TimeOf("1795827723456"), 1795827723456);
  EXPECT_EQ(TimeOf("0001795827723456"), 1795827723456);
  EXPECT_EQ(TimeOf("9007199254740992"), 9007199254740992);
  EXPECT_EQ(ErrorOf("9007199254740993").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf("99999999999999999999").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf("-5").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf("12 ").code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseEventTime, Rfc3339Utc) {
  // date -u -d '2026-11-28T01:02:03.456Z' +%s%3N
  EXPECT_EQ(TimeOf("2026-11-28T01:02:03.456Z"), 1795827723456);
  EXPECT_EQ(TimeOf("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(TimeOf("2016-12-31T23:59:59Z"), 1483228799000);
  EXPECT_EQ(TimeOf("0000-01-01T00:00:00Z"), -62167219200000);
  EXPECT_EQ(TimeOf("9999-12-31T23:59:59.999Z"), 253402300799999);
  // Lowercase separators and a space instead of 'T'.
  EXPECT_EQ(TimeOf("2026-11-28t01:02:03.456z"), 1795827723456);
  EXPECT_EQ(TimeOf("2026-11-28 01:02:03.456Z"), 1795827723456);
  // A leap second reads as the next second.
  EXPECT_EQ(TimeOf("2016-12-31T23:59:60Z"), 1483228800000);
}

TEST(ParseEventTime, Offsets) {
  EXPECT_EQ(TimeOf("2000-03-01T05:30:00+05:30"), 951868800000);
  EXPECT_EQ(TimeOf("2026-11-27T17:02:03.456-08:00"), 1795827723456);
  EXPECT_EQ(TimeOf("2026-11-28T01:02:03.456+00:00"), 1795827723456);
  EXPECT_EQ(TimeOf("2026-11-28T01:02:03.456-00:00"), 1795827723456);
  // Across a day and a year boundary.
  EXPECT_EQ(TimeOf("1969-12-31T16:00:00-08:00"), 0);
  EXPECT_EQ(TimeOf("1970-01-01T05:30:00+05:30"), 0);
}

TEST(ParseEventTime, Fractions) {
  EXPECT_EQ(TimeOf("2026-11-28T01:02:03Z"), 1795827723000);
  EXPECT_EQ(TimeOf("2026-11-28T01:02:03.4Z"), 1795827723400);
  EXPECT_EQ(TimeOf("2026-11-28T01:02:03.45Z"), 1795827723450);
  EXPECT_EQ(TimeOf("2026-11-28T01:02:03.456Z"), 1795827723456);
  EXPECT_EQ(TimeOf("2026-11-28T01:02:03.123456Z"), 1795827723123);
  EXPECT_EQ(TimeOf("2026-11-28T01:02:03.999999999Z"), 1795827723999);
  EXPECT_EQ(ErrorOf("2026-11-28T01:02:03.1234567890Z").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf("2026-11-28T01:02:03.Z").code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseEventTime, LeapDays) {
  EXPECT_EQ(TimeOf("2024-02-29T12:00:00Z"), 1709208000000);
  EXPECT_EQ(TimeOf("2000-02-29T00:00:00Z"), 951782400000);
  EXPECT_EQ(ErrorOf("2023-02-29T00:00:00Z").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf("1900-02-29T00:00:00Z").code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseEventTime, BeforeEpoch) {
  EXPECT_EQ(TimeOf("1969-12-31T23:59:59.999Z"), -1);
  EXPECT_EQ(TimeOf("1969-07-20T20:17:40Z"), -14182940000);
  EXPECT_EQ(TimeOf("1960-06-15T10:20:30.5Z"), -301239569500);
  EXPECT_EQ(TimeOf("1900-01-01T00:00:00Z"), -2208988800000);
}

TEST(ParseEventTime, OutOfRangeFieldsAreRefused) {
  for (std::string_view s :
       {"2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-04-31T00:00:00Z",
        "2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z",
        "2026-01-01T00:00:61Z", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+05:60"}) {
    Status st = ErrorOf(s);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(st.message(), HasSubstr(std::string(s))) << s;
  }
}

TEST(ParseEventTime, MalformedIsRefusedNamingTheValue) {
  EXPECT_EQ(ErrorOf("2026-13-01T00:00:00Z").message(),
            "event time \"2026-13-01T00:00:00Z\" is not epoch milliseconds or RFC 3339");
  for (std::string_view s :
       {"", "yesterday", "2026-11-28", "2026-11-28T01:02:03", "2026-11-28T01:02Z",
        "26-11-28T01:02:03Z", "2026-11-28X01:02:03Z", "2026-11-28T01:02:03+0530",
        "2026-11-28T01:02:03Z ", " 2026-11-28T01:02:03Z", "2026-1-28T01:02:03Z",
        "2026-11-28T01:02:03+05", "1.5e12"}) {
    Status st = ErrorOf(s);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(st.message(), HasSubstr("\"" + std::string(s) + "\"")) << s;
  }
  EXPECT_EQ(ErrorOfValue(Value(Null{})).message(),
            "event time null is not epoch milliseconds or RFC 3339");
  EXPECT_EQ(ErrorOfValue(Value(true)).message(),
            "event time true is not epoch milliseconds or RFC 3339");
  EXPECT_THAT(ErrorOfValue(Value(std::nan(""))).message(), HasSubstr("event time nan "));
  EXPECT_THAT(ErrorOfValue(Value(HUGE_VAL)).message(), HasSubstr("event time inf "));
  EXPECT_EQ(ErrorOfValue(Value(1e300)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorOfValue(Value(9007199254740994.0)).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseEventTime, LongValuesAreShortened) {
  const std::string long_value(100, 'x');
  Status st = ErrorOf(long_value);
  EXPECT_THAT(st.message(), HasSubstr("\"" + std::string(64, 'x') + "\"..."));
  EXPECT_THAT(st.message(), Not(HasSubstr(std::string(65, 'x'))));
  // Not cut inside a UTF-8 character: 63 'a' then 'é' (2 bytes) across byte 64.
  const std::string utf8 = std::string(63, 'a') + "\xc3\xa9" + "tail";
  Status st2 = ErrorOf(utf8);
  EXPECT_THAT(st2.message(), HasSubstr("\"" + std::string(63, 'a') + "\"..."));
}

// ---- WindowStarts ----

std::vector<int64_t> Starts(int64_t t, int64_t length, int64_t slide) {
  std::vector<int64_t> starts = {12345};  // cleared
  WindowStarts(t, length, slide, &starts);
  return starts;
}

TEST(WindowStarts, Tumbling) {
  EXPECT_THAT(Starts(25, 10, 10), ElementsAre(20));
  EXPECT_THAT(Starts(20, 10, 10), ElementsAre(20));  // on a boundary: the window it starts
  EXPECT_THAT(Starts(29, 10, 10), ElementsAre(20));
  EXPECT_THAT(Starts(0, 10, 10), ElementsAre(0));
  EXPECT_THAT(Starts(1795827723456, 60'000, 60'000), ElementsAre(1795827720000));
}

TEST(WindowStarts, Sliding) {
  EXPECT_THAT(Starts(25, 30, 10), ElementsAre(0, 10, 20));
  EXPECT_THAT(Starts(30, 30, 10), ElementsAre(10, 20, 30));
  EXPECT_THAT(Starts(29, 30, 10), ElementsAre(0, 10, 20));
  EXPECT_THAT(Starts(5, 30, 10), ElementsAre(-20, -10, 0));
  EXPECT_THAT(Starts(7, 4, 2), ElementsAre(4, 6));
}

TEST(WindowStarts, NegativeTimes) {
  EXPECT_THAT(Starts(-1, 10, 10), ElementsAre(-10));
  EXPECT_THAT(Starts(-10, 10, 10), ElementsAre(-10));
  EXPECT_THAT(Starts(-11, 10, 10), ElementsAre(-20));
  EXPECT_THAT(Starts(-5, 30, 10), ElementsAre(-30, -20, -10));
  EXPECT_THAT(Starts(-30, 30, 10), ElementsAre(-50, -40, -30));
}

TEST(WindowStarts, EveryStartContainsTheTime) {
  for (int64_t t = -100; t <= 100; ++t) {
    std::vector<int64_t> starts = Starts(t, 30, 10);
    ASSERT_EQ(starts.size(), 3u) << t;
    for (size_t i = 0; i < starts.size(); ++i) {
      EXPECT_EQ(((starts[i] % 10) + 10) % 10, 0) << t;
      EXPECT_LE(starts[i], t);
      EXPECT_LT(t, starts[i] + 30);
      if (i > 0) {
        EXPECT_EQ(starts[i], starts[i - 1] + 10);
      }
    }
  }
}

TEST(WindowStarts, NonPositiveLengthOrSlideGivesNone) {
  EXPECT_TRUE(Starts(5, 0, 10).empty());
  EXPECT_TRUE(Starts(5, 10, 0).empty());
  EXPECT_TRUE(Starts(5, -10, -10).empty());
}

// ---- SessionMerger ----

std::unique_ptr<Aggregator> Make(const std::string& fn) {
  proto::Aggregation spec;
  spec.set_fn(fn);
  if (fn != "count") spec.set_field("x");
  Result<std::unique_ptr<Aggregator>> agg = Aggregator::Create(spec);
  EXPECT_TRUE(agg.ok()) << agg.status();
  return agg.ok() ? std::move(*agg) : nullptr;
}

std::string ResultOf(const Aggregator& agg, std::string_view state) {
  std::string out;
  Status s = agg.AppendResult(state, &out);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

// count and min(x), gap 10 ms.
class SessionMergerTest : public ::testing::Test {
 protected:
  static constexpr int64_t kGap = 10;

  SessionMergerTest()
      : count_(Make("count")), min_(Make("min")), aggs_{count_.get(), min_.get()},
        merger_(aggs_, kGap) {}

  // The set of one event at t with x = `x`.
  std::string Event(int64_t t, double x) const {
    std::vector<std::string> states(2);
    EXPECT_TRUE(count_->Add(Value(x), &states[0]).ok());
    EXPECT_TRUE(min_->Add(Value(x), &states[1]).ok());
    return merger_.Single(t, states);
  }

  std::vector<Session> DecodeOk(std::string_view set) const {
    Result<std::vector<Session>> s = merger_.Decode(set);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : std::vector<Session>{};
  }

  // "[start,last] count=N min=M" per session.
  std::string Describe(std::string_view set) const {
    std::string out;
    for (const Session& s : DecodeOk(set)) {
      EXPECT_EQ(s.states.size(), 2u);
      if (s.states.size() != 2) continue;
      out += "[" + std::to_string(s.start) + "," + std::to_string(s.last) +
             "] count=" + ResultOf(*count_, s.states[0]) + " min=" + ResultOf(*min_, s.states[1]) +
             "; ";
    }
    return out;
  }

  std::string MergeAll(const std::vector<std::string>& sets) const {
    std::string into;
    for (const std::string& s : sets) EXPECT_TRUE(merger_.Merge(&into, s).ok());
    return into;
  }

  std::unique_ptr<Aggregator> count_;
  std::unique_ptr<Aggregator> min_;
  std::vector<const Aggregator*> aggs_;
  SessionMerger merger_;
};

TEST_F(SessionMergerTest, SingleEncoding) {
  std::string count_state;
  ASSERT_TRUE(count_->Add(Value(Null{}), &count_state).ok());
  const std::string states[] = {count_state, ""};
  // varint(1) zigzag(-3)=5 varint(0) varint(8) count varint(0)
  EXPECT_EQ(merger_.Single(-3, states),
            std::string("\x01\x05\x00\x08", 4) + count_state + std::string("\x00", 1));
  std::vector<Session> sessions = DecodeOk(merger_.Single(-3, states));
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0], (Session{-3, -3, {count_state, ""}}));
}

TEST_F(SessionMergerTest, EmptyIsTheIdentity) {
  const std::string e = Event(5, 1);
  std::string into;
  ASSERT_TRUE(merger_.Merge(&into, e).ok());
  EXPECT_EQ(into, e);
  ASSERT_TRUE(merger_.Merge(&into, "").ok());
  EXPECT_EQ(into, e);
  EXPECT_TRUE(DecodeOk("").empty());
}

TEST_F(SessionMergerTest, GapBoundary) {
  // 15 = 5 + gap does not merge with [5, 5]; 14 does.
  EXPECT_EQ(Describe(MergeAll({Event(5, 1), Event(15, 2)})),
            "[5,5] count=1 min=1; [15,15] count=1 min=2; ");
  EXPECT_EQ(Describe(MergeAll({Event(5, 1), Event(14, 2)})), "[5,14] count=2 min=1; ");
  // Same time twice, and a session contained in another.
  EXPECT_EQ(Describe(MergeAll({Event(5, 3), Event(5, 2)})), "[5,5] count=2 min=2; ");
  EXPECT_EQ(Describe(MergeAll({Event(0, 3), Event(8, 4), Event(16, 5), Event(4, 1)})),
            "[0,16] count=4 min=1; ");
  // Negative times across 0.
  EXPECT_EQ(Describe(MergeAll({Event(3, 1), Event(-5, 2)})), "[-5,3] count=2 min=1; ");
}

TEST_F(SessionMergerTest, EveryMergeOrderGivesTheSameBytes) {
  // 0 and 5 merge; 15 = 5 + gap stays apart; 50 and 68 are apart until 59
  // joins them (the chain).
  const std::vector<std::string> events = {Event(0, 5),  Event(5, 3),  Event(15, 7),
                                           Event(50, 9), Event(68, 2), Event(59, 4)};
  const std::string expected = "[0,5] count=2 min=3; [15,15] count=1 min=7; [50,68] count=3 min=2; ";
  const std::string reference = MergeAll(events);
  EXPECT_EQ(Describe(reference), expected);

  std::vector<size_t> order(events.size());
  std::iota(order.begin(), order.end(), 0);
  int permutations = 0;
  do {
    std::vector<std::string> permuted;
    for (size_t i : order) permuted.push_back(events[i]);
    // Left to right, one event at a time.
    EXPECT_EQ(MergeAll(permuted), reference);
    // As combiners would: pairs first, then the pairs' sets in two groupings.
    const std::string p01 = MergeAll({permuted[0], permuted[1]});
    const std::string p23 = MergeAll({permuted[2], permuted[3]});
    const std::string p45 = MergeAll({permuted[4], permuted[5]});
    EXPECT_EQ(MergeAll({p01, MergeAll({p23, p45})}), reference);
    EXPECT_EQ(MergeAll({MergeAll({p45, p01}), p23}), reference);
    ++permutations;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(permutations, 720);
}

TEST_F(SessionMergerTest, ChainMergesThroughSeveralSessions) {
  // Sessions 18 apart (gap 10) stay apart; events between them bridge them,
  // each merge reaching the next session.
  std::string set = MergeAll({Event(0, 1), Event(18, 2), Event(36, 3), Event(54, 4)});
  EXPECT_EQ(DecodeOk(set).size(), 4u);
  std::string bridges = MergeAll({Event(27, 5), Event(45, 6), Event(63, 0)});
  EXPECT_EQ(DecodeOk(bridges).size(), 3u);
  ASSERT_TRUE(merger_.Merge(&set, bridges).ok());
  EXPECT_EQ(Describe(set), "[0,0] count=1 min=1; [18,63] count=6 min=0; ");
  // 9 joins [0,0] to the rest.
  ASSERT_TRUE(merger_.Merge(&set, Event(9, 7)).ok());
  EXPECT_EQ(Describe(set), "[0,63] count=8 min=0; ");
  // The same bytes as all eight events merged in the opposite order.
  EXPECT_EQ(set, MergeAll({Event(9, 7), Event(63, 0), Event(45, 6), Event(27, 5), Event(54, 4),
                           Event(36, 3), Event(18, 2), Event(0, 1)}));
}

TEST_F(SessionMergerTest, TakeClosedAtTheBoundary) {
  const std::string all = MergeAll({Event(0, 5), Event(5, 3), Event(15, 7), Event(50, 9),
                                    Event(59, 4), Event(68, 2)});
  std::string set = all;
  std::vector<Session> closed;

  // [0,5] ends at 15: open at 14, closed at 15.
  ASSERT_TRUE(merger_.TakeClosed(&set, 14, &closed).ok());
  EXPECT_TRUE(closed.empty());
  EXPECT_EQ(set, all);
  ASSERT_TRUE(merger_.TakeClosed(&set, 15, &closed).ok());
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].start, 0);
  EXPECT_EQ(closed[0].last, 5);
  EXPECT_EQ(ResultOf(*count_, closed[0].states[0]), "2");
  EXPECT_EQ(ResultOf(*min_, closed[0].states[1]), "3");
  EXPECT_EQ(Describe(set), "[15,15] count=1 min=7; [50,68] count=3 min=2; ");
  // The rest is canonical: the same bytes as merging those events alone.
  EXPECT_EQ(set, MergeAll({Event(15, 7), Event(50, 9), Event(59, 4), Event(68, 2)}));

  // Both remaining close at 78 = 68 + gap, appended after the first.
  ASSERT_TRUE(merger_.TakeClosed(&set, 77, &closed).ok());
  ASSERT_EQ(closed.size(), 2u);
  EXPECT_EQ(Describe(set), "[50,68] count=3 min=2; ");
  ASSERT_TRUE(merger_.TakeClosed(&set, 78, &closed).ok());
  ASSERT_EQ(closed.size(), 3u);
  EXPECT_EQ(closed[1].start, 15);
  EXPECT_EQ(closed[2].start, 50);
  EXPECT_EQ(closed[2].last, 68);
  EXPECT_EQ(ResultOf(*count_, closed[2].states[0]), "3");
  EXPECT_EQ(ResultOf(*min_, closed[2].states[1]), "2");
  EXPECT_EQ(set, "");

  // Nothing to take from the empty set.
  ASSERT_TRUE(merger_.TakeClosed(&set, 1000, &closed).ok());
  EXPECT_EQ(closed.size(), 3u);
}

TEST_F(SessionMergerTest, CorruptSetsAreDataLoss) {
  const std::string good = MergeAll({Event(0, 1), Event(50, 2)});
  std::vector<std::string> corrupt = {
      std::string("\x00", 1),                        // count 0: the empty set is ""
      std::string("\x80", 1),                        // truncated varint
      good.substr(0, good.size() - 1),               // truncated
      good + "x",                                    // trailing bytes
      std::string("\x05", 1) + good.substr(1),       // more sessions than encoded
      // Two overlapping sessions [0,0] and [5,5] (gap 10): not canonical.
      std::string("\x02\x00\x00\x00\x00\x0a\x00\x00\x00", 9),
      // Out of order: [50,50] before [0,0].
      std::string("\x02\x64\x00\x00\x00\x00\x00\x00\x00", 9),
  };
  for (const std::string& c : corrupt) {
    EXPECT_EQ(merger_.Decode(c).status().code(), absl::StatusCode::kDataLoss) << c.size();
    std::string into = good;
    EXPECT_EQ(merger_.Merge(&into, c).code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(into, good);  // unchanged
    std::string set = c;
    std::vector<Session> closed;
    EXPECT_EQ(merger_.TakeClosed(&set, 1000, &closed).code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(set, c);
    EXPECT_TRUE(closed.empty());
  }
  // A set of one aggregation read as two.
  std::vector<const Aggregator*> one = {count_.get()};
  SessionMerger single_agg(one, kGap);
  const std::string states[] = {std::string(8, '\0')};
  EXPECT_EQ(merger_.Decode(single_agg.Single(1, states)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(SessionMergerTest, CorruptStatesFailTheMerge) {
  // A count state of 3 bytes: well framed, but Aggregator::Merge refuses it.
  const std::string bad_states[] = {"abc", ""};
  std::string into = Event(0, 1);
  const std::string before = into;
  EXPECT_EQ(merger_.Merge(&into, merger_.Single(3, bad_states)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(into, before);
}

TEST_F(SessionMergerTest, LargeTimesDoNotOverflow) {
  const int64_t big = std::numeric_limits<int64_t>::max() - 3;
  const int64_t small = std::numeric_limits<int64_t>::min() + 3;
  std::string set = MergeAll({Event(big, 1), Event(small, 2), Event(big - 5, 3)});
  EXPECT_EQ(Describe(set), "[" + std::to_string(small) + "," + std::to_string(small) +
                               "] count=1 min=2; [" + std::to_string(big - 5) + "," +
                               std::to_string(big) + "] count=2 min=1; ");
  std::vector<Session> closed;
  ASSERT_TRUE(merger_.TakeClosed(&set, std::numeric_limits<int64_t>::max(), &closed).ok());
  ASSERT_EQ(closed.size(), 1u);  // the late one never closes: last + gap overflows
  EXPECT_EQ(closed[0].start, small);
}

}  // namespace
}  // namespace sluice::engine
