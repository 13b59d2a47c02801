#include "lib/engine/pipeline.h"

#include <deque>
#include <iterator>
#include <vector>

#include "lib/engine/expr.h"
#include "lib/engine/job_file.h"
#include "lib/engine/json_text.h"
#include "lib/engine/limits.h"
#include "lib/engine/plugin_api.h"
#include "lib/engine/plugin_loader.h"
#include "simdjson.h"

namespace sluice::engine {
namespace {

struct Field {
  std::string_view name;
  Value value;
};
using Event = std::vector<Field>;

Value Lookup(const Event& e, std::string_view name) {
  for (const Field& f : e) {
    if (f.name == name) return f.value;
  }
  return Null{};
}

void Set(Event* e, std::string_view name, Value v) {
  for (Field& f : *e) {
    if (f.name == name) {
      f.value = v;
      return;
    }
  }
  e->push_back({name, v});
}

// fmt's shortest form of `d` ("{}"), through a buffer on the stack rather
// than a back_inserter that grows `out` one character at a time.
void AppendDouble(double d, std::string* out) {
  char buf[64];
  const auto r = fmt::format_to_n(buf, sizeof(buf), "{}", d);
  out->append(buf, std::min(r.size, sizeof(buf)));
}

void AppendJson(const Event& e, std::string* out) {
  out->push_back('{');
  bool first = true;
  for (const Field& f : e) {
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(f.name, out);
    out->push_back(':');
    if (const auto* s = std::get_if<std::string_view>(&f.value)) {
      AppendJsonString(*s, out);
    } else if (const double* d = std::get_if<double>(&f.value)) {
      AppendDouble(*d, out);
    } else if (const bool* b = std::get_if<bool>(&f.value)) {
      out->append(*b ? "true" : "false");
    } else {
      out->append("null");
    }
  }
  out->append("}\n");
}

// One CSV row (RFC 4180): the event's values in field order; a string with a
// comma, quote or line break is quoted, quotes doubled; null is empty.
void AppendCsv(const Event& e, std::string* out) {
  bool first = true;
  for (const Field& f : e) {
    if (!first) out->push_back(',');
    first = false;
    if (const auto* s = std::get_if<std::string_view>(&f.value)) {
      if (s->find_first_of(",\"\r\n") == std::string_view::npos) {
        out->append(*s);
      } else {
        out->push_back('"');
        for (char c : *s) {
          if (c == '"') out->push_back('"');
          out->push_back(c);
        }
        out->push_back('"');
      }
    } else if (const double* d = std::get_if<double>(&f.value)) {
      AppendDouble(*d, out);
    } else if (const bool* b = std::get_if<bool>(&f.value)) {
      out->append(*b ? "true" : "false");
    }
  }
  out->push_back('\n');
}

// Memory for strings plugins make (Emitter::Allocate): chunks kept and
// reused record after record, so the steady state allocates nothing.
class Arena {
 public:
  char* Allocate(size_t n) {
    n = std::max<size_t>(n, 1);
    while (chunk_ < chunks_.size()) {
      if (chunks_[chunk_].size - used_ >= n) {
        char* p = chunks_[chunk_].data.get() + used_;
        used_ += n;
        return p;
      }
      ++chunk_;
      used_ = 0;
    }
    const size_t size = std::max(kChunkBytes, n);
    chunks_.push_back({std::make_unique<char[]>(size), size});
    chunk_ = chunks_.size() - 1;
    used_ = n;
    return chunks_.back().data.get();
  }

  // Everything handed out is free again; past kKeptChunks the rest is freed.
  void Reset() {
    if (chunks_.size() > kKeptChunks) chunks_.resize(kKeptChunks);
    chunk_ = 0;
    used_ = 0;
  }

 private:
  static constexpr size_t kChunkBytes = 16 * 1024;
  static constexpr size_t kKeptChunks = 64;
  struct Chunk {
    std::unique_ptr<char[]> data;
    size_t size;
  };
  std::vector<Chunk> chunks_;
  size_t chunk_ = 0;  // the chunk being filled
  size_t used_ = 0;   // bytes of it handed out
};

// The Emitter a plugin's Process writes to: events go to `next`, the first
// one into the storage of the input event (already copied for the plugin),
// so a plugin that maps or filters allocates nothing per event.
class PluginEmitter final : public plugin::Emitter {
 public:
  explicit PluginEmitter(Arena* arena) : arena_(arena) {}

