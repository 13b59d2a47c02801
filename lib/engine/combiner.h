// The map-side combiner and the reduce-side merge of keyed aggregation, and
// the shuffle row format between them (docs/state.md "Stages of a
// keyed batch" and "Shuffle transport").
//
// Module sluice::engine owns them. Pure code: no I/O, no clock; the transport
// (PushShuffle, chunking, compression) and windows are the caller's.
//
//   map task:    Combiner::Add(key, values) per row ... Finish()
//                  -> one buffer of rows per reduce partition p in [0, R)
//   transport:   buffer p of every map task -> the worker of partition p
//   reduce task: ShuffleReader::MergeRows(buffer) per map task's buffer
//                  ... AppendResults() -> one JSON object per key
//
// Keys are opaque, canonical bytes chosen by the caller: equal keys must be
// equal bytes. The engine builds them with AppendKeyPart below, once per
// key_by field in order (varint length + value key of aggregate.h, length 0
// for null/missing/NaN), which makes the concatenation self-delimiting (plain
// concatenated value keys are not: 's' strings have no terminator) and lets
// AppendKeyJson render a key back as a JSON array.
//
// Partitioning: Partition(key) = StableHash64(key) % R, the FNV-1a 64 +
// splitmix64 hash of aggregate.h. It is stable across machines and builds, so
// every map task and the reduce side agree; it must never change for a
// running job (combiner_test pins two values).
//
// Row format of one partition's buffer: a sequence of rows, nothing else (no
// header, no count; the empty buffer has no rows):
//
//   row := varint(key length) key  { varint(state length) state }  x N
//
// N = the number of aggregations of the AggregateOp, states in its order,
// each the encoded state of aggregate.h (possibly empty). Varints are
// unsigned LEB128 (7 bits per byte, low first), as in aggregate.h. Within a
// buffer the rows are sorted by key bytewise ascending and keys are unique.
//
// Determinism: Finish() output depends only on the multiset of Add calls, not
// their order (except sum/avg states, which are doubles summed in Add order
// and may differ in the last bits): a re-run of a map task over the same
// input produces byte-identical shuffle output, which may replace the first.
//
// Thread-compatible: one thread at a time per object; distinct objects are
// independent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "lib/common/status.h"
#include "lib/engine/aggregate.h"
#include "lib/engine/expr.h"
#include "proto/job.pb.h"

namespace sluice::engine {

// Appends one key_by field's value to the composite key `key`: varint length
// + value key (aggregate.h), or varint 0 for a value without one (null,
// missing, NaN).
void AppendKeyPart(const Value& value, std::string* key);

// Appends a key built by AppendKeyPart as a JSON array of its parts, e.g.
// ["alice",3,null]. DATA_LOSS if `key` is not such a key.
[[nodiscard]] Status AppendKeyJson(std::string_view key, std::string* out);

// key -> one state per aggregation, looked up by string_view without a copy.
// An open-addressing table: std::unordered_map with a hash it deems "fast"
// keeps no hash per node and rehashes every key it walks past in a bucket
// chain, which was a quarter of a keyed map task's time (100,000 keys).
// Nothing depends on its order: rows and results are sorted by key.
struct KeyHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct KeyEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};
using StateMap = absl::flat_hash_map<std::string, std::vector<std::string>, KeyHash, KeyEq>;

// The reduce partition of `key` among `reduce_partitions` (>= 1).
uint32_t PartitionOf(std::string_view key, uint32_t reduce_partitions);

// The map side: combines the rows of one map task per key.
class Combiner {
 public:
  // INVALID_ARGUMENT for reduce_partitions < 1, no aggregations, or an
  // aggregation Aggregator::Create refuses.
  // `partition_key_parts` > 0: only the key's first that many parts
  // (AppendKeyPart) choose its partition (session windows: the user's key,
  // not the event time after it); 0: the whole key.
  [[nodiscard]] static Result<std::unique_ptr<Combiner>> Create(const proto::AggregateOp& op,
                                                                uint32_t reduce_partitions,
                                                                int partition_key_parts = 0);

  // Adds one row: `values` holds one value per aggregation, in order (Null
  // for a missing field; ignored by count's Add). INVALID_ARGUMENT for the
  // wrong number of values; Aggregator::Add's errors (RESOURCE_EXHAUSTED at
  // a limit) as they are, after which the combiner's content is unspecified
  // (drop it: the map task fails).
  [[nodiscard]] Status Add(std::string_view key, std::span<const Value> values);

  uint32_t Partition(std::string_view key) const;

  // One buffer per reduce partition (size R; empty for a partition without
  // keys) in the row format above; the combiner is empty afterwards.
  std::vector<std::string> Finish();

  size_t num_keys() const { return states_.size(); }
  uint32_t reduce_partitions() const { return reduce_partitions_; }

 private:
  Combiner(std::vector<std::unique_ptr<Aggregator>> aggs, uint32_t reduce_partitions, int partition_key_parts)
      : aggs_(std::move(aggs)), reduce_partitions_(reduce_partitions), partition_key_parts_(partition_key_parts) {}

  std::vector<std::unique_ptr<Aggregator>> aggs_;
  uint32_t reduce_partitions_;
  int partition_key_parts_;
  StateMap states_;  // key -> one state per aggregation
};

// The reduce side of one partition: merges map tasks' buffers per key and
// renders the results.
class ShuffleReader {
 public:
  // INVALID_ARGUMENT as Combiner::Create.
  [[nodiscard]] static Result<std::unique_ptr<ShuffleReader>> Create(
      const proto::AggregateOp& op);

  // Merges every row of `buffer` (one map task's output for this partition)
  // with Aggregator::Merge. DATA_LOSS, naming the row and byte offset, for a
  // truncated or malformed buffer (bad varint, length past the end, keys not
  // strictly ascending); then nothing of it was merged. Merge's own errors
  // (DATA_LOSS for a corrupt state, RESOURCE_EXHAUSTED) leave the reader's
  // content unspecified.
  [[nodiscard]] Status MergeRows(std::string_view buffer);

  // Appends one line per key, in key order: a JSON object
  //   {"key":<AppendKeyJson(key)>,"<as 1>":<result 1>,...,"<as N>":<result N>}\n
  // (an empty `as` is named as job_file.cc does: count, else <fn>_<field>).
  // DATA_LOSS for a key not built by AppendKeyPart or a corrupt state.
  [[nodiscard]] Status AppendResults(std::string* out) const;

  // The merged states of `key` (one per aggregation), or nullptr.
  const std::vector<std::string>* Find(std::string_view key) const;

  // Every merged key with its states, in key order.
  std::vector<const StateMap::value_type*> Sorted() const;

  size_t num_keys() const { return states_.size(); }
  // The aggregations' Aggregators and output field names, in order.
  const std::vector<std::unique_ptr<Aggregator>>& aggregators() const { return aggs_; }
  const std::vector<std::string>& names() const { return names_; }

 private:
  ShuffleReader(std::vector<std::unique_ptr<Aggregator>> aggs, std::vector<std::string> names)
      : aggs_(std::move(aggs)), names_(std::move(names)) {}

  std::vector<std::unique_ptr<Aggregator>> aggs_;
  std::vector<std::string> names_;  // the output field of each aggregation
  StateMap states_;
};

}  // namespace sluice::engine
