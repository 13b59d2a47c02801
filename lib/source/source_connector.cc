#include "lib/source/source_connector.h"

#include <array>

#include "lib/common/fs.h"
#include "lib/source/internal/connector_kind.h"

namespace sluice::source {
namespace {

using internal::ConnectorKind;
using internal::SpecError;

// The registry: one line per kind of source.
constexpr std::array<const ConnectorKind*, 3> kKinds = {
    &internal::kGeneratorKind,
    &internal::kKafkaKind,
    &internal::kSocketKind,
};

constexpr int64_t kDefaultMaxEventBytes = 1 << 20;
constexpr int64_t kMaxEventBytesLimit = 64 << 20;

const ConnectorKind* Find(proto::SourceKind kind) {
  for (const ConnectorKind* k : kKinds) {
    if (k->kind == kind) return k;
  }
  return nullptr;
}

// "generator, kafka or socket"
std::string KindList() {
  std::string out;
  for (size_t i = 0; i < kKinds.size(); ++i) {
    if (i > 0) out += i + 1 == kKinds.size() ? " or " : ", ";
    out += kKinds[i]->name;
  }
  return out;
}

}  // namespace

namespace internal {

Status SpecError(const proto::SourceSpec& spec, std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("source '{}': {}: {}", spec.name(), field, why));
}

Status CheckPartitionCount(const proto::SourceSpec& spec) {
  if (spec.partitions() < 1 || spec.partitions() > 4096) {
    return SpecError(spec, "partitions", fmt::format("{} is not in 1..4096", spec.partitions()));
  }
  return absl::OkStatus();
}

}  // namespace internal

Status NormalizeSourceSpec(proto::SourceSpec* spec) {
  RETURN_IF_ERROR(ValidateId(spec->name(), "source name"));
  if (spec->max_event_bytes() == 0) spec->set_max_event_bytes(kDefaultMaxEventBytes);
  if (spec->max_event_bytes() < 1 || spec->max_event_bytes() > kMaxEventBytesLimit) {
    return SpecError(*spec, "max_event_bytes",
                     fmt::format("{} is not in 1..{}", spec->max_event_bytes(), kMaxEventBytesLimit));
  }
  if (spec->max_rate_per_partition() < 0) return SpecError(*spec, "max_rate_per_partition", "must not be negative");
  // Left empty it means "fail": a spec recorded before the field existed
  // stays the same spec (SameSourceSpec).
  if (!IsDataLossPolicy(spec->on_data_loss())) {
    return SpecError(*spec, "on_data_loss", fmt::format("'{}' is not fail or skip", spec->on_data_loss()));
  }
  const ConnectorKind* kind = Find(spec->kind());
  if (kind == nullptr) return SpecError(*spec, "kind", "must be " + KindList());
  RETURN_IF_ERROR(kind->normalize(spec));
  if (spec->replication() == 0) spec->set_replication(kind->default_replication);
  if (spec->replication() < 1 || spec->replication() > 2) {
    return SpecError(*spec, "replication", fmt::format("{} is not 1 or 2", spec->replication()));
  }
  return absl::OkStatus();
}

void StampSourceSpec(proto::SourceSpec* spec, int64_t now_unix_ms) {
  const ConnectorKind* kind = Find(spec->kind());
  if (kind != nullptr && kind->stamp != nullptr) kind->stamp(spec, now_unix_ms);
}

bool SameSourceSpec(const proto::SourceSpec& recorded, const proto::SourceSpec& spec) {
  proto::SourceSpec compare = spec;
  const ConnectorKind* kind = Find(spec.kind());
  if (kind != nullptr && kind->copy_stamp != nullptr) kind->copy_stamp(recorded, &compare);
  return recorded.SerializeAsString() == compare.SerializeAsString();
}

int64_t InitialNextOffset(const proto::SourceSpec& spec) {
  const ConnectorKind* kind = Find(spec.kind());
  return kind != nullptr ? kind->initial_next_offset : 0;
}

bool IsReplayable(const proto::SourceSpec& spec) {
  const ConnectorKind* kind = Find(spec.kind());
  return kind != nullptr && kind->replayable;
}

bool CommitsPositions(const proto::SourceSpec& spec) {
  const ConnectorKind* kind = Find(spec.kind());
  return kind != nullptr && kind->commits_positions;
}

Result<proto::SourceKind> SourceKindFromName(std::string_view name) {
  for (const ConnectorKind* k : kKinds) {
    if (k->name == name) return k->kind;
  }
  return absl::InvalidArgumentError(fmt::format("'{}' is not {}", name, KindList()));
}

std::vector<std::string> SourceKindNames() {
  std::vector<std::string> names;
  for (const ConnectorKind* k : kKinds) names.emplace_back(k->name);
  return names;
}

Result<std::unique_ptr<SourceConnector>> SourceConnector::Create(const proto::SourceSpec& spec, Clock* clock) {
  const ConnectorKind* kind = Find(spec.kind());
  if (kind == nullptr) return SpecError(spec, "kind", "must be " + KindList());
  return kind->create(spec, clock);
}

Status SourceConnector::CheckPartition(int32_t partition) const {
  if (partition < 0 || partition >= spec_.partitions()) {
    return SpecError(spec_, "partitions",
                     fmt::format("no partition {} (the source has {})", partition, spec_.partitions()));
  }
  return absl::OkStatus();
}

bool IsDataLossPolicy(std::string_view policy) {
  return policy.empty() || policy == "fail" || policy == "skip";
}

bool SkipsLostData(const proto::SourceSpec& spec) { return spec.on_data_loss() == "skip"; }

Result<std::pair<int64_t, int64_t>> SourceConnector::HeldRange(int32_t /*partition*/) {
  return absl::UnimplementedError(fmt::format("source '{}': its kind keeps no offsets to ask about", spec_.name()));
}

Status SourceConnector::CommitPositions(const std::string& /*group*/,
                                        const std::map<int32_t, int64_t>& /*next_offsets*/) {
  return absl::OkStatus();
}

}  // namespace sluice::source
