#include "lib/engine/keyed.h"

#include <bit>
#include <deque>
#include <map>
#include <set>

#include "lib/engine/deadline_index.h"
#include "lib/engine/json_text.h"
#include "lib/engine/plugin_loader.h"
#include "lib/format/varint.h"
#include "lib/engine/window.h"

namespace sluice::engine {
namespace {

// The number a key part holds (AppendKeyPart of a number); false otherwise.
bool NumberOfPart(std::string_view part, double* out) {
  Value v;
  if (!DecodeValueKey(part, &v) || !std::holds_alternative<double>(v)) return false;
  *out = std::get<double>(v);
  return true;
}

// The first part of `key` as a number (window starts); DATA_LOSS otherwise.
Result<int64_t> FirstNumber(std::string_view key, std::string_view* rest) {
  size_t pos = 0;
  std::string_view part;
  double d = 0;
  if (!format::GetLengthPrefixed(key, &pos, &part) || !NumberOfPart(part, &d)) {
    return absl::DataLossError("a window's state key does not start with its window");
  }
  *rest = key.substr(pos);
  return static_cast<int64_t>(d);
}

// Splits a session row key into the user's key and the event time (its last part).
Status SplitLastNumber(std::string_view key, std::string_view* user, int64_t* t) {
  size_t pos = 0, last = 0;
  std::string_view part;
  while (pos < key.size()) {
    last = pos;
    if (!format::GetLengthPrefixed(key, &pos, &part)) return absl::DataLossError("a session row key is malformed");
  }
  double d = 0;
  if (!NumberOfPart(part, &d)) return absl::DataLossError("a session row key does not end with its event time");
  *user = key.substr(0, last);
  *t = static_cast<int64_t>(d);
  return absl::OkStatus();
}

void AppendNumberPart(int64_t v, std::string* key) { AppendKeyPart(Value(static_cast<double>(v)), key); }

// A running or plugin state's batch time of its last update (its first 8 bytes).
Result<int64_t> LastUpdate(std::string_view value) {
  if (value.size() < 8) return absl::DataLossError("a running state is truncated");
  return static_cast<int64_t>(format::GetFixed64(value.data()));
}

// The deadline index (deadline_index.h) as one batch reads and changes it.
// The caller tells it every change of a key's deadline (Move); it turns
// them into the batch's index changes and the marker.
class DeadlineIndex {
 public:
  // The t a state entry's deadline counts from; nullopt: it cannot expire.
  using Keys = std::map<std::string, int64_t>;  // user key -> t
  using TimeOf = std::function<Result<std::optional<int64_t>>(std::string_view key, std::string_view value)>;

  // Reads the marker. A state without one (written before the index, or
  // re-split) gets its index built here by one scan of the whole state,
  // written with this batch's changes; any stray entry is erased then.
  static Result<DeadlineIndex> Open(StateAccess* state, const TimeOf& time_of) {
    DeadlineIndex index(state);
    ASSIGN_OR_RETURN(std::optional<std::string> marker, state->Get(kDeadlineIndexPrefix));
    if (marker) {
      ASSIGN_OR_RETURN(index.size_, DecodeDeadlineIndexMarker(*marker));
      index.old_size_ = index.size_;
      return index;
    }
    index.built_ = true;
    Status error;
    std::vector<std::string> strays;
    RETURN_IF_ERROR(state->Scan([&](std::string_view key, std::string_view value) {
      if (IsDeadlineIndexKey(key)) {
        strays.emplace_back(key);
        return true;
      }
      Result<std::optional<int64_t>> t = time_of(key, value);
      if (!t.ok()) {
        error = t.status();
        return false;
      }
      if (*t) {
        std::string entry = DeadlineIndexKey(**t, key);
        ++index.size_.entries;
        index.size_.bytes += static_cast<int64_t>(entry.size());
        index.built_entries_.insert(std::move(entry));
      }
      return true;
    }));
    RETURN_IF_ERROR(error);
    for (std::string& key : strays) index.changes_[std::move(key)] = false;
    for (const std::string& entry : index.built_entries_) index.changes_[entry] = true;
    return index;
  }