  void Begin(Event* recycle, std::vector<Event>* next) {
    recycle_ = recycle;
    next_ = next;
  }

  void Emit(const plugin::Field* fields, size_t n) override {
    if (rejected_) return;
    Event out;
    if (recycle_ != nullptr) {
      out = std::move(*recycle_);
      out.clear();
      recycle_ = nullptr;
    }
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) out.push_back({fields[i].name.view(), FromPlugin(fields[i].value)});
    next_->push_back(std::move(out));
  }

  char* Allocate(size_t n) override { return arena_->Allocate(n); }

  void Reject(plugin::Str reason) override {
    if (rejected_) return;
    rejected_ = true;
    reason_.assign(reason.data, reason.size);
  }

  // Whether the record was rejected; clears the mark.
  bool TakeRejected(std::string* reason) {
    if (!rejected_) return false;
    rejected_ = false;
    *reason = std::move(reason_);
    reason_.clear();
    return true;
  }

 private:
  Arena* const arena_;
  Event* recycle_ = nullptr;
  std::vector<Event>* next_ = nullptr;
  bool rejected_ = false;
  std::string reason_;
};

struct Op {
  proto::OperatorSpec spec;
  // project: (output name, field) per kept field, renames resolved once
  // rather than a map lookup per field per record.
  std::vector<std::pair<std::string, std::string>> project;
  std::unique_ptr<Expr> filter;
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> map;
  std::unique_ptr<plugin::Operator> plugin;  // this Pipeline's own instance
};

class PipelineImpl final : public Pipeline {
 public:
  PipelineImpl(std::vector<Op> ops, bool csv, std::unique_ptr<KeyedMapper> mapper)
      : ops_(std::move(ops)), csv_(csv), mapper_(std::move(mapper)), emitter_(&arena_) {}

  Result<std::vector<std::string>> FinishShuffle(PipelineCounts* counts) override {
    if (!mapper_) return absl::FailedPreconditionError("the job has no key_by: nothing to shuffle");
    RETURN_IF_ERROR(keyed_error_);
    counts->late_events += mapper_->late_events();
    counts->max_event_time_unix_ms = std::max(counts->max_event_time_unix_ms, mapper_->max_event_time());
    return mapper_->Finish();
  }

  void Run(const format::Block& block, std::string* out, PipelineCounts* counts) override {
    block_ = &block;
    block_end_ = block.data().data() + block.data().size();
    int64_t offset = block.lineage().start_offset;
    Status st = block.ForEach([&](std::string_view record) {
      ++counts->input;
      record_ = record;
      RunRecord(record, offset++, out, counts);
    });
    record_ = {};
    if (!st.ok()) DeadLetter(block.lineage().start_offset, std::string(st.message()), counts);
    block_ = nullptr;
    block_end_ = nullptr;
  }

 private:
  // Fills `e` from a JSON object; "" if it parses, else why not.
  std::string ParseJson(std::string_view record, Event* e) {
    // simdjson reads up to SIMDJSON_PADDING bytes past the record but its
    // result does not depend on them (they need only be readable): a record
    // followed by that many bytes of its block is parsed where it is; only
    // the last few of a block are copied into a padded buffer.
    const char* data = record.data();
    const bool in_block = block_end_ != nullptr && record.data() <= block_end_;
    size_t capacity = in_block ? static_cast<size_t>(block_end_ - record.data()) : 0;
    if (capacity < record.size() + simdjson::SIMDJSON_PADDING) {
      padded_.assign(record.data(), record.size());
      padded_.append(simdjson::SIMDJSON_PADDING, '\0');
      data = padded_.data();
      capacity = padded_.size();
    }
    simdjson::ondemand::document doc;
    if (parser_.iterate(data, record.size(), capacity).get(doc)) return "not a JSON object";
    simdjson::ondemand::object obj;
    if (doc.get_object().get(obj)) return "not a JSON object";
    too_deep_ = false;
    if (AddObject(obj, "", 1, e)) return "";
    if (too_deep_) return fmt::format("JSON objects nested deeper than the limit of {}", kMaxJsonDepth);
    return "not a JSON object";
  }

