// Event time, window starts and session sets; formats in window.h.
#include "lib/engine/window.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "fmt/format.h"
#include "lib/engine/json_text.h"
#include "lib/format/varint.h"

namespace sluice::engine {
namespace {

// ---- event time ----

constexpr size_t kMaxShownValue = 64;
constexpr int64_t kMsPerDay = 86'400'000;

// `v` for an error message: strings quoted and escaped, cut at 64 bytes (on
// a UTF-8 character boundary) with "..." appended.
std::string Describe(const Value& v) {
  std::string out;
  if (std::holds_alternative<Null>(v)) {
    out = "null";
  } else if (const bool* b = std::get_if<bool>(&v)) {
    out = *b ? "true" : "false";
  } else if (const double* d = std::get_if<double>(&v)) {
    out = fmt::format("{}", *d);
  } else {
    std::string_view s = std::get<std::string_view>(v);
    const bool cut = s.size() > kMaxShownValue;
    if (cut) {
      size_t n = kMaxShownValue;
      while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;  // continuation byte
      s = s.substr(0, n);
    }
    AppendJsonString(s, &out);
    if (cut) out.append("...");
  }
  return out;
}

Status NotAnEventTime(const Value& v) {
  return absl::InvalidArgumentError(
      fmt::format("event time {} is not epoch milliseconds or RFC 3339", Describe(v)));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads exactly `n` digits at *pos.
bool Digits(std::string_view s, size_t* pos, size_t n, int* out) {
  if (s.size() - *pos < n) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = s[*pos + i];
    if (!IsDigit(c)) return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool Expect(std::string_view s, size_t* pos, char c) {
  if (*pos >= s.size() || s[*pos] != c) return false;
  ++*pos;
  return true;
}

bool IsLeapYear(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

int DaysInMonth(int64_t y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeapYear(y) ? 29 : kDays[m - 1];
}

// Days since 1970-01-01 of the proleptic Gregorian date y-m-d (Howard
// Hinnant's days_from_civil, http://howardhinnant.github.io/date_algorithms.html).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;                                    // [0, 399]
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            // [0, 146096]
  return era * 146097 + doe - 719468;
}

// YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|+HH:MM|-HH:MM); false if malformed
// or out of range.
bool ParseRfc3339(std::string_view s, int64_t* ms) {
  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!Digits(s, &pos, 4, &year) || !Expect(s, &pos, '-') || !Digits(s, &pos, 2, &month) ||
      !Expect(s, &pos, '-') || !Digits(s, &pos, 2, &day)) {
    return false;
  }
  if (pos >= s.size() || (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ')) return false;
  ++pos;
  if (!Digits(s, &pos, 2, &hour) || !Expect(s, &pos, ':') || !Digits(s, &pos, 2, &minute) ||
      !Expect(s, &pos, ':') || !Digits(s, &pos, 2, &second)) {
    return false;
  }
  int64_t fraction_ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t n = 0;
    for (; pos < s.size() && IsDigit(s[pos]); ++pos, ++n) {
      if (n < 3) fraction_ms = fraction_ms * 10 + (s[pos] - '0');
    }
    if (n < 1 || n > 9) return false;
    for (; n < 3; ++n) fraction_ms *= 10;
  }
  int64_t offset_minutes = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    const int sign = s[pos] == '-' ? -1 : 1;
    ++pos;
    int oh = 0, om = 0;
    if (!Digits(s, &pos, 2, &oh) || !Expect(s, &pos, ':') || !Digits(s, &pos, 2, &om)) return false;
    if (oh > 23 || om > 59) return false;
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return false;
  }
  if (pos != s.size()) return false;
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month) || hour > 23 ||
      minute > 59 || second > 60) {
    return false;
  }
  // Second 60 (a leap second) becomes the next second, as in POSIX time.
  *ms = DaysFromCivil(year, month, day) * kMsPerDay + hour * int64_t{3'600'000} +
        minute * int64_t{60'000} + second * int64_t{1000} + fraction_ms -
        offset_minutes * int64_t{60'000};
  return true;
}

// ---- session sets ----

uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}

int64_t UnZigZag(uint64_t u) {
  return static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
}

constexpr uint64_t kSignBit = uint64_t{1} << 63;

Status CorruptSet(std::string_view why, size_t pos) {
  return absl::DataLossError(fmt::format("corrupt session set: {} at byte {}", why, pos));
}

}  // namespace

Result<int64_t> ParseEventTime(const Value& v) {
  if (const double* d = std::get_if<double>(&v)) {
    if (!std::isfinite(*d) || std::fabs(*d) > static_cast<double>(kMaxEventTimeMs)) {
      return NotAnEventTime(v);
    }
    return static_cast<int64_t>(std::trunc(*d));
  }
  const std::string_view* s = std::get_if<std::string_view>(&v);
  if (s == nullptr || s->empty()) return NotAnEventTime(v);
  if (std::all_of(s->begin(), s->end(), IsDigit)) {
    if (s->size() > 16) return NotAnEventTime(v);  // 2^53 has 16 digits
    int64_t ms = 0;
    for (char c : *s) ms = ms * 10 + (c - '0');
    if (ms > kMaxEventTimeMs) return NotAnEventTime(v);
    return ms;
  }
  int64_t ms = 0;
  if (!ParseRfc3339(*s, &ms)) return NotAnEventTime(v);
  return ms;
}

void WindowStarts(int64_t t, int64_t length_ms, int64_t slide_ms, std::vector<int64_t>* starts) {
  starts->clear();
  if (length_ms <= 0 || slide_ms <= 0) return;
  // The latest start: floor(t / slide) * slide.
  int64_t q = t / slide_ms;
  if (t % slide_ms != 0 && t < 0) --q;
  const int64_t latest = q * slide_ms;
  // Every multiple s of slide with t - length < s <= latest, i.e. t - s < length.
  int64_t s = latest;
  while (t - s < length_ms) {
    starts->push_back(s);
    s -= slide_ms;
  }
  std::reverse(starts->begin(), starts->end());
}

// ---- SessionMerger ----

SessionMerger::SessionMerger(std::span<const Aggregator* const> aggs, int64_t gap_ms)
    : aggs_(aggs.begin(), aggs.end()), gap_ms_(gap_ms) {}

bool SessionMerger::Overlaps(int64_t last, int64_t start) const {
  // start < last + gap, without overflow.
  if (start <= last) return true;
  return static_cast<uint64_t>(start) - static_cast<uint64_t>(last) < static_cast<uint64_t>(gap_ms_);
}

bool SessionMerger::ClosedAt(int64_t last, int64_t watermark) const {
  // last + gap <= watermark, without overflow.
  if (watermark <= last) return false;
  return static_cast<uint64_t>(watermark) - static_cast<uint64_t>(last) >=
         static_cast<uint64_t>(gap_ms_);
}

std::string SessionMerger::Single(int64_t t, std::span<const std::string> states) const {
  std::string out;
  format::PutVarint(1, &out);
  format::PutVarint(ZigZag(t), &out);
  format::PutVarint(0, &out);
  for (const std::string& state : states) format::PutLengthPrefixed(state, &out);
  return out;
}

Status SessionMerger::Parse(std::string_view set, std::vector<RawSession>* out) const {
  out->clear();
  if (set.empty()) return absl::OkStatus();
  size_t pos = 0;
  uint64_t n = 0;
  if (!format::GetVarint(set, &pos, &n)) return CorruptSet("bad session count", pos);
  // Each session takes at least 2 + A bytes.
  if (n == 0 || n > (set.size() - pos) / (2 + aggs_.size())) {
    return CorruptSet(fmt::format("session count {} does not fit", n), 0);
  }
  out->reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    const size_t at = pos;
    uint64_t zz = 0, span = 0;
    if (!format::GetVarint(set, &pos, &zz) || !format::GetVarint(set, &pos, &span)) {
      return CorruptSet(fmt::format("session {}: bad start or length", i + 1), at);
    }
    const int64_t start = UnZigZag(zz);
    // last = start + span must not pass INT64_MAX (compare in offset-binary).
    const uint64_t biased = static_cast<uint64_t>(start) ^ kSignBit;
    if (span > ~uint64_t{0} - biased) {
      return CorruptSet(fmt::format("session {}: end out of range", i + 1), at);
    }
    const int64_t last = static_cast<int64_t>((biased + span) ^ kSignBit);
    const size_t body_begin = pos;
    for (size_t k = 0; k < aggs_.size(); ++k) {
      std::string_view state;
      if (!format::GetLengthPrefixed(set, &pos, &state)) {
        return CorruptSet(fmt::format("session {}: bad state {}", i + 1, k + 1), pos);
      }
    }
    if (!out->empty() && Overlaps(out->back().last, start)) {
      return CorruptSet(fmt::format("session {}: not after the previous one", i + 1), at);
    }
    out->push_back({start, last, set.substr(body_begin, pos - body_begin)});
  }
  if (pos != set.size()) return CorruptSet("trailing bytes", pos);
  return absl::OkStatus();
}