  // The keys whose entry's t passes `passed` (monotone: true up to some t,
  // false after), user key -> t, as of the previous batch. Reads only those
  // entries and the first one that does not pass.
  Result<Keys> Passed(const std::function<bool(int64_t)>& passed) {
    Keys out;
    bool malformed = false;
    auto visit = [&](std::string_view key) {
      if (IsDeadlineIndexMarker(key)) return true;
      int64_t t = 0;
      std::string_view user;
      if (!ParseDeadlineIndexKey(key, &t, &user)) {
        malformed = true;
        return false;
      }
      if (!passed(t)) return false;
      out.emplace(std::string(user), t);
      return true;
    };
    if (built_) {
      for (const std::string& entry : built_entries_) {
        if (!visit(entry)) break;
      }
    } else {
      RETURN_IF_ERROR(state_->ScanPrefix(kDeadlineIndexPrefix, [&](std::string_view key, std::string_view) {
        return visit(key);
      }));
    }
    if (malformed) return absl::DataLossError("a deadline index entry is malformed");
    return out;
  }

  // `user`'s deadline moves from t `from` to `to` (nullopt: none).
  void Move(std::string_view user, std::optional<int64_t> from, std::optional<int64_t> to) {
    if (from == to) return;
    if (from) Add(DeadlineIndexKey(*from, user), false);
    if (to) Add(DeadlineIndexKey(*to, user), true);
  }

  // The index's changes, in key order, then the marker if it changed.
  void AppendChanges(std::vector<state::Change>* changes) const {
    for (const auto& [key, written] : changes_) {
      changes->push_back(written ? state::Change{key, std::string()} : state::Change{key, std::nullopt});
    }
    if (built_ || size_ != old_size_) {
      changes->push_back({std::string(kDeadlineIndexPrefix), EncodeDeadlineIndexMarker(size_)});
    }
  }

 private:
  explicit DeadlineIndex(StateAccess* state) : state_(state) {}

  // An entry written (it did not exist) or erased (it did).
  void Add(std::string entry, bool written) {
    const int64_t sign = written ? 1 : -1;
    size_.entries += sign;
    size_.bytes += sign * static_cast<int64_t>(entry.size());
    changes_[std::move(entry)] = written;
  }

  StateAccess* state_;
  bool built_ = false;  // no marker: built_entries_ is the index the scan found
  std::set<std::string> built_entries_;
  DeadlineIndexSize size_, old_size_;
  std::map<std::string, bool> changes_;  // entry -> written, or erased
};

// A plugin value as JSON.
void AppendPluginValueJson(const plugin::Value& v, std::string* out) {
  switch (v.type) {
    case plugin::Type::kString:
      AppendJsonString(v.string.view(), out);
      return;
    case plugin::Type::kNumber:
      AppendJsonNumber(v.number, out);
      return;
    case plugin::Type::kBool:
      out->append(v.boolean ? "true" : "false");
      return;
    default:
      out->append("null");
  }
}

// A value key (or the empty string for null) as a plugin value; strings
// view into `key`.
bool PluginValueOf(std::string_view key, plugin::Value* out) {
  Value v = Null{};
  if (!key.empty() && !DecodeValueKey(key, &v)) return false;
  *out = ToPlugin(v);
  return true;
}

// The parts of a key built by AppendKeyPart, as plugin values (strings view
// into `key`).
Status DecodeKeyParts(std::string_view key, std::vector<plugin::Value>* parts) {
  parts->clear();
  size_t pos = 0;
  std::string_view part;
  while (pos < key.size()) {
    plugin::Value v;
    if (!format::GetLengthPrefixed(key, &pos, &part) || !PluginValueOf(part, &v)) {
      return absl::DataLossError("a key is malformed");
    }
    parts->push_back(v);
  }
  return absl::OkStatus();
}

// Decodes one event of AppendEventHeader/AppendEventField into `fields`
// (views into `in`).
Status DecodeEvent(std::string_view in, std::vector<plugin::Field>* fields) {
  fields->clear();
  size_t pos = 0;
  uint64_t n = 0;
  if (!format::GetVarint(in, &pos, &n)) return absl::DataLossError("an event is malformed");
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view name, value;
    plugin::Field f;
    if (!format::GetLengthPrefixed(in, &pos, &name) || !format::GetLengthPrefixed(in, &pos, &value) ||
        !PluginValueOf(value, &f.value)) {
      return absl::DataLossError("an event is malformed");
    }
    f.name = name;
    fields->push_back(f);
  }
  if (pos != in.size()) return absl::DataLossError("an event has trailing bytes");
  return absl::OkStatus();
}

// What a plugin's Update emits, collected for one call.
class CollectingStateEmitter final : public plugin::StateEmitter {
 public:
  void Emit(const plugin::Field* fields, size_t n) override { events_.emplace_back(fields, fields + n); }
  char* Allocate(size_t n) override {
    arena_.emplace_back(n, '\0');
    return arena_.back().data();
  }
  void Reject(plugin::Str reason) override { rejected_ = std::string(reason.view()); }
  void SetState(plugin::Str state) override {
    state_ = std::string(state.view());
    change_ = kSet;
  }
  void ClearState() override { change_ = kClear; }

