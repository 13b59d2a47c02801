#include "lib/engine/job_file.h"

#include <charconv>
#include <fstream>
#include <sstream>

#include "lib/common/fs.h"
#include "lib/common/kafka_properties.h"
#include "lib/engine/confinement.h"
#include "lib/engine/expr.h"
#include "lib/engine/keyed.h"
#include "lib/engine/limits.h"
#include "lib/source/source_connector.h"
#include "yaml-cpp/yaml.h"

namespace sluice::engine {
namespace {

constexpr int64_t kDefaultBatchIntervalMs = 1000;
constexpr int kDefaultMaxBatchesInFlight = 2;
constexpr int kDefaultMaxTaskFailures = 4;

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Walks the YAML tree; every error names the file, the line and the field.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  Status Error(const YAML::Node& at, const std::string& path, const std::string& why) const {
    const int line = at.Mark().line >= 0 ? at.Mark().line + 1 : 0;
    return absl::InvalidArgumentError(
        line > 0 ? fmt::format("{}: line {}: {}: {}", file_, line, path, why) : fmt::format("{}: {}: {}", file_, path, why));
  }

  Status Map(const YAML::Node& n, const std::string& path, const std::vector<std::string>& allowed) const {
    if (!n.IsMap()) return Error(n, path.empty() ? "job" : path, "expected a mapping (key: value lines)");
    for (const auto& kv : n) {
      const std::string key = kv.first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        return Error(kv.first, path.empty() ? key : path + "." + key,
                     fmt::format("unknown field '{}' (expected one of: {})", key, Join(allowed)));
      }
    }
    return absl::OkStatus();
  }

  Result<bool> Bool(const YAML::Node& n, const std::string& path) const {
    if (n.IsScalar() && (n.Scalar() == "true" || n.Scalar() == "false")) return n.Scalar() == "true";
    return Error(n, path, "expected true or false");
  }

  Result<std::string> Str(const YAML::Node& n, const std::string& path) const {
    if (!n.IsScalar()) return Error(n, path, "expected a string");
    return n.Scalar();
  }