  // `depth`: objects open, this one included; deeper than kMaxJsonDepth is
  // refused (the recursion and the names it builds stay bounded).
  bool AddObject(simdjson::ondemand::object obj, std::string_view prefix, int depth, Event* e) {
    if (depth > kMaxJsonDepth) {
      too_deep_ = true;
      return false;
    }
    for (auto member : obj) {
      std::string_view key;
      if (member.unescaped_key().get(key)) return false;
      // The key is unescaped into the parser's string buffer, which keeps
      // every string of the document until the next one is parsed: a view
      // is enough for the record's life. Nested names are made.
      std::string_view name = key;
      if (!prefix.empty()) {
        scratch_.push_back(std::string(prefix) + "." + std::string(key));
        name = scratch_.back();
      }
      simdjson::ondemand::value v;
      if (member.value().get(v)) return false;
      simdjson::ondemand::json_type type;
      if (v.type().get(type)) return false;
      switch (type) {
        case simdjson::ondemand::json_type::string: {
          std::string_view s;
          if (v.get_string().get(s)) return false;
          e->push_back({name, s});
          break;
        }
        case simdjson::ondemand::json_type::number: {
          double d;
          if (v.get_double().get(d)) return false;
          e->push_back({name, d});
          break;
        }
        case simdjson::ondemand::json_type::boolean: {
          bool b;
          if (v.get_bool().get(b)) return false;
          e->push_back({name, b});
          break;
        }
        case simdjson::ondemand::json_type::object: {
          simdjson::ondemand::object inner;
          if (v.get_object().get(inner)) return false;
          if (!AddObject(inner, name, depth + 1, e)) return false;
          break;
        }
        case simdjson::ondemand::json_type::array: {
          std::string_view raw;
          simdjson::ondemand::array arr;
          if (v.get_array().get(arr) || arr.raw_json().get(raw)) return false;  // kept as its JSON text
          scratch_.push_back(std::string(raw));
          e->push_back({name, std::string_view(scratch_.back())});
          break;
        }
        default:
          e->push_back({name, Null{}});
      }
    }
    return true;
  }

  void DeadLetter(int64_t offset, const std::string& why, PipelineCounts* counts) {
    ++counts->dead_letters;
    counts->last_dead_letter = fmt::format("offset {}: {}", offset, why);
    std::string& o = counts->dead_letter_lines;
    o += "{\"source\":";
    AppendJsonString(block_->lineage().source, &o);
    o += fmt::format(",\"partition\":{},\"offset\":{},\"error\":", block_->lineage().partition, offset);
    AppendJsonString(why, &o);
    o += ",\"record\":";
    AppendJsonString(record_, &o);
    o += "}\n";
  }

  // An empty event, reusing the storage of a recycled one: no allocation
  // per record in the steady state.
  Event NewEvent() {
    if (spare_.empty()) return Event();
    Event e = std::move(spare_.back());
    spare_.pop_back();
    return e;
  }
  // Empties `events`, keeping their storage for NewEvent.
  void Recycle(std::vector<Event>* events) {
    for (Event& e : *events) {
      if (e.capacity() == 0 || spare_.size() >= kMaxSpareEvents) continue;
      e.clear();
      spare_.push_back(std::move(e));
    }
    events->clear();
  }