  void Reset() {
    events_.clear();
    arena_.clear();
    rejected_.reset();
    change_ = kKeep;
  }
  enum Change { kKeep, kSet, kClear };
  const std::vector<std::vector<plugin::Field>>& events() const { return events_; }
  const std::optional<std::string>& rejected() const { return rejected_; }
  Change change() const { return change_; }
  const std::string& state() const { return state_; }

 private:
  std::vector<std::vector<plugin::Field>> events_;
  std::deque<std::string> arena_;  // stable addresses
  std::optional<std::string> rejected_;
  std::string state_;
  Change change_ = kKeep;
};

}  // namespace

void AppendEventHeader(size_t fields, std::string* out) { format::PutVarint(fields, out); }

void AppendEventField(std::string_view name, const Value& value, std::string* out) {
  thread_local std::string key;
  format::PutLengthPrefixed(name, out);
  format::PutLengthPrefixed(EncodeValueKey(value, &key) ? std::string_view(key) : std::string_view(), out);
}

std::string EncodeStates(const std::vector<std::string>& states) {
  std::string out;
  for (const std::string& s : states) format::PutLengthPrefixed(s, &out);
  return out;
}

Status DecodeStates(std::string_view value, size_t n, std::vector<std::string>* states) {
  states->assign(n, std::string());
  size_t pos = 0;
  for (size_t i = 0; i < n; ++i) {
    std::string_view s;
    if (!format::GetLengthPrefixed(value, &pos, &s)) return absl::DataLossError("a state value is truncated");
    (*states)[i].assign(s);
  }
  if (pos != value.size()) return absl::DataLossError("a state value has trailing bytes");
  return absl::OkStatus();
}

Result<std::optional<KeyedStage>> KeyedStageOf(const proto::JobSpec& spec) {
  const std::string file = spec.file().empty() ? "job" : spec.file();
  int first = -1;
  for (int i = 0; i < spec.operators_size(); ++i) {
    const proto::OperatorSpec& op = spec.operators(i);
    if (op.has_key_by() || op.has_window() || op.has_aggregate() || op.has_update_state()) {
      first = i;
      break;
    }
  }
  if (first < 0) return std::optional<KeyedStage>();
  auto bad = [&](int i, const std::string& why) {
    return absl::InvalidArgumentError(fmt::format("{}: line {}: operators[{}]: {}", file,
                                                  spec.operators(i).line(), i, why));
  };
  KeyedStage stage;
  stage.job = spec.name();
  stage.first_op = first;
  stage.batch_interval_ms = spec.batch_interval_ms();
  stage.reduce_partitions = ReducePartitions(spec);
  int i = first;
  if (!spec.operators(i).has_key_by()) return bad(i, "a keyed operator needs a key_by before it");
  stage.key_fields.assign(spec.operators(i).key_by().fields().begin(), spec.operators(i).key_by().fields().end());
  ++i;
  bool windowed = false;
  if (i < spec.operators_size() && spec.operators(i).has_window()) {
    stage.window = spec.operators(i).window();
    windowed = true;
    ++i;
  }
  if (i >= spec.operators_size()) return bad(i - 1, "key_by must be followed by aggregate or update_state");
  const proto::OperatorSpec& last = spec.operators(i);
  if (last.has_aggregate()) {
    stage.aggregate = last.aggregate();
    if (!windowed) {
      stage.mode = KeyedStage::Mode::kPerBatch;
    } else if (stage.window.event_time().empty()) {
      stage.mode = KeyedStage::Mode::kBatchWindow;
    } else {
      stage.mode = stage.window.type() == "session" ? KeyedStage::Mode::kSession : KeyedStage::Mode::kEventWindow;
    }
  } else if (last.has_update_state()) {
    if (windowed) return bad(i, "update_state keeps its own state per key: it takes no window");
    const proto::UpdateStateOp& u = last.update_state();
    stage.timeout_ms = u.timeout_ms();
    if (!u.plugin().empty()) {
      stage.mode = KeyedStage::Mode::kPlugin;
      stage.plugin.set_path(u.plugin());
      *stage.plugin.mutable_config() = u.config();
      stage.plugin_line = last.line();
      stage.aggregate.add_aggregations()->set_fn(std::string(kEventListFn));
    } else {
      stage.mode = KeyedStage::Mode::kRunning;
      *stage.aggregate.mutable_aggregations() = u.running();
    }
  } else {
    return bad(i, "after key_by (and window) comes aggregate or update_state");
  }
  if (i + 1 != spec.operators_size()) {
    return bad(i + 1, "the keyed stage (key_by ... aggregate/update_state) must be the job's last operators");
  }
  if (spec.sink().has_file() && spec.sink().file().format() == "csv") {
    return absl::InvalidArgumentError(fmt::format("{}: sink: a keyed job writes JSON lines, not csv", file));
  }
  return std::optional<KeyedStage>(std::move(stage));
}