  Result<int64_t> Int(const YAML::Node& n, const std::string& path, int64_t min, int64_t max) const {
    if (!n.IsScalar()) return Error(n, path, "expected a whole number");
    const std::string& s = n.Scalar();
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) {
      return Error(n, path, fmt::format("'{}' is not a whole number", s));
    }
    if (v < min || v > max) return Error(n, path, fmt::format("{} is not in {}..{}", v, min, max));
    return v;
  }

  // "250ms", "1s", "2m", "1h", or a number of milliseconds; 10ms..max_ms.
  Result<int64_t> DurationMs(const YAML::Node& n, const std::string& path, int64_t max_ms = 3'600'000) const {
    if (!n.IsScalar()) return Error(n, path, "expected a duration such as 500ms, 1s or 2m");
    const std::string& s = n.Scalar();
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    const std::string unit(p, s.data() + s.size());
    int64_t scale = 0;
    if (unit.empty() || unit == "ms") scale = 1;
    if (unit == "s") scale = 1000;
    if (unit == "m") scale = 60'000;
    if (unit == "h") scale = 3'600'000;
    if (ec != std::errc() || p == s.data() || scale == 0) {
      return Error(n, path, fmt::format("'{}' is not a duration such as 500ms, 1s or 2m", s));
    }
    int64_t ms = 0;
    // A product past int64 is out of range too (it wrapped: found by job_file_fuzz).
    if (__builtin_mul_overflow(v, scale, &ms) || ms < 10 || ms > max_ms) {
      return Error(n, path, fmt::format("{} is not between 10ms and {}", s, max_ms == 3'600'000 ? "1h" : "24h"));
    }
    return ms;
  }

  Result<std::vector<std::string>> StrList(const YAML::Node& n, const std::string& path) const {
    if (!n.IsSequence()) return Error(n, path, "expected a list");
    std::vector<std::string> out;
    for (size_t i = 0; i < n.size(); ++i) {
      ASSIGN_OR_RETURN(std::string s, Str(n[i], fmt::format("{}[{}]", path, i)));
      out.push_back(std::move(s));
    }
    return out;
  }

  Status StrMap(const YAML::Node& n, const std::string& path, google::protobuf::Map<std::string, std::string>* out) const {
    if (!n.IsMap()) return Error(n, path, "expected a mapping");
    for (const auto& kv : n) {
      ASSIGN_OR_RETURN(std::string v, Str(kv.second, path + "." + kv.first.Scalar()));
      (*out)[kv.first.Scalar()] = v;
    }
    return absl::OkStatus();
  }

  Status Expression(const YAML::Node& n, const std::string& path, std::string* out) const {
    ASSIGN_OR_RETURN(*out, Str(n, path));
    Result<std::unique_ptr<Expr>> e = ParseExpr(*out);
    if (!e.ok()) return Error(n, path, std::string(e.status().message()));
    return absl::OkStatus();
  }

  Result<proto::SourceSpec> Source(const YAML::Node& n, const std::string& path) const {
    RETURN_IF_ERROR(Map(n, path,
                        {"name", "kind", "partitions", "replication", "max_event_bytes", "max_rate_per_partition",
                         "rate", "keys", "payload_bytes", "seed", "brokers", "topic", "start", "properties",
                         "addresses", "framing", "on_data_loss"}));
    proto::SourceSpec s;
    if (!n["name"]) return Error(n, path, "a source needs a name");
    ASSIGN_OR_RETURN(*s.mutable_name(), Str(n["name"], path + ".name"));
    if (!n["kind"]) return Error(n, path, "a source needs a kind: generator, kafka or socket");
    ASSIGN_OR_RETURN(std::string kind, Str(n["kind"], path + ".kind"));
    Result<proto::SourceKind> k = source::SourceKindFromName(kind);
    if (!k.ok()) return Error(n["kind"], path + ".kind", std::string(k.status().message()));
    s.set_kind(*k);
    auto opt_int = [&](const char* key, int64_t min, int64_t max, auto set) -> Status {
      if (n[key]) {
        ASSIGN_OR_RETURN(int64_t v, Int(n[key], path + "." + key, min, max));
        set(v);
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(opt_int("partitions", 1, 4096, [&](int64_t v) { s.set_partitions(static_cast<int32_t>(v)); }));
    RETURN_IF_ERROR(opt_int("replication", 1, 2, [&](int64_t v) { s.set_replication(static_cast<int32_t>(v)); }));
    RETURN_IF_ERROR(opt_int("max_event_bytes", 1, 64 << 20, [&](int64_t v) { s.set_max_event_bytes(v); }));
    RETURN_IF_ERROR(opt_int("max_rate_per_partition", 0, INT64_MAX, [&](int64_t v) { s.set_max_rate_per_partition(v); }));
    RETURN_IF_ERROR(opt_int("rate", 0, INT64_MAX, [&](int64_t v) { s.mutable_generator()->set_rate_per_partition(v); }));
    RETURN_IF_ERROR(opt_int("keys", 1, INT64_MAX, [&](int64_t v) { s.mutable_generator()->set_num_keys(v); }));
    RETURN_IF_ERROR(opt_int("payload_bytes", 96, 64 << 20,
                            [&](int64_t v) { s.mutable_generator()->set_payload_bytes(static_cast<int32_t>(v)); }));
    RETURN_IF_ERROR(opt_int("seed", 1, INT64_MAX, [&](int64_t v) { s.mutable_generator()->set_seed(v); }));
    if (n["brokers"]) {
      ASSIGN_OR_RETURN(*s.mutable_kafka()->mutable_brokers(), Str(n["brokers"], path + ".brokers"));
    }
    if (n["topic"]) {
      ASSIGN_OR_RETURN(*s.mutable_kafka()->mutable_topic(), Str(n["topic"], path + ".topic"));
    }
    if (n["start"]) {
      ASSIGN_OR_RETURN(*s.mutable_kafka()->mutable_start(), Str(n["start"], path + ".start"));
    }
    if (n["properties"]) {
      RETURN_IF_ERROR(StrMap(n["properties"], path + ".properties", s.mutable_kafka()->mutable_properties()));
    }
    if (n["on_data_loss"]) {
      ASSIGN_OR_RETURN(*s.mutable_on_data_loss(), Str(n["on_data_loss"], path + ".on_data_loss"));
      if (!source::IsDataLossPolicy(s.on_data_loss())) {
        return Error(n["on_data_loss"], path + ".on_data_loss",
                     fmt::format("'{}' is not fail or skip", s.on_data_loss()));
      }
    }
    if (n["addresses"]) {
      ASSIGN_OR_RETURN(auto addresses, StrList(n["addresses"], path + ".addresses"));
      for (auto& a : addresses) s.mutable_socket()->add_addresses(a);
    }
    if (n["framing"]) {
      ASSIGN_OR_RETURN(*s.mutable_socket()->mutable_framing(), Str(n["framing"], path + ".framing"));
    }
    return s;
  }

  Result<proto::OperatorSpec> Operator(const YAML::Node& n, const std::string& path) const {
    static const std::vector<std::string> kKinds = {"parse",   "filter", "map",       "project",    "flat_map",
                                                    "plugin",  "key_by", "aggregate", "window",     "update_state"};
    if (!n.IsMap() || n.size() != 1) {
      return Error(n, path, fmt::format("an operator is one of: {} (e.g. '- filter: {{expr: \"x > 1\"}}')", Join(kKinds)));
    }
    const std::string kind = n.begin()->first.Scalar();
    const YAML::Node body = n.begin()->second;
    const std::string at = path + "." + kind;
    proto::OperatorSpec op;
    op.set_line(n.Mark().line + 1);
    if (kind == "parse") {
      RETURN_IF_ERROR(Map(body, at, {"format", "fields", "delimiter"}));
      proto::ParseOp* p = op.mutable_parse();
      if (!body["format"]) return Error(body, at, "parse needs a format: json, csv or raw");
      ASSIGN_OR_RETURN(*p->mutable_format(), Str(body["format"], at + ".format"));
      if (p->format() != "json" && p->format() != "csv" && p->format() != "raw") {
        return Error(body["format"], at + ".format", fmt::format("'{}' is not json, csv or raw", p->format()));
      }
      if (body["fields"]) {
        ASSIGN_OR_RETURN(auto fields, StrList(body["fields"], at + ".fields"));
        for (auto& f : fields) p->add_fields(f);
      }
      if (p->format() == "csv" && p->fields().empty()) return Error(body, at + ".fields", "csv needs the column names");
      if (body["delimiter"]) {
        ASSIGN_OR_RETURN(*p->mutable_delimiter(), Str(body["delimiter"], at + ".delimiter"));
      }
    } else if (kind == "filter") {
      // "- filter: x > 1" or "- filter: {expr: x > 1}"
      if (body.IsScalar()) {
        RETURN_IF_ERROR(Expression(body, at, op.mutable_filter()->mutable_expr()));
      } else {
        RETURN_IF_ERROR(Map(body, at, {"expr"}));
        if (!body["expr"]) return Error(body, at, "filter needs an expr");
        RETURN_IF_ERROR(Expression(body["expr"], at + ".expr", op.mutable_filter()->mutable_expr()));
      }
    } else if (kind == "map") {
      RETURN_IF_ERROR(Map(body, at, {"fields"}));
      if (!body["fields"] || !body["fields"].IsMap()) return Error(body, at + ".fields", "map needs fields: {name: expr}");
      for (const auto& kv : body["fields"]) {
        std::string expr;
        RETURN_IF_ERROR(Expression(kv.second, at + ".fields." + kv.first.Scalar(), &expr));
        (*op.mutable_map()->mutable_fields())[kv.first.Scalar()] = expr;
      }
    } else if (kind == "project") {
      RETURN_IF_ERROR(Map(body, at, {"fields", "rename"}));
      if (!body["fields"]) return Error(body, at, "project needs fields: [names]");
      ASSIGN_OR_RETURN(auto fields, StrList(body["fields"], at + ".fields"));
      for (auto& f : fields) op.mutable_project()->add_fields(f);
      if (body["rename"]) RETURN_IF_ERROR(StrMap(body["rename"], at + ".rename", op.mutable_project()->mutable_rename()));
    } else if (kind == "flat_map") {
      RETURN_IF_ERROR(Map(body, at, {"split", "separator", "as"}));
      if (!body["split"]) return Error(body, at, "flat_map needs split: <field>");
      ASSIGN_OR_RETURN(*op.mutable_flat_map()->mutable_split(), Str(body["split"], at + ".split"));
      if (body["separator"]) {
        ASSIGN_OR_RETURN(*op.mutable_flat_map()->mutable_separator(), Str(body["separator"], at + ".separator"));
      }
      if (body["as"]) {
        ASSIGN_OR_RETURN(*op.mutable_flat_map()->mutable_as(), Str(body["as"], at + ".as"));
      }
    } else if (kind == "plugin") {
      RETURN_IF_ERROR(Map(body, at, {"name", "path", "config"}));
      if (body["path"]) {
        ASSIGN_OR_RETURN(std::string path, Str(body["path"], at + ".path"));
        return Error(body["path"], at + ".path", PluginPathRefusal(path));
      }
      if (!body["name"]) return Error(body, at, "plugin needs the name of its library (name: NAME loads NAME.so)");
      ASSIGN_OR_RETURN(*op.mutable_plugin()->mutable_name(), Str(body["name"], at + ".name"));
      if (body["config"]) RETURN_IF_ERROR(StrMap(body["config"], at + ".config", op.mutable_plugin()->mutable_config()));
    } else if (kind == "key_by") {
      // "- key_by: user", "- key_by: [user, page]" or "- key_by: {fields: [...]}"
      std::vector<std::string> fields;
      if (body.IsScalar()) {
        fields.push_back(body.Scalar());
      } else if (body.IsSequence()) {
        ASSIGN_OR_RETURN(fields, StrList(body, at));
      } else {
        RETURN_IF_ERROR(Map(body, at, {"fields"}));
        if (!body["fields"]) return Error(body, at, "key_by needs fields: [names]");
        ASSIGN_OR_RETURN(fields, StrList(body["fields"], at + ".fields"));
      }
      if (fields.empty()) return Error(body, at, "key_by needs at least one field");
      for (auto& f : fields) op.mutable_key_by()->add_fields(f);
    } else if (kind == "aggregate") {
      if (!body.IsSequence() || body.size() == 0) {
        return Error(body, at, "aggregate is a list of functions, e.g. [{fn: count}, {fn: sum, field: amount}]");
      }
      for (size_t i = 0; i < body.size(); ++i) {
        ASSIGN_OR_RETURN(*op.mutable_aggregate()->add_aggregations(),
                         Aggregate(body[i], fmt::format("{}[{}]", at, i), /*running=*/false));
      }
    } else if (kind == "window") {
      RETURN_IF_ERROR(
          Map(body, at, {"type", "length", "slide", "gap", "event_time", "max_delay", "allowed_lateness"}));
      proto::WindowOp* w = op.mutable_window();
      if (!body["type"]) return Error(body, at, "window needs a type: tumbling, sliding or session");
      ASSIGN_OR_RETURN(*w->mutable_type(), Str(body["type"], at + ".type"));
      constexpr int64_t kDay = 24 * 3'600'000LL;
      auto duration = [&](const char* key, int64_t* out) -> Status {
        if (!body[key]) return absl::OkStatus();
        ASSIGN_OR_RETURN(*out, DurationMs(body[key], at + "." + key, kDay));
        return absl::OkStatus();
      };
      int64_t length = 0, slide = 0, gap = 0, delay = 0, lateness = 0;
      RETURN_IF_ERROR(duration("length", &length));
      RETURN_IF_ERROR(duration("slide", &slide));
      RETURN_IF_ERROR(duration("gap", &gap));
      RETURN_IF_ERROR(duration("max_delay", &delay));
      RETURN_IF_ERROR(duration("allowed_lateness", &lateness));
      w->set_length_ms(length);
      w->set_slide_ms(slide);
      w->set_gap_ms(gap);
      w->set_max_delay_ms(delay);
      w->set_allowed_lateness_ms(lateness);
      if (body["event_time"]) {
        ASSIGN_OR_RETURN(*w->mutable_event_time(), Str(body["event_time"], at + ".event_time"));
      }
    } else if (kind == "update_state") {
      RETURN_IF_ERROR(Map(body, at, {"running", "plugin", "config", "timeout"}));
      proto::UpdateStateOp* u = op.mutable_update_state();
      if (body["running"]) {
        if (!body["running"].IsSequence() || body["running"].size() == 0) {
          return Error(body["running"], at + ".running", "expected a list of functions, e.g. [{fn: sum, field: amount}]");
        }
        for (size_t i = 0; i < body["running"].size(); ++i) {
          ASSIGN_OR_RETURN(*u->add_running(),
                           Aggregate(body["running"][i], fmt::format("{}.running[{}]", at, i), /*running=*/true));
        }
      }
      if (body["plugin"]) {
        ASSIGN_OR_RETURN(*u->mutable_plugin(), Str(body["plugin"], at + ".plugin"));
      }
      if (body["config"]) RETURN_IF_ERROR(StrMap(body["config"], at + ".config", u->mutable_config()));
      if (body["timeout"]) {
        ASSIGN_OR_RETURN(int64_t t, DurationMs(body["timeout"], at + ".timeout", 24 * 3'600'000LL));
        u->set_timeout_ms(t);
      }
    } else {
      return Error(n.begin()->first, path,
                   fmt::format("unknown operator '{}' (expected one of: {})", kind, Join(kKinds)));
    }
    return op;
  }

  // {fn: sum, field: amount, as: total}; running aggregates (update_state)
  // are those a per-key running value can hold: count, sum, min, max, avg.
  Result<proto::Aggregation> Aggregate(const YAML::Node& n, const std::string& path, bool running) const {
    static const std::vector<std::string> kFns = {"count", "sum", "min", "max", "avg",
                                                  "count_distinct", "approx_distinct", "top_k"};
    static const std::vector<std::string> kRunning = {"count", "sum", "min", "max", "avg"};
    RETURN_IF_ERROR(Map(n, path, {"fn", "field", "as", "k"}));
    proto::Aggregation a;
    if (!n["fn"]) return Error(n, path, fmt::format("needs fn: one of {}", Join(running ? kRunning : kFns)));
    ASSIGN_OR_RETURN(*a.mutable_fn(), Str(n["fn"], path + ".fn"));
    const auto& allowed = running ? kRunning : kFns;
    if (std::find(allowed.begin(), allowed.end(), a.fn()) == allowed.end()) {
      return Error(n["fn"], path + ".fn", fmt::format("'{}' is not one of {}", a.fn(), Join(allowed)));
    }
    if (n["field"]) {
      ASSIGN_OR_RETURN(*a.mutable_field(), Str(n["field"], path + ".field"));
    }
    if (a.fn() != "count" && a.field().empty()) return Error(n, path, fmt::format("{} needs a field", a.fn()));
    if (a.fn() == "count" && !a.field().empty()) return Error(n["field"], path + ".field", "count takes no field");
    if (a.fn() == "top_k") {
      if (!n["k"]) return Error(n, path, "top_k needs k");
      ASSIGN_OR_RETURN(int64_t k, Int(n["k"], path + ".k", 1, 1000));
      a.set_k(static_cast<int32_t>(k));
    } else if (n["k"]) {
      return Error(n["k"], path + ".k", "only top_k takes k");
    }
    if (n["as"]) {
      ASSIGN_OR_RETURN(*a.mutable_as(), Str(n["as"], path + ".as"));
    } else {
      a.set_as(a.fn() == "count" ? "count" : a.fn() + "_" + a.field());
    }
    return a;
  }

  Result<proto::SinkSpec> Sink(const YAML::Node& n, const std::string& path) const {
    static const std::vector<std::string> kKinds = {"file", "kafka", "stdout", "null"};
    if (!n.IsMap() || n.size() != 1) {
      return Error(n, path, fmt::format("a sink is one of: {} (e.g. 'sink: {{file: {{path: /data/out}}}}')", Join(kKinds)));
    }
    // `null:` as a key is YAML's null, not a string: it names the null sink.
    const std::string kind = n.begin()->first.IsNull() ? "null" : n.begin()->first.Scalar();
    const YAML::Node body = n.begin()->second;
    const std::string at = path + "." + kind;
    proto::SinkSpec sink;
    if (kind == "file") {
      RETURN_IF_ERROR(Map(body, at, {"path", "format"}));
      if (!body["path"]) return Error(body, at, "a file sink needs a path (a directory)");
      ASSIGN_OR_RETURN(*sink.mutable_file()->mutable_path(), Str(body["path"], at + ".path"));
      sink.mutable_file()->set_format("jsonl");
      if (body["format"]) {
        ASSIGN_OR_RETURN(*sink.mutable_file()->mutable_format(), Str(body["format"], at + ".format"));
      }
      if (sink.file().format() != "jsonl" && sink.file().format() != "csv") {
        return Error(body["format"], at + ".format", fmt::format("'{}' is not jsonl or csv", sink.file().format()));
      }
    } else if (kind == "kafka") {
      RETURN_IF_ERROR(Map(body, at, {"brokers", "topic", "properties"}));
      if (!body["brokers"] || !body["topic"]) return Error(body, at, "a kafka sink needs brokers and topic");
      ASSIGN_OR_RETURN(*sink.mutable_kafka()->mutable_brokers(), Str(body["brokers"], at + ".brokers"));
      ASSIGN_OR_RETURN(*sink.mutable_kafka()->mutable_topic(), Str(body["topic"], at + ".topic"));
      if (body["properties"]) {
        RETURN_IF_ERROR(StrMap(body["properties"], at + ".properties", sink.mutable_kafka()->mutable_properties()));
      }
    } else if (kind == "stdout" || kind == "null") {
      if (body && !body.IsNull() && !(body.IsMap() && body.size() == 0)) return Error(body, at, "takes no settings");
      if (kind == "stdout") sink.mutable_stdout();
      if (kind == "null") sink.mutable_null();
    } else {
      return Error(n.begin()->first, path, fmt::format("unknown sink '{}' (expected one of: {})", kind, Join(kKinds)));
    }
    return sink;
  }

  Result<proto::JobSpec> Job(const YAML::Node& root) const {
    RETURN_IF_ERROR(Map(root, "", {"name", "batch_interval", "sources", "operators", "sink",
                                      "max_batches_in_flight", "max_task_failures", "dead_letters",
                                      "reduce_partitions", "max_records_per_batch", "backpressure"}));
    proto::JobSpec job;
    job.set_file(file_);
    if (!root["name"]) return Error(root, "name", "a job needs a name");
    ASSIGN_OR_RETURN(*job.mutable_name(), Str(root["name"], "name"));
    if (Status st = ValidateId(job.name(), "name"); !st.ok()) {
      return Error(root["name"], "name", std::string(st.message()));
    }
    job.set_batch_interval_ms(kDefaultBatchIntervalMs);
    if (root["batch_interval"]) {
      ASSIGN_OR_RETURN(int64_t ms, DurationMs(root["batch_interval"], "batch_interval"));
      job.set_batch_interval_ms(ms);
    }
    if (!root["sources"]) return Error(root, "sources", "a job needs at least one source");
    const YAML::Node sources = root["sources"];
    if (!sources.IsSequence() || sources.size() == 0) return Error(sources, "sources", "expected a non-empty list");
    if (sources.size() > static_cast<size_t>(kMaxOperators)) {
      return Error(sources, "sources", fmt::format("{} sources, more than the limit of {}", sources.size(), kMaxOperators));
    }
    for (size_t i = 0; i < sources.size(); ++i) {
      const std::string path = fmt::format("sources[{}]", i);
      if (sources[i].IsScalar()) {
        job.add_sources(sources[i].Scalar());  // a source registered before
      } else {
        ASSIGN_OR_RETURN(proto::SourceSpec s, Source(sources[i], path));
        job.add_sources(s.name());
        *job.add_inline_sources() = std::move(s);
      }
    }
    if (root["operators"]) {
      const YAML::Node ops = root["operators"];
      if (!ops.IsSequence()) return Error(ops, "operators", "expected a list");
      if (ops.size() > static_cast<size_t>(kMaxOperators)) {
        return Error(ops, "operators", fmt::format("{} operators, more than the limit of {}", ops.size(), kMaxOperators));
      }
      // YAML aliases can repeat one large node many times: the spec's size
      // is bounded as it grows, not only once it is built.
      size_t bytes = 0;
      for (size_t i = 0; i < ops.size(); ++i) {
        ASSIGN_OR_RETURN(proto::OperatorSpec op, Operator(ops[i], fmt::format("operators[{}]", i)));
        bytes += op.ByteSizeLong();
        if (bytes > kMaxJobSpecBytes) {
          return Error(ops[i], fmt::format("operators[{}]", i),
                       fmt::format("the operators take more than the limit of {} bytes", kMaxJobSpecBytes));
        }
        *job.add_operators() = std::move(op);
      }
    }
    if (!root["sink"]) return Error(root, "sink", "a job needs a sink (file, kafka, stdout or null)");
    ASSIGN_OR_RETURN(*job.mutable_sink(), Sink(root["sink"], "sink"));
    job.set_max_batches_in_flight(kDefaultMaxBatchesInFlight);
    if (root["max_batches_in_flight"]) {
      ASSIGN_OR_RETURN(int64_t v, Int(root["max_batches_in_flight"], "max_batches_in_flight", 1, 100));
      job.set_max_batches_in_flight(static_cast<int32_t>(v));
    }
    job.set_max_task_failures(kDefaultMaxTaskFailures);
    if (root["max_task_failures"]) {
      ASSIGN_OR_RETURN(int64_t v, Int(root["max_task_failures"], "max_task_failures", 1, 100));
      job.set_max_task_failures(static_cast<int32_t>(v));
    }
    job.set_reduce_partitions(kDefaultReducePartitions);
    if (root["reduce_partitions"]) {
      ASSIGN_OR_RETURN(int64_t v, Int(root["reduce_partitions"], "reduce_partitions", 1, 1024));
      job.set_reduce_partitions(static_cast<int32_t>(v));
    }
    if (root["max_records_per_batch"]) {
      ASSIGN_OR_RETURN(int64_t v, Int(root["max_records_per_batch"], "max_records_per_batch", 1, kMaxRateSetting));
      job.set_max_records_per_batch(v);
    }
    if (const YAML::Node bp = root["backpressure"]) {
      RETURN_IF_ERROR(Map(bp, "backpressure", {"enabled", "initial_rate", "min_rate"}));
      if (bp["enabled"]) {
        ASSIGN_OR_RETURN(bool enabled, Bool(bp["enabled"], "backpressure.enabled"));
        job.mutable_backpressure()->set_disabled(!enabled);
      }
      if (bp["initial_rate"]) {
        ASSIGN_OR_RETURN(int64_t v, Int(bp["initial_rate"], "backpressure.initial_rate", 1, kMaxRateSetting));
        job.mutable_backpressure()->set_initial_rate(v);
      }
      if (bp["min_rate"]) {
        ASSIGN_OR_RETURN(int64_t v, Int(bp["min_rate"], "backpressure.min_rate", 1, kMaxRateSetting));
        job.mutable_backpressure()->set_min_rate(v);
      }
    }
    if (root["dead_letters"]) {
      ASSIGN_OR_RETURN(*job.mutable_dead_letters(), Str(root["dead_letters"], "dead_letters"));
      if (job.dead_letters().empty() || job.dead_letters()[0] != '/') {
        return Error(root["dead_letters"], "dead_letters",
                     fmt::format("'{}' is not an absolute directory (workers write there)", job.dead_letters()));
      }
    }
    return job;
  }

 private:
  std::string file_;
};

}  // namespace