  void RunRecord(std::string_view record, int64_t offset, std::string* out, PipelineCounts* counts) {
    scratch_.clear();
    arena_.Reset();
    Recycle(&events_);
    events_.push_back(NewEvent());
    bool parsed = false;
    for (const Op& op : ops_) {
      Recycle(&next_);
      for (Event& e : events_) {
        switch (op.spec.op_case()) {
          case proto::OperatorSpec::kParse: {
            const proto::ParseOp& p = op.spec.parse();
            Event fresh = NewEvent();
            if (p.format() == "json") {
              if (std::string why = ParseJson(record, &fresh); !why.empty()) {
                DeadLetter(offset, why, counts);
                return;
              }
            } else if (p.format() == "csv") {
              const char delim = p.delimiter().empty() ? ',' : p.delimiter()[0];
              size_t start = 0;
              for (int i = 0; i < p.fields_size(); ++i) {
                const size_t end = std::min(record.find(delim, start), record.size());
                fresh.push_back({p.fields(i), start <= record.size() ? record.substr(start, end - start)
                                                                     : std::string_view()});
                start = end + 1;
              }
            } else {
              fresh.push_back({"line", record});
            }
            parsed = true;
            next_.push_back(std::move(fresh));
            break;
          }
          case proto::OperatorSpec::kFilter: {
            auto lookup = [&](std::string_view n) { return Lookup(e, n); };
            if (Truthy(op.filter->Eval(lookup, &scratch_))) next_.push_back(std::move(e));
            break;
          }
          case proto::OperatorSpec::kMap: {
            auto lookup = [&](std::string_view n) { return Lookup(e, n); };
            std::vector<std::pair<std::string_view, Value>> values;
            for (const auto& [name, expr] : op.map) values.emplace_back(name, expr->Eval(lookup, &scratch_));
            for (auto& [name, v] : values) Set(&e, name, v);
            next_.push_back(std::move(e));
            break;
          }
          case proto::OperatorSpec::kProject: {
            Event kept = NewEvent();
            for (const auto& [as, field] : op.project) kept.push_back({as, Lookup(e, field)});
            next_.push_back(std::move(kept));
            break;
          }
          case proto::OperatorSpec::kFlatMap: {
            const proto::FlatMapOp& fm = op.spec.flat_map();
            const std::string_view sep = fm.separator().empty() ? std::string_view(" ") : fm.separator();
            const std::string_view as = fm.as().empty() ? std::string_view(fm.split()) : fm.as();
            const Value v = Lookup(e, fm.split());
            const auto* s = std::get_if<std::string_view>(&v);
            if (s == nullptr) break;  // nothing to split: no event
            size_t start = 0;
            while (start <= s->size()) {
              const size_t end = std::min(s->find(sep, start), s->size());
              if (end > start) {
                Event piece = e;
                Set(&piece, as, s->substr(start, end - start));
                next_.push_back(std::move(piece));
              }
              if (end == s->size()) break;
              start = end + sep.size();
            }
            break;
          }
          case proto::OperatorSpec::kPlugin: {
            plugin_in_.clear();
            for (const Field& f : e) plugin_in_.push_back({f.name, ToPlugin(f.value)});
            emitter_.Begin(&e, &next_);
            std::string why;
            try {
              op.plugin->Process(plugin::Event{plugin_in_.data(), plugin_in_.size()}, emitter_);
            } catch (const std::exception& ex) {
              emitter_.Reject(fmt::format("plugin {} threw: {}", op.spec.plugin().path(), ex.what()));
            } catch (...) {
              emitter_.Reject(fmt::format("plugin {} threw", op.spec.plugin().path()));
            }
            if (emitter_.TakeRejected(&why)) {
              DeadLetter(offset, why, counts);
              return;
            }
            break;
          }
          default:
            next_.push_back(std::move(e));
        }
      }
      events_.swap(next_);
      if (events_.empty()) return;
    }
    if (!parsed) {
      // No parse operator: the record is the event, as a line.
      for (Event& e : events_) {
        if (e.empty()) e.push_back({"line", record});
      }
    }
    for (const Event& e : events_) {
      if (mapper_) {
        if (!keyed_error_.ok()) return;
        if (mapper_->wants_events()) {
          encoded_.clear();
          AppendEventHeader(e.size(), &encoded_);
          for (const Field& f : e) AppendEventField(f.name, f.value, &encoded_);
        }
        Status st = mapper_->Add([&](std::string_view n) { return Lookup(e, n); }, encoded_);
        if (absl::IsInvalidArgument(st) || absl::IsOutOfRange(st)) {
          DeadLetter(offset, std::string(st.message()), counts);
        } else if (!st.ok()) {
          keyed_error_ = st;  // the task fails (FinishShuffle)
        } else {
          ++counts->output;
        }
        continue;
      }
      if (csv_) {
        AppendCsv(e, out);
      } else {
        AppendJson(e, out);
      }
      ++counts->output;
    }
  }

