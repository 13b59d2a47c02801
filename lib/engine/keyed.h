// The keyed stage of a job: what follows `key_by` (docs/state.md).
//
// Module sluice::engine owns it. A keyed job is its stateless operators, then
//
//   key_by: [fields]  [window: {...}]  aggregate: [...]    or
//   key_by: [fields]  update_state: {running: [...], timeout: ...}
//
// as the job's last operators. The stage runs in two halves:
//
//   map task (KeyedMapper, driven by the Pipeline): each event -> its key
//     (AppendKeyPart per key_by field), its windows, one value per
//     aggregation -> Combiner -> one row buffer per reduce partition;
//   reduce task (Reducer): every map task's buffer for one partition ->
//     merged per key -> folded into the partition's state (StateAccess, the
//     worker's versioned store) -> output lines and the state's changes.
//
// Modes and their state (state keys are row keys, values are the
// aggregation states each length-prefixed, as in a shuffle row):
//
//   kPerBatch     aggregate, no window: per batch (Spark's reduceByKey); no state.
//   kBatchWindow  window over batch time: batch n is slot n-1; window slots
//                 [s, s+L) with s a multiple of S (L, S in batches). Row key =
//                 part(s) + user key, so windows sort by start and the closed
//                 ones are a prefix of the state. Emitted by the batch that
//                 ends the window.
//   kEventWindow  tumbling/sliding over an event-time field: row key =
//                 part(window start ms) + user key. Emitted once, by the batch
//                 whose watermark reaches end + allowed_lateness; an event
//                 whose every window is already emitted is late: a dead
//                 letter, counted.
//   kSession      session windows: row key = user key + part(event time);
//                 partitioned by the user key; state = the key's session set
//                 (window.h SessionMerger). A session is emitted when the
//                 watermark reaches its last event + gap + allowed_lateness.
//   kRunning      update_state running aggregates: state per user key = fixed
//                 int64 batch time of its last update, then the states. Every
//                 key a batch updates is emitted with its new totals; a key
//                 idle for `timeout` (batch time) is emitted with
//                 "timed_out":true and removed.
//   kPlugin       update_state with a plugin (plugin_api.h StateUpdater): the
//                 map side ships the events themselves (the internal _events
//                 aggregation of aggregate.h: each event encoded, EncodeEvent
//                 below); state per user key = fixed int64 batch time of its
//                 last update, then the plugin's bytes. Update is called per
//                 key with the batch's events, and per timed-out key.
//
// kSession, and kRunning/kPlugin with a timeout, also keep a deadline index
// in the state (deadline_index.h): a batch reads the keys it merges, then
// only the index entries whose deadline has passed, never the whole state
// (except once, to build the index of a state that has none: the marker
// says it exists). Each change of a key's deadline is the erasure of its old
// entry and the write of its new one, in the batch's changes.
//
// Output lines (JSON objects): {"key":[...], <window fields>, "<as>":<result>...}
// with "window_start"/"window_end" (ms) for windows, "session_start"/
// "session_end" for sessions.
//
// Determinism: a reduce task's output and changes depend only on the state as
// of the previous batch, the map buffers (merged in map-task order) and the
// batch's context, so a re-run produces the same bytes.
//
// Thread-compatible.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/common/status.h"
#include "lib/engine/aggregate.h"
#include "lib/engine/combiner.h"
#include "lib/engine/expr.h"
#include "lib/engine/plugin_api.h"
#include "lib/state/state_store.h"
#include "proto/job.pb.h"

namespace sluice::engine {

inline constexpr int64_t kNoWatermark = std::numeric_limits<int64_t>::min();
inline constexpr int32_t kDefaultReducePartitions = 4;

struct KeyedStage {
  enum class Mode { kPerBatch, kBatchWindow, kEventWindow, kSession, kRunning, kPlugin };
  Mode mode = Mode::kPerBatch;
  int first_op = 0;  // index of key_by among the job's operators
  std::vector<std::string> key_fields;
  proto::WindowOp window;        // kBatchWindow, kEventWindow, kSession
  proto::AggregateOp aggregate;  // aggregate, or update_state's running functions
  int64_t timeout_ms = 0;        // kRunning, kPlugin
  proto::PluginOp plugin;        // kPlugin: path and config
  int plugin_line = 0;           // kPlugin: its line in the job file
  std::string job;               // the job's name, for messages
  int64_t batch_interval_ms = 0;
  int32_t reduce_partitions = kDefaultReducePartitions;