Result<proto::JobSpec> ParseJobFile(std::string_view text, std::string_view file) {
  // yaml-cpp recurses once per nesting level: the depth is bounded first.
  RETURN_IF_ERROR(CheckJobFileLimits(text, file));
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        fmt::format("{}: line {}: not valid YAML: {}", file, e.mark.line + 1, e.msg));
  }
  if (!root || root.IsNull()) return absl::InvalidArgumentError(fmt::format("{}: the job file is empty", file));
  try {
    ASSIGN_OR_RETURN(proto::JobSpec job, Reader(std::string(file)).Job(root));
    RETURN_IF_ERROR(ValidateJobSpec(job));
    return job;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("{}: line {}: {}", file, e.mark.line + 1, e.msg));
  }
}

Result<proto::JobSpec> LoadJobFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(fmt::format("{}: cannot read the job file", path));
  in.seekg(0, std::ios::end);
  if (const std::streamoff size = in.tellg(); size > static_cast<std::streamoff>(kMaxJobFileBytes)) {
    return absl::InvalidArgumentError(fmt::format("{}: the job file is {} bytes, more than the limit of {} bytes",
                                                  path, size, kMaxJobFileBytes));
  }
  in.seekg(0, std::ios::beg);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseJobFile(buffer.str(), path);
}

