// Event-time windows of keyed aggregation (docs/state.md "Windows and
// event time"): parsing an event's time, the tumbling/sliding windows a time
// falls in, and session windows as a mergeable state.
//
// Module sluice::engine owns them. Pure code: no I/O, no clock; watermarks,
// lateness and the state store are the caller's.
//
// Event time (ParseEventTime): epoch milliseconds UTC, from
//   a number           epoch ms; finite, |v| <= 2^53, truncated toward zero
//   a string of digits epoch ms (no sign), at most 2^53
//   an RFC 3339 string YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|+HH:MM|-HH:MM)
//                      year 0000-9999, fraction 1 to 9 digits truncated to ms,
//                      second 60 (a leap second) read as the next second, as
//                      POSIX time does.
//
// Tumbling and sliding windows are [s, s + length) for every s that is a
// multiple of slide (aligned to epoch 0, also before 1970); tumbling is
// slide == length.
//
// Session windows: per key, an event at t is the session [t, t]; a session
// [start, last] ends at last + gap, and two sessions merge when the later
// one's start < the earlier one's last + gap (the session's intervals
// [start, last + gap) overlap). A *session set* is the sessions of one key,
// encoded as a byte string that the map-side combiner, the shuffle and the
// reduce side treat like an aggregate state (aggregate.h): the empty string
// is the empty set and the identity of Merge. Encoding (varints are unsigned
// LEB128, format/varint.h):
//
//   set     := varint(n >= 1) session x n
//   session := zigzag varint(start) varint(last - start)
//              { varint(state length) state } x A
//
// A = the number of aggregations, each state the encoded state of
// aggregate.h (possibly empty), in the aggregations' order. Sessions are
// sorted by start and never overlap: next.start >= prev.last + gap (so `last`
// ascends too). Decode refuses anything else (n = 0, trailing bytes,
// unsorted or overlapping sessions, a wrong number of states) with DATA_LOSS,
// so there is exactly one encoding of each set.
//
// Determinism: a session set is a function of the multiset of events merged
// into it, not of the order or grouping of Single and Merge calls: the
// sessions are the connected components of the events' [t, t + gap), and
// their states merge with Aggregator::Merge, whose result is byte-for-byte
// order-independent -- except sum/avg states, which are doubles and may
// differ in the last bits (aggregate.h).
//
// Thread-safe: SessionMerger is immutable after construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/common/status.h"
#include "lib/engine/aggregate.h"
#include "lib/engine/expr.h"

namespace sluice::engine {

// Numbers beyond this (in ms) are refused: doubles above it are not exact.
inline constexpr int64_t kMaxEventTimeMs = int64_t{1} << 53;

// The event time of `v` in epoch ms (above). INVALID_ARGUMENT naming the
// value (shortened to 64 bytes) for anything else: null, a boolean, NaN, an
// infinity, a malformed string, a field out of range (month 13, 2023-02-29,
// hour 24, offset +24:00).
[[nodiscard]] Result<int64_t> ParseEventTime(const Value& v);

// Clears `starts` and fills in, ascending, the start of every window
// [s, s + length_ms) that contains `t`, s a multiple of slide_ms (floor
// division: right for negative t too). length_ms / slide_ms windows when
// slide_ms divides length_ms (checked by the job file), one when they are
// equal (tumbling). Leaves `starts` empty unless both are > 0. Needs |t|,
// length_ms < 2^62 (no overflow; every ParseEventTime result qualifies).
void WindowStarts(int64_t t, int64_t length_ms, int64_t slide_ms, std::vector<int64_t>* starts);

// One session: [start, last] (last = the latest event time in it; the
// session ends at last + gap) and one encoded aggregate state per
// aggregation (aggregate.h).
struct Session {
  int64_t start = 0;
  int64_t last = 0;
  std::vector<std::string> states;

  bool operator==(const Session&) const = default;
};

// Builds, merges, decodes and closes session sets (encoding above) of one
// job's aggregations and gap.
class SessionMerger {
 public:
  // aggs: the aggregations' Aggregators (not owned; they outlive this);
  // gap_ms > 0.
  SessionMerger(std::span<const Aggregator* const> aggs, int64_t gap_ms);

  // The encoded set holding one session [t, t] with `states`, one per
  // aggregation (their number must be the number of aggregations).
  std::string Single(int64_t t, std::span<const std::string> states) const;

  // *into := the union of *into and `other`, overlapping sessions (next.start
  // < prev.last + gap) merged with Aggregator::Merge, repeatedly (a merged
  // session can reach the next one), sorted by start. DATA_LOSS for a
  // corrupt encoding; Aggregator::Merge's errors as they are. On error *into
  // is unchanged.
  [[nodiscard]] Status Merge(std::string* into, std::string_view other) const;

  // The sessions of a set, in start order (none for the empty string).
  // DATA_LOSS for a corrupt encoding.
  [[nodiscard]] Result<std::vector<Session>> Decode(std::string_view set) const;

  // Removes from *set every session closed at `watermark` (last + gap <=
  // watermark) and appends them to *closed in start order; the rest stays
  // encoded in *set (the empty string if none). DATA_LOSS for a corrupt
  // encoding, leaving *set and *closed unchanged.
  [[nodiscard]] Status TakeClosed(std::string* set, int64_t watermark,
                                  std::vector<Session>* closed) const;

  int64_t gap_ms() const { return gap_ms_; }

 private:
  // One session of an encoded set, its states still encoded (`body`: the
  // length-prefixed states, a view into the set).
  struct RawSession {
    int64_t start;
    int64_t last;
    std::string_view body;
  };

  // Parses and validates a set; DATA_LOSS naming the byte offset.
  [[nodiscard]] Status Parse(std::string_view set, std::vector<RawSession>* out) const;
  // Splits a session's body into its states (appended to *states).
  void SplitBody(std::string_view body, std::vector<std::string_view>* states) const;
  // Whether a session starting at `start` overlaps one whose latest event is `last`.
  bool Overlaps(int64_t last, int64_t start) const;
  // Whether a session whose latest event is `last` is closed at `watermark`.
  bool ClosedAt(int64_t last, int64_t watermark) const;

  std::vector<const Aggregator*> aggs_;
  int64_t gap_ms_;
};

}  // namespace sluice::engine
