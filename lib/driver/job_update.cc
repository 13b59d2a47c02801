#include "lib/driver/job_update.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/str_join.h"
#include "lib/engine/keyed.h"
#include "spdlog/fmt/fmt.h"

namespace sluice::driver {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::util::MessageDifferencer;

// The spec as compared: without what only names where it came from.
proto::JobSpec Comparable(const proto::JobSpec& spec) {
  proto::JobSpec out = spec;
  out.clear_file();
  for (proto::OperatorSpec& op : *out.mutable_operators()) op.clear_line();
  return out;
}

std::string OpKind(const proto::OperatorSpec& op) {
  const google::protobuf::OneofDescriptor* oneof = op.GetDescriptor()->FindOneofByName("op");
  const FieldDescriptor* set = op.GetReflection()->GetOneofFieldDescriptor(op, oneof);
  return set == nullptr ? "empty" : set->name();
}

std::string SinkKind(const proto::SinkSpec& sink) {
  switch (sink.sink_case()) {
    case proto::SinkSpec::kFile:
      return "file";
    case proto::SinkSpec::kKafka:
      return "kafka";
    case proto::SinkSpec::kStdout:
      return "stdout";
    case proto::SinkSpec::kNull:
      return "null";
    case proto::SinkSpec::SINK_NOT_SET:
      break;
  }
  return "none";
}

// One line per top-level field of the spec that differs; operators step by step.
std::vector<std::string> Changes(const proto::JobSpec& a, const proto::JobSpec& b) {
  std::vector<std::string> out;
  const google::protobuf::Descriptor* d = proto::JobSpec::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->name() == "file") continue;
    MessageDifferencer diff;
    for (int j = 0; j < d->field_count(); ++j) {
      if (j != i) diff.IgnoreField(d->field(j));
    }
    if (diff.Compare(a, b)) continue;
    if (f->name() == "operators") {
      const int n = std::max(a.operators_size(), b.operators_size());
      for (int k = 0; k < n; ++k) {
        if (k >= a.operators_size()) {
          out.push_back(fmt::format("operators: step {} added ({})", k + 1, OpKind(b.operators(k))));
        } else if (k >= b.operators_size()) {
          out.push_back(fmt::format("operators: step {} removed ({})", k + 1, OpKind(a.operators(k))));
        } else if (!MessageDifferencer::Equals(a.operators(k), b.operators(k))) {
          out.push_back(fmt::format("operators: step {} ({} -> {}) changed", k + 1, OpKind(a.operators(k)),
                                    OpKind(b.operators(k))));
        }
      }
    } else if (f->name() == "sink") {
      out.push_back(fmt::format("sink: {} -> {}{}", SinkKind(a.sink()), SinkKind(b.sink()),
                                SinkKind(a.sink()) == SinkKind(b.sink()) ? " (its settings)" : ""));
    } else {
      out.push_back(f->name() + " changed");
    }
  }
  return out;
}

// Why a keyed stage's state cannot carry over to `next`, or "" if it can.
std::string StateIncompatibility(const engine::KeyedStage& a, const engine::KeyedStage& b) {
  if (a.mode != b.mode) return "the keyed operator changed kind";
  if (a.key_fields != b.key_fields) {
    return fmt::format("key_by [{}] -> [{}]", absl::StrJoin(a.key_fields, ", "), absl::StrJoin(b.key_fields, ", "));
  }
  if (!MessageDifferencer::Equals(a.window, b.window)) return "the window changed";
  if (!MessageDifferencer::Equals(a.aggregate, b.aggregate)) return "the aggregates changed";
  if (a.timeout_ms != b.timeout_ms) return "the state timeout changed";
  if (a.plugin.name() != b.plugin.name() || a.plugin.path() != b.plugin.path() ||
      !MessageDifferencer::Equals(a.plugin, b.plugin)) {
    return "the state plugin or its config changed";
  }
  if (a.mode == engine::KeyedStage::Mode::kBatchWindow && a.batch_interval_ms != b.batch_interval_ms) {
    return "batch_interval changed under a window counted in batches";
  }
  return "";
}

}  // namespace

Result<UpdateCheck> CheckUpdate(const proto::JobSpec& current, const proto::JobSpec& next, bool reset_state) {
  if (next.name() != current.name()) {
    return absl::FailedPreconditionError(
        fmt::format("the file names job '{}', not '{}': a job keeps its name", next.name(), current.name()));
  }
  if (!std::equal(current.sources().begin(), current.sources().end(), next.sources().begin(), next.sources().end())) {
    return absl::FailedPreconditionError(fmt::format(
        "sources [{}] -> [{}]: a job's sources cannot change in place (its positions are per source); submit a new "
        "job",
        absl::StrJoin(current.sources(), ", "), absl::StrJoin(next.sources(), ", ")));
  }
  const proto::JobSpec a = Comparable(current);
  const proto::JobSpec b = Comparable(next);
  UpdateCheck check;
  check.changes = Changes(a, b);
  if (check.changes.empty()) return absl::InvalidArgumentError("the new spec is the job's own: nothing to update");
  ASSIGN_OR_RETURN(std::optional<engine::KeyedStage> old_stage, engine::KeyedStageOf(current));
  ASSIGN_OR_RETURN(std::optional<engine::KeyedStage> new_stage, engine::KeyedStageOf(next));
  const bool had_state = old_stage.has_value() && old_stage->stateful();
  const bool has_state = new_stage.has_value() && new_stage->stateful();
  if (!had_state) {
    check.state = has_state ? "reset" : "none";  // a new keyed stage starts empty
    return check;
  }
  if (reset_state) {
    check.state = has_state ? "reset" : "none";
    return check;
  }
  if (!has_state) {
    return absl::FailedPreconditionError(
        "the job's keyed state would be dropped (the new spec has no stateful operator); use --reset-state");
  }
  if (std::string why = StateIncompatibility(*old_stage, *new_stage); !why.empty()) {
    return absl::FailedPreconditionError(
        fmt::format("{}: the job's keyed state cannot be kept; use --reset-state to start it empty", why));
  }
  // reduce_partitions may differ: the state is kept, re-split into the new
  // count before the first batch that runs with it (lib/driver/rescale.h).
  check.state = "kept";
  if (old_stage->reduce_partitions != new_stage->reduce_partitions) {
    check.changes.push_back(fmt::format("state re-split: {} -> {} reduce partitions", old_stage->reduce_partitions,
                                        new_stage->reduce_partitions));
  }
  return check;
}

}  // namespace sluice::driver