bool IsKeyed(const proto::JobSpec& spec) {
  for (const proto::OperatorSpec& op : spec.operators()) {
    if (op.has_key_by()) return true;
  }
  return false;
}

int32_t ReducePartitions(const proto::JobSpec& spec) {
  return spec.reduce_partitions() > 0 ? spec.reduce_partitions() : kDefaultReducePartitions;
}

bool HasEventTime(const proto::JobSpec& spec) {
  for (const proto::OperatorSpec& op : spec.operators()) {
    if (op.has_window() && !op.window().event_time().empty()) return true;
  }
  return false;
}

int64_t Watermark(const proto::JobSpec& spec, int64_t max_event_time_ms) {
  if (max_event_time_ms == 0) return kNoWatermark;
  for (const proto::OperatorSpec& op : spec.operators()) {
    if (op.has_window() && !op.window().event_time().empty()) return max_event_time_ms - op.window().max_delay_ms();
  }
  return kNoWatermark;
}

// ---- KeyedMapper ----

Result<std::unique_ptr<KeyedMapper>> KeyedMapper::Create(const KeyedStage& stage, const BatchContext& ctx) {
  const int parts = stage.mode == KeyedStage::Mode::kSession ? static_cast<int>(stage.key_fields.size()) : 0;
  ASSIGN_OR_RETURN(std::unique_ptr<Combiner> combiner,
                   Combiner::Create(stage.aggregate, static_cast<uint32_t>(stage.reduce_partitions), parts));
  return std::unique_ptr<KeyedMapper>(new KeyedMapper(stage, ctx, std::move(combiner)));
}