void SessionMerger::SplitBody(std::string_view body, std::vector<std::string_view>* states) const {
  size_t pos = 0;
  for (size_t k = 0; k < aggs_.size(); ++k) {
    std::string_view state;
    // Parse validated the body.
    if (!format::GetLengthPrefixed(body, &pos, &state)) state = {};
    states->push_back(state);
  }
}

Status SessionMerger::Merge(std::string* into, std::string_view other) const {
  std::vector<RawSession> a, b;
  RETURN_IF_ERROR(Parse(*into, &a));
  RETURN_IF_ERROR(Parse(other, &b));
  if (b.empty()) return absl::OkStatus();
  if (a.empty()) {
    into->assign(other);
    return absl::OkStatus();
  }

  // The session being built: its raw body until something merges into it,
  // then its states decoded.
  struct Current {
    int64_t start = 0;
    int64_t last = 0;
    std::string_view raw;
    bool decoded = false;
    std::vector<std::string> states;
  };
  std::string body;  // the encoded sessions, without the count
  uint64_t count = 0;
  auto emit = [&](const Current& cur) {
    format::PutVarint(ZigZag(cur.start), &body);
    format::PutVarint(static_cast<uint64_t>(cur.last) - static_cast<uint64_t>(cur.start), &body);
    if (!cur.decoded) {
      body.append(cur.raw);
    } else {
      for (const std::string& state : cur.states) format::PutLengthPrefixed(state, &body);
    }
    ++count;
  };

  // Sweep both inputs in start order (ties: *into's first); each session
  // either extends the current one (and may bridge to the next) or starts anew.
  size_t i = 0, j = 0;
  Current cur;
  bool have = false;
  std::vector<std::string_view> views;
  while (i < a.size() || j < b.size()) {
    const bool take_a = j >= b.size() || (i < a.size() && a[i].start <= b[j].start);
    const RawSession& next = take_a ? a[i++] : b[j++];
    if (have && Overlaps(cur.last, next.start)) {
      if (!cur.decoded) {
        views.clear();
        SplitBody(cur.raw, &views);
        cur.states.assign(views.begin(), views.end());
        cur.decoded = true;
      }
      views.clear();
      SplitBody(next.body, &views);
      for (size_t k = 0; k < aggs_.size(); ++k) {
        RETURN_IF_ERROR(aggs_[k]->Merge(views[k], &cur.states[k]));
      }
      cur.last = std::max(cur.last, next.last);
      continue;
    }
    if (have) emit(cur);
    cur = Current{next.start, next.last, next.body, false, {}};
    have = true;
  }
  emit(cur);

  std::string merged;
  merged.reserve(body.size() + 2);
  format::PutVarint(count, &merged);
  merged.append(body);
  *into = std::move(merged);
  return absl::OkStatus();
}