  bool stateful() const { return mode != Mode::kPerBatch; }
  bool event_time() const { return mode == Mode::kEventWindow || mode == Mode::kSession; }
};

// The keyed stage of `spec`, or nullopt for a job without key_by.
// INVALID_ARGUMENT (naming file and line) for a shape that cannot run: keyed
// operators not last, update_state with a plugin, a window with update_state.
[[nodiscard]] Result<std::optional<KeyedStage>> KeyedStageOf(const proto::JobSpec& spec);

bool IsKeyed(const proto::JobSpec& spec);
// A window over an event-time field (it has a watermark).
bool HasEventTime(const proto::JobSpec& spec);
int32_t ReducePartitions(const proto::JobSpec& spec);

// The watermark of an event-time job whose committed batches saw event times
// up to `max_event_time_ms` (0: none yet): that minus the window's max_delay;
// kNoWatermark for other jobs or before any event.
int64_t Watermark(const proto::JobSpec& spec, int64_t max_event_time_ms);

// What a task knows about its batch.
struct BatchContext {
  int64_t batch_id = 0;
  int64_t batch_time_unix_ms = 0;  // the end of its interval
  int64_t watermark_unix_ms = kNoWatermark;
  // The last batch of a drain (sluicectl stop --drain --emit-windows): every
  // window and session still open closes and is emitted now.
  bool final_flush = false;
};

// The map half: events in, row buffers out.
class KeyedMapper {
 public:
  [[nodiscard]] static Result<std::unique_ptr<KeyedMapper>> Create(const KeyedStage& stage, const BatchContext& ctx);

  // kPlugin ships whole events: Add's `encoded_event` must be the event
  // (EncodeEvent), else it is not needed.
  bool wants_events() const { return stage_.mode == KeyedStage::Mode::kPlugin; }

  // Adds one event (its fields through `lookup`). INVALID_ARGUMENT: the event
  // has no usable event time; OUT_OF_RANGE: it is late — both make it a dead
  // letter, the message saying why. Other errors (RESOURCE_EXHAUSTED at an
  // aggregation's limit) fail the task.
  [[nodiscard]] Status Add(const std::function<Value(std::string_view)>& lookup,
                           std::string_view encoded_event = {});

  // One buffer per reduce partition (combiner.h row format).
  std::vector<std::string> Finish() { return combiner_->Finish(); }

  int64_t late_events() const { return late_; }
  int64_t max_event_time() const { return max_event_time_; }  // 0: none

 private:
  KeyedMapper(const KeyedStage& stage, const BatchContext& ctx, std::unique_ptr<Combiner> combiner)
      : stage_(stage), ctx_(ctx), combiner_(std::move(combiner)) {}

  const KeyedStage stage_;
  const BatchContext ctx_;
  std::unique_ptr<Combiner> combiner_;
  std::string user_key_, row_key_;
  std::vector<Value> values_;
  std::vector<int64_t> starts_;
  int64_t late_ = 0;
  int64_t max_event_time_ = 0;
};

// The reduce half's view of a partition's state as of the previous batch.
class StateAccess {
 public:
  virtual ~StateAccess() = default;
  [[nodiscard]] virtual Result<std::optional<std::string>> Get(std::string_view key) = 0;
  // Every entry from the first key on, in key order, until fn returns false
  // (the deadline index's entries included: they sort last).
  [[nodiscard]] virtual Status Scan(const std::function<bool(std::string_view, std::string_view)>& fn) = 0;
  // The entries whose key starts with `prefix`, in key order, until fn
  // returns false; visits nothing outside the prefix (the deadline index's
  // reads must not cost what the whole state does).
  [[nodiscard]] virtual Status ScanPrefix(std::string_view prefix,
                                          const std::function<bool(std::string_view, std::string_view)>& fn) = 0;
};

struct ReduceOutput {
  std::string lines;  // JSON lines for the sink
  int64_t output = 0;
  std::vector<state::Change> changes;  // the batch's state delta (stateful modes)
};

// The reduce half of one partition for one batch.
class Reducer {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Reducer>> Create(const KeyedStage& stage);

  // One map task's buffer for this partition (DATA_LOSS if malformed).
  [[nodiscard]] Status Merge(std::string_view rows) { return reader_->MergeRows(rows); }

  // Folds the merged rows into `state` (nullptr for kPerBatch) and renders
  // what the batch emits.
  [[nodiscard]] Result<ReduceOutput> Finish(const BatchContext& ctx, StateAccess* state);

 private:
  Reducer(const KeyedStage& stage, std::unique_ptr<ShuffleReader> reader);

  Status AppendAggregates(const std::vector<std::string>& states, std::string* out) const;
  Result<ReduceOutput> FinishWindows(const BatchContext& ctx, StateAccess* state);
  Result<ReduceOutput> FinishSessions(const BatchContext& ctx, StateAccess* state);
  Result<ReduceOutput> FinishRunning(const BatchContext& ctx, StateAccess* state);
  Result<ReduceOutput> FinishPlugin(const BatchContext& ctx, StateAccess* state);

  const KeyedStage stage_;
  std::unique_ptr<ShuffleReader> reader_;
  std::vector<const Aggregator*> aggs_;
  std::unique_ptr<plugin::StateUpdater> updater_;  // kPlugin
};

// An event as it travels to a plugin's Update: varint(field count), then per
// field varint(length) name and varint(length) value key (aggregate.h; empty
// for null, a missing value and NaN).
void AppendEventHeader(size_t fields, std::string* out);
void AppendEventField(std::string_view name, const Value& value, std::string* out);

// State values: the aggregation states, each varint-length-prefixed.
std::string EncodeStates(const std::vector<std::string>& states);
[[nodiscard]] Status DecodeStates(std::string_view value, size_t n, std::vector<std::string>* states);

}  // namespace sluice::engine