  const std::vector<Op> ops_;
  const format::Block* block_ = nullptr;  // during Run
  std::string_view record_;               // the record RunRecord is on
  const bool csv_;  // the file sink's format: csv rows, else JSON lines
  std::unique_ptr<KeyedMapper> mapper_;  // keyed jobs: events go here, not to `out`
  Status keyed_error_;                   // the first error that fails the task
  std::string encoded_;                  // the event, for an update_state plugin
  simdjson::ondemand::parser parser_;
  std::string padded_;
  bool too_deep_ = false;  // why the last AddObject failed
  std::deque<std::string> scratch_;  // names and values made for one record
  Arena arena_;                      // strings plugins make for one record
  PluginEmitter emitter_;
  std::vector<plugin::Field> plugin_in_;  // the event handed to a plugin
  std::vector<Event> events_, next_;
  static constexpr size_t kMaxSpareEvents = 64;
  std::vector<Event> spare_;        // emptied events, their storage kept
  const char* block_end_ = nullptr;  // during Run: one past the block's bytes
};

}  // namespace

Result<std::unique_ptr<Pipeline>> Pipeline::Create(const proto::JobSpec& spec, const BatchContext& batch) {
  // KeyedStageOf is CheckRunnable: a shape this release cannot run is refused here.
  ASSIGN_OR_RETURN(std::optional<KeyedStage> keyed, KeyedStageOf(spec));
  std::unique_ptr<KeyedMapper> mapper;
  if (keyed) {
    ASSIGN_OR_RETURN(mapper, KeyedMapper::Create(*keyed, batch));
  }
  const int stateless = keyed ? keyed->first_op : spec.operators_size();
  std::vector<Op> ops;
  for (int i = 0; i < stateless; ++i) {
    Op op{spec.operators(i)};
    const std::string at = fmt::format("{}line {}: operators[{}]", spec.file().empty() ? "" : spec.file() + ": ",
                                       op.spec.line(), i);
    switch (op.spec.op_case()) {
      case proto::OperatorSpec::kFilter: {
        Result<std::unique_ptr<Expr>> e = ParseExpr(op.spec.filter().expr());
        if (!e.ok()) return Annotate(e.status(), at + ".filter.expr");
        op.filter = std::move(*e);
        break;
      }
      case proto::OperatorSpec::kMap:
        for (const auto& [name, text] : op.spec.map().fields()) {
          Result<std::unique_ptr<Expr>> e = ParseExpr(text);
          if (!e.ok()) return Annotate(e.status(), at + ".map.fields." + name);
          op.map.emplace_back(name, std::move(*e));
        }
        break;
      case proto::OperatorSpec::kProject:
        for (const std::string& f : op.spec.project().fields()) {
          auto it = op.spec.project().rename().find(f);
          op.project.emplace_back(it == op.spec.project().rename().end() ? f : it->second, f);
        }
        break;
      case proto::OperatorSpec::kPlugin: {
        Result<std::unique_ptr<plugin::Operator>> p = CreatePluginOperator(op.spec.plugin(), spec.name(), op.spec.line());
        if (!p.ok()) return Annotate(p.status(), at + ".plugin");
        op.plugin = std::move(*p);
        break;
      }
      case proto::OperatorSpec::OP_NOT_SET:
        return absl::InvalidArgumentError(at + ": empty operator");
      default:
        break;
    }
    ops.push_back(std::move(op));
  }
  const bool csv = spec.sink().has_file() && spec.sink().file().format() == "csv";
  return std::unique_ptr<Pipeline>(new PipelineImpl(std::move(ops), csv, std::move(mapper)));
}

}  // namespace sluice::engine