Result<std::vector<Session>> SessionMerger::Decode(std::string_view set) const {
  std::vector<RawSession> raw;
  RETURN_IF_ERROR(Parse(set, &raw));
  std::vector<Session> out;
  out.reserve(raw.size());
  std::vector<std::string_view> views;
  for (const RawSession& r : raw) {
    views.clear();
    SplitBody(r.body, &views);
    out.push_back(Session{r.start, r.last, std::vector<std::string>(views.begin(), views.end())});
  }
  return out;
}

Status SessionMerger::TakeClosed(std::string* set, int64_t watermark,
                                 std::vector<Session>* closed) const {
  std::vector<RawSession> raw;
  RETURN_IF_ERROR(Parse(*set, &raw));
  // `last` ascends in a valid set, so the closed sessions are a prefix.
  size_t n_closed = 0;
  while (n_closed < raw.size() && ClosedAt(raw[n_closed].last, watermark)) ++n_closed;
  if (n_closed == 0) return absl::OkStatus();

  std::vector<std::string_view> views;
  for (size_t i = 0; i < n_closed; ++i) {
    views.clear();
    SplitBody(raw[i].body, &views);
    closed->push_back(
        Session{raw[i].start, raw[i].last, std::vector<std::string>(views.begin(), views.end())});
  }
  std::string rest;
  if (n_closed < raw.size()) {
    format::PutVarint(raw.size() - n_closed, &rest);
    for (size_t i = n_closed; i < raw.size(); ++i) {
      format::PutVarint(ZigZag(raw[i].start), &rest);
      format::PutVarint(static_cast<uint64_t>(raw[i].last) - static_cast<uint64_t>(raw[i].start), &rest);
      rest.append(raw[i].body);
    }
  }
  *set = std::move(rest);
  return absl::OkStatus();
}

}  // namespace sluice::engine
