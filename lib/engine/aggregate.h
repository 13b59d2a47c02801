// Aggregate functions of keyed aggregation (proto::Aggregation).
//
// Module sluice::engine owns them; docs/state.md "Aggregations" is the design.
// Each function has a *state*: an encoded byte string that a map-side combiner
// builds with Add, that merges with another partial state of the same function
// (combiner outputs of several map tasks, a batch's delta into the stored
// state), that travels through the shuffle and is stored as is, and that yields
// the function's result as JSON. Aggregator objects hold no state themselves:
// one per proto::Aggregation, operating on state strings that the caller keeps
// (per key and window).
//
// The empty string is the initial state of every function (nothing added) and
// the identity of Merge. Encodings (all integers little-endian unless said):
//
//   count            fixed int64: rows added, nulls included.      -> 17
//   sum              double: the sum of numbers; empty if none.    -> 4.5 | null
//   avg              double sum, fixed int64 count; empty if none. -> 2.25 | null
//   min, max         one value key (below); empty if none.         -> 3 | "b" | null
//   count_distinct   the distinct value keys, sorted ascending, each
//                    varint length + key; at most kMaxDistinctValues.   -> 42
//   approx_distinct  HyperLogLog: 2^12 one-byte registers (exactly 4096 bytes),
//                    register j = max rank of hashes whose top 12 bits are j;
//                    hash = splitmix64 finalizer of FNV-1a 64 of the value key
//                    (stable across machines and builds).          -> 10013
//                    Estimate: Ertl's improved estimator (2017) -- the
//                    standard harmonic-mean estimator with the linear-counting
//                    (empty registers) correction built in, without the
//                    original's bias near its 2.5 m switch point; standard
//                    error 1.04/sqrt(4096) = 1.6%. Registers above 53 are corrupt.
//   top_k            exact counts: entries sorted by value key, each varint
//                    length + key + varint count; at most kMaxTopKValues
//                    distinct values.  -> [{"value":"a","count":3},...], the k
//                    largest counts, ties by value order ascending.
//
// A *value key* is the canonical, order-preserving encoding of one value:
//   'b' + 0x00|0x01   boolean
//   'n' + 8 bytes     number: IEEE bits, big-endian, sign bit flipped (all
//                     bits flipped for negatives), -0 as 0; byte order = numeric order
//   's' + bytes       string (UTF-8 as received)
// so keys compare bytewise as: false < true < numbers (numeric) < strings
// (bytewise). min/max use this order (a number is below every string).
//
// What each function reads: count counts every Add (nulls and missing fields
// too: it counts rows); sum and avg read numbers only; min and max read numbers
// and strings; count_distinct, approx_distinct and top_k read booleans, numbers
// and strings. Everything else (null, a missing field, NaN, and a type the
// function does not read) is ignored.
//
// Cost: Add to count_distinct and top_k states is linear in the state's size
// (a scan of the sorted encoding); Merge is linear in both. Sums of doubles
// depend on the order of addition in the last bits.
//
// Thread-safe: Aggregators are immutable after Create.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "lib/common/status.h"
#include "lib/engine/expr.h"
#include "proto/job.pb.h"

namespace sluice::engine {

// Internal (not in the job language): the state is the events themselves,
// each varint length + an encoded event (keyed.h EncodeEvent), in the order
// added and merged — what update_state with a plugin ships from the map
// tasks to the reduce task. Its result is the number of events.
inline constexpr std::string_view kEventListFn = "_events";

// Beyond these, Add/Merge return RESOURCE_EXHAUSTED rather than grow the state
// without bound (the job fails with that error, docs/state.md).
inline constexpr size_t kMaxDistinctValues = 100'000;
inline constexpr size_t kMaxTopKValues = 100'000;
// HyperLogLog precision: 2^kHllPrecision registers.
inline constexpr int kHllPrecision = 12;
inline constexpr size_t kHllRegisters = size_t{1} << kHllPrecision;

class Aggregator {
 public:
  // INVALID_ARGUMENT for an unknown fn, a missing field (all but count), or
  // top_k with k < 1.
  [[nodiscard]] static Result<std::unique_ptr<Aggregator>> Create(
      const proto::Aggregation& spec);

  virtual ~Aggregator() = default;

  // Adds one value (Null for a missing field) to `state`.
  // RESOURCE_EXHAUSTED at a limit; DATA_LOSS if `state` is not a valid state.
  [[nodiscard]] virtual Status Add(const Value& value, std::string* state) const = 0;

  // Merges the partial state `other` into `state`. The result equals the state
  // built by adding both inputs (byte for byte, except sum/avg up to rounding).
  [[nodiscard]] virtual Status Merge(std::string_view other, std::string* state) const = 0;

  // Appends the result as one JSON value. DATA_LOSS for an invalid state.
  [[nodiscard]] virtual Status AppendResult(std::string_view state,
                                            std::string* json_out) const = 0;

  const std::string& fn() const { return fn_; }

 protected:
  explicit Aggregator(std::string fn) : fn_(std::move(fn)) {}

 private:
  std::string fn_;
};

// The canonical value key (above) of `value`; false for values that have none
// (null, NaN), leaving `key` unspecified.
bool EncodeValueKey(const Value& value, std::string* key);

// The value a value key encodes (a string views into `key`); false if `key`
// is not a value key.
bool DecodeValueKey(std::string_view key, Value* out);

// Appends the value a value key encodes as JSON (true, 2.5, "text");
// false if `key` is not a value key.
bool AppendValueKeyJson(std::string_view key, std::string* out);

// The stable 64-bit hash that approx_distinct applies to value keys.
uint64_t StableHash64(std::string_view bytes);

}  // namespace sluice::engine