Status KeyedMapper::Add(const std::function<Value(std::string_view)>& lookup, std::string_view encoded_event) {
  user_key_.clear();
  for (const std::string& f : stage_.key_fields) AppendKeyPart(lookup(f), &user_key_);
  values_.clear();
  if (stage_.mode == KeyedStage::Mode::kPlugin) {
    values_.push_back(Value(encoded_event));
    return combiner_->Add(user_key_, values_);
  }
  for (const proto::Aggregation& a : stage_.aggregate.aggregations()) {
    values_.push_back(a.field().empty() ? Value(Null{}) : lookup(a.field()));
  }
  const proto::WindowOp& w = stage_.window;
  switch (stage_.mode) {
    case KeyedStage::Mode::kPerBatch:
    case KeyedStage::Mode::kRunning:
    case KeyedStage::Mode::kPlugin:
      return combiner_->Add(user_key_, values_);
    case KeyedStage::Mode::kBatchWindow: {
      const int64_t slot = ctx_.batch_id - 1;
      const int64_t length = w.length_ms() / stage_.batch_interval_ms;
      const int64_t slide = (w.slide_ms() > 0 ? w.slide_ms() : w.length_ms()) / stage_.batch_interval_ms;
      WindowStarts(slot, length, slide, &starts_);
      for (int64_t s : starts_) {
        row_key_.clear();
        AppendNumberPart(s, &row_key_);
        row_key_ += user_key_;
        RETURN_IF_ERROR(combiner_->Add(row_key_, values_));
      }
      return absl::OkStatus();
    }
    case KeyedStage::Mode::kEventWindow:
    case KeyedStage::Mode::kSession: {
      Result<int64_t> t = ParseEventTime(lookup(w.event_time()));
      if (!t.ok()) return absl::InvalidArgumentError(fmt::format("{}: {}", w.event_time(), std::string(t.status().message())));
      max_event_time_ = std::max(max_event_time_, *t);
      const bool have_watermark = ctx_.watermark_unix_ms != kNoWatermark;
      if (stage_.mode == KeyedStage::Mode::kSession) {
        if (have_watermark && *t + w.gap_ms() + w.allowed_lateness_ms() <= ctx_.watermark_unix_ms) {
          ++late_;
          return absl::OutOfRangeError(fmt::format("late: event time {} + gap {} ms + allowed lateness {} ms is "
                                                   "behind the watermark {}",
                                                   *t, w.gap_ms(), w.allowed_lateness_ms(), ctx_.watermark_unix_ms));
        }
        row_key_ = user_key_;
        AppendNumberPart(*t, &row_key_);
        return combiner_->Add(row_key_, values_);
      }
      const int64_t slide = w.slide_ms() > 0 ? w.slide_ms() : w.length_ms();
      WindowStarts(*t, w.length_ms(), slide, &starts_);
      bool added = false;
      for (int64_t s : starts_) {
        if (have_watermark && s + w.length_ms() + w.allowed_lateness_ms() <= ctx_.watermark_unix_ms) continue;
        row_key_.clear();
        AppendNumberPart(s, &row_key_);
        row_key_ += user_key_;
        RETURN_IF_ERROR(combiner_->Add(row_key_, values_));
        added = true;
      }
      if (!added) {
        ++late_;
        return absl::OutOfRangeError(fmt::format("late: event time {} is in no window still open at the watermark {} "
                                                 "(allowed lateness {} ms)",
                                                 *t, ctx_.watermark_unix_ms, w.allowed_lateness_ms()));
      }
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown keyed mode");
}

// ---- Reducer ----

Result<std::unique_ptr<Reducer>> Reducer::Create(const KeyedStage& stage) {
  ASSIGN_OR_RETURN(std::unique_ptr<ShuffleReader> reader, ShuffleReader::Create(stage.aggregate));
  std::unique_ptr<Reducer> reducer(new Reducer(stage, std::move(reader)));
  if (stage.mode == KeyedStage::Mode::kPlugin) {
    ASSIGN_OR_RETURN(reducer->updater_, CreatePluginStateUpdater(stage.plugin, stage.job, stage.plugin_line));
  }
  return reducer;
}

Reducer::Reducer(const KeyedStage& stage, std::unique_ptr<ShuffleReader> reader)
    : stage_(stage), reader_(std::move(reader)) {
  for (const auto& a : reader_->aggregators()) aggs_.push_back(a.get());
}

Status Reducer::AppendAggregates(const std::vector<std::string>& states, std::string* out) const {
  for (size_t i = 0; i < aggs_.size(); ++i) {
    out->push_back(',');
    AppendJsonString(reader_->names()[i], out);
    out->push_back(':');
    RETURN_IF_ERROR(aggs_[i]->AppendResult(states[i], out));
  }
  return absl::OkStatus();
}

Result<ReduceOutput> Reducer::Finish(const BatchContext& ctx, StateAccess* state) {
  switch (stage_.mode) {
    case KeyedStage::Mode::kPerBatch: {
      ReduceOutput out;
      RETURN_IF_ERROR(reader_->AppendResults(&out.lines));
      out.output = static_cast<int64_t>(reader_->num_keys());
      return out;
    }
    case KeyedStage::Mode::kBatchWindow:
    case KeyedStage::Mode::kEventWindow:
      return FinishWindows(ctx, state);
    case KeyedStage::Mode::kSession:
      return FinishSessions(ctx, state);
    case KeyedStage::Mode::kRunning:
      return FinishRunning(ctx, state);
    case KeyedStage::Mode::kPlugin:
      return FinishPlugin(ctx, state);
  }
  return absl::InternalError("unknown keyed mode");
}

Result<ReduceOutput> Reducer::FinishWindows(const BatchContext& ctx, StateAccess* state) {
  const proto::WindowOp& w = stage_.window;
  const bool batch_time = stage_.mode == KeyedStage::Mode::kBatchWindow;
  const int64_t interval = stage_.batch_interval_ms;
  const int64_t length_slots = batch_time ? w.length_ms() / interval : 0;
  // Batch-time windows count in batch slots from the job's start.
  const int64_t job_start = ctx.batch_time_unix_ms - ctx.batch_id * interval;
  auto closed = [&](int64_t start) {
    if (ctx.final_flush) return true;
    if (batch_time) return start + length_slots <= ctx.batch_id;  // its last slot is this batch's, or earlier
    return ctx.watermark_unix_ms != kNoWatermark &&
           start + w.length_ms() + w.allowed_lateness_ms() <= ctx.watermark_unix_ms;
  };
  const size_t n = aggs_.size();
  std::map<std::string, std::string> updated;  // row key -> new value
  std::vector<std::string> states;
  for (const auto* row : reader_->Sorted()) {
    ASSIGN_OR_RETURN(std::optional<std::string> old, state->Get(row->first));
    RETURN_IF_ERROR(DecodeStates(old.value_or(EncodeStates(std::vector<std::string>(n))), n, &states));
    for (size_t i = 0; i < n; ++i) RETURN_IF_ERROR(aggs_[i]->Merge(row->second[i], &states[i]));
    updated[row->first] = EncodeStates(states);
  }
  // Closed windows are a prefix of the state (keys start with the window).
  std::map<std::string, std::string> emit;
  Status scan_error;
  RETURN_IF_ERROR(state->Scan([&](std::string_view key, std::string_view value) {
    if (IsDeadlineIndexKey(key)) return false;  // sorts after every window; windows keep no index
    std::string_view rest;
    Result<int64_t> start = FirstNumber(key, &rest);
    if (!start.ok()) {
      scan_error = start.status();
      return false;
    }
    if (!closed(*start)) return false;
    emit.emplace(std::string(key), std::string(value));
    return true;
  }));
  RETURN_IF_ERROR(scan_error);
  ReduceOutput out;
  for (auto& [key, value] : updated) {
    std::string_view rest;
    ASSIGN_OR_RETURN(int64_t start, FirstNumber(key, &rest));
    if (closed(start)) {
      emit[key] = value;
    } else {
      out.changes.push_back({key, value});
    }
  }
  for (const auto& [key, value] : emit) {
    std::string_view user;
    ASSIGN_OR_RETURN(int64_t start, FirstNumber(key, &user));
    RETURN_IF_ERROR(DecodeStates(value, n, &states));
    const int64_t start_ms = batch_time ? job_start + start * interval : start;
    out.lines += "{\"key\":";
    RETURN_IF_ERROR(AppendKeyJson(user, &out.lines));
    out.lines += fmt::format(",\"window_start\":{},\"window_end\":{}", start_ms, start_ms + w.length_ms());
    RETURN_IF_ERROR(AppendAggregates(states, &out.lines));
    out.lines += "}\n";
    ++out.output;
    out.changes.push_back({key, std::nullopt});
  }
  return out;
}

Result<ReduceOutput> Reducer::FinishSessions(const BatchContext& ctx, StateAccess* state) {
  const proto::WindowOp& w = stage_.window;
  SessionMerger merger(aggs_, w.gap_ms());
  // A key's deadline counts from its oldest session's last event (the sessions
  // close in order of `last`).
  auto first_last = [&](std::string_view set) -> Result<std::optional<int64_t>> {
    if (set.empty()) return std::optional<int64_t>();
    ASSIGN_OR_RETURN(std::vector<Session> sessions, merger.Decode(set));
    return std::optional<int64_t>(sessions.front().last);
  };
  ASSIGN_OR_RETURN(DeadlineIndex index,
                   DeadlineIndex::Open(state, [&](std::string_view, std::string_view value) { return first_last(value); }));
  struct Key {
    std::string set;                // after this batch's rows
    std::optional<int64_t> from;    // its index entry's t as of the previous batch
    bool merged = false;            // this batch has rows of it
  };
  std::map<std::string, Key> keys;  // the keys this batch merges or may close, in key order
  for (const auto* row : reader_->Sorted()) {
    std::string_view user;
    int64_t t = 0;
    RETURN_IF_ERROR(SplitLastNumber(row->first, &user, &t));
    auto [it, fresh] = keys.try_emplace(std::string(user));
    if (fresh) {
      ASSIGN_OR_RETURN(std::optional<std::string> old, state->Get(user));
      it->second.set = old.value_or("");
      it->second.merged = true;
      ASSIGN_OR_RETURN(it->second.from, first_last(it->second.set));
    }
    RETURN_IF_ERROR(merger.Merge(&it->second.set, merger.Single(t, row->second)));
  }
  const int64_t at = ctx.final_flush ? std::numeric_limits<int64_t>::max()
                     : ctx.watermark_unix_ms == kNoWatermark ? kNoWatermark
                                                             : ctx.watermark_unix_ms - w.allowed_lateness_ms();
  if (at != kNoWatermark) {
    // Only keys whose oldest session closes at `at` (last + gap <= at, as
    // SessionMerger::TakeClosed decides it, without overflow).
    ASSIGN_OR_RETURN(DeadlineIndex::Keys passed, index.Passed([&](int64_t last) {
      return at > last && static_cast<uint64_t>(at) - static_cast<uint64_t>(last) >= static_cast<uint64_t>(w.gap_ms());
    }));
    for (auto& [user, t] : passed) {
      auto [it, fresh] = keys.try_emplace(user);
      if (!fresh) continue;  // merged: its entry was read from its state above
      ASSIGN_OR_RETURN(std::optional<std::string> value, state->Get(user));
      // The state decides: an entry naming no state is erased (Move below).
      it->second.set = value.value_or("");
      it->second.from = t;
    }
  }
  ReduceOutput out;
  for (auto& [key, k] : keys) {
    std::vector<Session> closed;
    if (at != kNoWatermark) RETURN_IF_ERROR(merger.TakeClosed(&k.set, at, &closed));
    for (const Session& s : closed) {
      out.lines += "{\"key\":";
      RETURN_IF_ERROR(AppendKeyJson(key, &out.lines));
      out.lines += fmt::format(",\"session_start\":{},\"session_end\":{}", s.start, s.last + w.gap_ms());
      RETURN_IF_ERROR(AppendAggregates(s.states, &out.lines));
      out.lines += "}\n";
      ++out.output;
    }
    ASSIGN_OR_RETURN(std::optional<int64_t> to, first_last(k.set));
    index.Move(key, k.from, to);
    if (closed.empty() && !k.merged) continue;  // unchanged
    if (k.set.empty()) {
      out.changes.push_back({key, std::nullopt});
    } else {
      out.changes.push_back({key, k.set});
    }
  }
  index.AppendChanges(&out.changes);
  return out;
}

Result<ReduceOutput> Reducer::FinishRunning(const BatchContext& ctx, StateAccess* state) {
  const size_t n = aggs_.size();
  const bool expires = stage_.timeout_ms > 0;
  std::optional<DeadlineIndex> index;
  if (expires) {
    ASSIGN_OR_RETURN(index, DeadlineIndex::Open(state, [](std::string_view, std::string_view value)
                                                          -> Result<std::optional<int64_t>> {
      ASSIGN_OR_RETURN(int64_t last, LastUpdate(value));
      return std::optional<int64_t>(last);
    }));
  }
  ReduceOutput out;
  std::vector<std::string> states;
  auto decode = [&](std::string_view value, int64_t* last) -> Status {
    ASSIGN_OR_RETURN(*last, LastUpdate(value));
    return DecodeStates(value.substr(8), n, &states);
  };
  for (const auto* row : reader_->Sorted()) {
    ASSIGN_OR_RETURN(std::optional<std::string> old, state->Get(row->first));
    int64_t last = 0;
    if (old) {
      RETURN_IF_ERROR(decode(*old, &last));
    } else {
      states.assign(n, std::string());
    }
    for (size_t i = 0; i < n; ++i) RETURN_IF_ERROR(aggs_[i]->Merge(row->second[i], &states[i]));
    std::string value;
    format::PutFixed64(static_cast<uint64_t>(ctx.batch_time_unix_ms), &value);
    value += EncodeStates(states);
    out.lines += "{\"key\":";
    RETURN_IF_ERROR(AppendKeyJson(row->first, &out.lines));
    RETURN_IF_ERROR(AppendAggregates(states, &out.lines));
    out.lines += "}\n";
    ++out.output;
    out.changes.push_back({row->first, std::move(value)});
    if (expires) index->Move(row->first, old ? std::optional<int64_t>(last) : std::nullopt, ctx.batch_time_unix_ms);
  }
  if (!expires) return out;
  ASSIGN_OR_RETURN(DeadlineIndex::Keys passed,
                   index->Passed([&](int64_t last) { return last + stage_.timeout_ms <= ctx.batch_time_unix_ms; }));
  for (const auto& [key, t] : passed) {
    if (reader_->Find(key) != nullptr) continue;  // updated by this batch: its entry moved above
    ASSIGN_OR_RETURN(std::optional<std::string> value, state->Get(key));
    if (!value) {
      index->Move(key, t, std::nullopt);  // an entry naming no state: the state decides
      continue;
    }
    int64_t last = 0;
    RETURN_IF_ERROR(decode(*value, &last));
    if (last + stage_.timeout_ms > ctx.batch_time_unix_ms) {
      index->Move(key, t, last);  // an entry that disagrees with its state: the state decides
      continue;
    }
    out.lines += "{\"key\":";
    RETURN_IF_ERROR(AppendKeyJson(key, &out.lines));
    RETURN_IF_ERROR(AppendAggregates(states, &out.lines));
    out.lines += ",\"timed_out\":true}\n";
    ++out.output;
    out.changes.push_back({key, std::nullopt});
    index->Move(key, t, std::nullopt);
  }
  index->AppendChanges(&out.changes);
  return out;
}

Result<ReduceOutput> Reducer::FinishPlugin(const BatchContext& ctx, StateAccess* state) {
  ReduceOutput out;
  CollectingStateEmitter emitter;
  std::vector<plugin::Value> parts;
  std::vector<std::vector<plugin::Field>> fields;
  std::vector<plugin::Event> events;
  const std::string& path = stage_.plugin.path();
  // One call of Update; its output rendered and its state change recorded.
  auto call = [&](std::string_view key, std::string_view old_state, bool timed_out) -> Status {
    RETURN_IF_ERROR(DecodeKeyParts(key, &parts));
    emitter.Reset();
    try {
      updater_->Update(plugin::Key{parts.data(), parts.size()}, events.data(), events.size(), old_state, timed_out,
                       emitter);
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(fmt::format("update_state plugin {} threw: {}", path, e.what()));
    } catch (...) {
      return absl::InvalidArgumentError(fmt::format("update_state plugin {} threw", path));
    }
    if (emitter.rejected()) {
      std::string k;
      IgnoreError(AppendKeyJson(key, &k), "the key is only for the message");
      return absl::InvalidArgumentError(
          fmt::format("update_state plugin {} rejected key {}: {}", path, k, *emitter.rejected()));
    }
    for (const std::vector<plugin::Field>& e : emitter.events()) {
      out.lines += "{\"key\":";
      RETURN_IF_ERROR(AppendKeyJson(key, &out.lines));
      for (const plugin::Field& f : e) {
        out.lines.push_back(',');
        AppendJsonString(f.name.view(), &out.lines);
        out.lines.push_back(':');
        AppendPluginValueJson(f.value, &out.lines);
      }
      out.lines += "}\n";
      ++out.output;
    }
    return absl::OkStatus();
  };
  auto stamped = [&](std::string_view bytes) {
    std::string v;
    format::PutFixed64(static_cast<uint64_t>(ctx.batch_time_unix_ms), &v);
    v.append(bytes);
    return v;
  };
  const bool expires = stage_.timeout_ms > 0;
  // A plugin state shorter than its stamp never expires (as before the index).
  auto stamp_of = [](std::string_view value) {
    return value.size() < 8 ? std::optional<int64_t>()
                            : std::optional<int64_t>(static_cast<int64_t>(format::GetFixed64(value.data())));
  };
  std::optional<DeadlineIndex> index;
  if (expires) {
    ASSIGN_OR_RETURN(index, DeadlineIndex::Open(state, [&](std::string_view, std::string_view value)
                                                          -> Result<std::optional<int64_t>> { return stamp_of(value); }));
  }
  for (const auto* row : reader_->Sorted()) {
    // The key's events, in the order the map tasks read them.
    const std::string& list = row->second[0];
    fields.clear();
    size_t pos = 0;
    std::string_view one;
    while (pos < list.size()) {
      if (!format::GetLengthPrefixed(list, &pos, &one)) return absl::DataLossError("the shuffled events are malformed");
      fields.emplace_back();
      RETURN_IF_ERROR(DecodeEvent(one, &fields.back()));
    }
    events.clear();
    for (const auto& f : fields) events.push_back(plugin::Event{f.data(), f.size()});
    ASSIGN_OR_RETURN(std::optional<std::string> old, state->Get(row->first));
    if (old && old->size() < 8) return absl::DataLossError("a plugin state is truncated");
    const std::string_view old_bytes = old ? std::string_view(*old).substr(8) : std::string_view();
    RETURN_IF_ERROR(call(row->first, old_bytes, false));
    std::optional<int64_t> to;  // the key's new stamp, if it keeps a state
    switch (emitter.change()) {
      case CollectingStateEmitter::kSet:
        out.changes.push_back({row->first, stamped(emitter.state())});
        to = ctx.batch_time_unix_ms;
        break;
      case CollectingStateEmitter::kClear:
        if (old) out.changes.push_back({row->first, std::nullopt});
        break;
      case CollectingStateEmitter::kKeep:
        if (old) {
          out.changes.push_back({row->first, stamped(old_bytes)});  // its timeout starts again
          to = ctx.batch_time_unix_ms;
        }
        break;
    }
    if (expires) index->Move(row->first, old ? stamp_of(*old) : std::nullopt, to);
  }
  if (!expires) return out;
  events.clear();
  ASSIGN_OR_RETURN(DeadlineIndex::Keys passed,
                   index->Passed([&](int64_t last) { return last + stage_.timeout_ms <= ctx.batch_time_unix_ms; }));
  for (const auto& [key, t] : passed) {
    if (reader_->Find(key) != nullptr) continue;  // updated by this batch: its entry moved above
    ASSIGN_OR_RETURN(std::optional<std::string> value, state->Get(key));
    if (!value) {
      index->Move(key, t, std::nullopt);  // an entry naming no state: the state decides
      continue;
    }
    const std::optional<int64_t> last = stamp_of(*value);
    if (!last || *last + stage_.timeout_ms > ctx.batch_time_unix_ms) {
      index->Move(key, t, last);  // an entry that disagrees with its state: the state decides
      continue;
    }
    RETURN_IF_ERROR(call(key, std::string_view(*value).substr(8), true));
    out.changes.push_back({key, std::nullopt});
    index->Move(key, t, std::nullopt);
  }
  index->AppendChanges(&out.changes);
  return out;
}

}  // namespace sluice::engine