Status ValidateJobSpec(const proto::JobSpec& spec) {
  RETURN_IF_ERROR(CheckJobSpecLimits(spec));
  const std::string& file = spec.file().empty() ? "job" : spec.file();
  RETURN_IF_ERROR(ValidateId(spec.name(), "name"));
  if (spec.batch_interval_ms() < 10 || spec.batch_interval_ms() > 3'600'000) {
    return absl::InvalidArgumentError(fmt::format("{}: batch_interval: {} ms is not between 10ms and 1h", file,
                                                  spec.batch_interval_ms()));
  }
  if (spec.sources().empty()) return absl::InvalidArgumentError(fmt::format("{}: sources: none given", file));
  bool keyed = false;         // a key_by came before
  bool after_window = false;  // the operator before was a window
  for (int i = 0; i < spec.operators_size(); ++i) {
    const proto::OperatorSpec& op = spec.operators(i);
    auto bad = [&](const std::string& field, const std::string& why) {
      return absl::InvalidArgumentError(fmt::format("{}: line {}: operators[{}]{}{}: {}", file, op.line(), i,
                                                    field.empty() ? "" : ".", field, why));
    };
    if (after_window && !op.has_aggregate()) return bad("", "a window must be followed by aggregate");
    switch (op.op_case()) {
      case proto::OperatorSpec::kFilter:
        if (auto e = ParseExpr(op.filter().expr()); !e.ok()) return bad("filter.expr", std::string(e.status().message()));
        break;
      case proto::OperatorSpec::kMap:
        for (const auto& [name, expr] : op.map().fields()) {
          if (auto e = ParseExpr(expr); !e.ok()) return bad("map.fields." + name, std::string(e.status().message()));
        }
        break;
      case proto::OperatorSpec::kPlugin:
        if (!op.plugin().path().empty()) return bad("plugin.path", PluginPathRefusal(op.plugin().path()));
        if (!IsPluginName(op.plugin().name())) {
          return bad("plugin.name", fmt::format("'{}' is not a plugin name ([A-Za-z0-9_.-]+, without '..')",
                                                op.plugin().name()));
        }
        break;
      case proto::OperatorSpec::kKeyBy:
        keyed = true;
        if (op.key_by().fields().empty()) return bad("key_by", "needs at least one field");
        break;
      case proto::OperatorSpec::kAggregate:
      case proto::OperatorSpec::kUpdateState: {
        const char* name = op.has_aggregate() ? "aggregate" : "update_state";
        if (!keyed) return bad(name, "needs a key_by before it (what is it per?)");
        if (op.has_update_state()) {
          const proto::UpdateStateOp& u = op.update_state();
          if (u.running().empty() == u.plugin().empty()) {
            return bad(name, "needs either running: [functions] or plugin: <name>, not both");
          }
          if (u.plugin().find('/') != std::string::npos) {
            return bad("update_state.plugin", PluginPathRefusal(u.plugin()));
          }
          if (!u.plugin().empty() && !IsPluginName(u.plugin())) {
            return bad("update_state.plugin",
                       fmt::format("'{}' is not a plugin name ([A-Za-z0-9_.-]+, without '..')", u.plugin()));
          }
        }
        after_window = false;
        break;
      }
      case proto::OperatorSpec::kWindow: {
        const proto::WindowOp& w = op.window();
        const bool event_time = !w.event_time().empty();
        if (w.type() == "tumbling") {
          if (w.length_ms() <= 0) return bad("window.length", "a tumbling window needs a length");
          if (w.slide_ms() != 0 || w.gap_ms() != 0) return bad("window", "a tumbling window takes no slide or gap");
        } else if (w.type() == "sliding") {
          if (w.length_ms() <= 0 || w.slide_ms() <= 0) return bad("window", "a sliding window needs length and slide");
          if (w.slide_ms() > w.length_ms() || w.length_ms() % w.slide_ms() != 0) {
            return bad("window.slide", fmt::format("{} ms does not divide the length, {} ms", w.slide_ms(), w.length_ms()));
          }
          if (w.gap_ms() != 0) return bad("window.gap", "only session windows have a gap");
        } else if (w.type() == "session") {
          if (w.gap_ms() <= 0) return bad("window.gap", "a session window needs a gap");
          if (!event_time) return bad("window.event_time", "a session window needs an event_time field");
          if (w.length_ms() != 0 || w.slide_ms() != 0) return bad("window", "a session window takes no length or slide");
        } else {
          return bad("window.type", fmt::format("'{}' is not tumbling, sliding or session", w.type()));
        }
        if (!event_time) {
          // Over batch time (Spark's window(length, slide)): whole batches.
          if (w.max_delay_ms() != 0 || w.allowed_lateness_ms() != 0) {
            return bad("window", "max_delay and allowed_lateness need an event_time field");
          }
          for (int64_t ms : {w.length_ms(), w.slide_ms()}) {
            if (ms % spec.batch_interval_ms() != 0) {
              return bad("window", fmt::format("{} ms is not a multiple of the batch interval, {} ms (a window over "
                                               "batch time is made of whole batches)",
                                               ms, spec.batch_interval_ms()));
            }
          }
        }
        after_window = true;
        break;
      }
      case proto::OperatorSpec::OP_NOT_SET:
        return bad("", "empty operator");
      default:
        break;
    }
  }
  if (after_window) {
    return absl::InvalidArgumentError(fmt::format("{}: operators: a window must be followed by aggregate", file));
  }
  if (spec.reduce_partitions() < 0 || spec.reduce_partitions() > 1024) {
    return absl::InvalidArgumentError(
        fmt::format("{}: reduce_partitions: {} is not in 1..1024", file, spec.reduce_partitions()));
  }
  if (spec.max_records_per_batch() < 0 || spec.max_records_per_batch() > kMaxRateSetting) {
    return absl::InvalidArgumentError(fmt::format("{}: max_records_per_batch: {} is not in 0..{}", file,
                                                  spec.max_records_per_batch(), kMaxRateSetting));
  }
  for (const int64_t v : {spec.backpressure().initial_rate(), spec.backpressure().min_rate()}) {
    if (v < 0 || v > kMaxRateSetting) {
      return absl::InvalidArgumentError(
          fmt::format("{}: backpressure: initial_rate and min_rate must be in 0..{}", file, kMaxRateSetting));
    }
  }
  if (spec.sink().sink_case() == proto::SinkSpec::SINK_NOT_SET) {
    return absl::InvalidArgumentError(fmt::format("{}: sink: none given", file));
  }
  for (const auto& [k, v] : spec.sink().kafka().properties()) {
    if (Status refused = CheckKafkaProperty(k, "sink.kafka.properties"); !refused.ok()) {
      return absl::InvalidArgumentError(fmt::format("{}: {}", file, std::string(refused.message())));
    }
  }
  return absl::OkStatus();
}

Status CheckRunnable(const proto::JobSpec& spec) { return KeyedStageOf(spec).status(); }

}  // namespace sluice::engine
