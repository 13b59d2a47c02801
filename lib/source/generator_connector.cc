// The generator's connector: a seeded GeneratorSource made from the spec.
// Replayable — any range is computed again from (seed, partition, offset).
#include <algorithm>

#include "lib/source/generator_source.h"
#include "lib/source/internal/connector_kind.h"

namespace sluice::source {
namespace {

using internal::SpecError;

constexpr int32_t kMinPayloadBytes = 96;
constexpr int32_t kMaxPayloadBytes = 1 << 20;
constexpr int64_t kMaxKeys = 99'999'999;

GeneratorOptions OptionsOf(const proto::SourceSpec& spec) {
  const proto::GeneratorSourceSpec& g = spec.generator();
  return {.name = spec.name(),
          .seed = g.seed(),
          .partitions = spec.partitions(),
          .rate_per_partition = g.rate_per_partition(),
          .num_keys = g.num_keys(),
          .payload_size = g.payload_bytes(),
          .available_from_unix_ms = g.available_from_unix_ms()};
}

class GeneratorConnector final : public SourceConnector {
 public:
  GeneratorConnector(const proto::SourceSpec& spec, Clock* clock)
      : SourceConnector(spec), generator_(OptionsOf(spec), clock) {}

  Result<int32_t> Partitions() override { return spec().partitions(); }

  Result<OpenedReader> OpenReader(int32_t partition, int64_t offset) override {
    RETURN_IF_ERROR(CheckPartition(partition));
    return OpenedReader{NewGeneratorReader(&generator_, partition), std::max<int64_t>(offset, 0)};
  }

  Result<format::Block> ReadRange(int32_t partition, int64_t start_offset, int64_t end_offset,
                          std::chrono::milliseconds /*timeout*/) override {
    RETURN_IF_ERROR(CheckPartition(partition));
    format::BlockBuilder builder(spec().name(), partition, start_offset);
    const int64_t n = std::max<int64_t>(0, end_offset - start_offset);
    builder.Reserve(static_cast<size_t>(std::min<int64_t>(n, 1 << 20)) * (generator_.options().payload_size + 4));
    generator_.ReadInto(partition, end_offset, n, &builder);
    if (builder.next_offset() < end_offset) {
      // Paced, and the range is not available yet: never a short block.
      return absl::DataLossError(fmt::format("source '{}': partition {} offsets {}..{}: from {} not available yet",
                                             spec().name(), partition, start_offset, end_offset,
                                             builder.next_offset()));
    }
    return builder.Cut();
  }

 private:
  const GeneratorSource generator_;
};

Status Normalize(proto::SourceSpec* spec) {
  proto::GeneratorSourceSpec* g = spec->mutable_generator();
  if (spec->partitions() == 0) spec->set_partitions(1);
  if (g->seed() == 0) g->set_seed(1);
  if (g->num_keys() == 0) g->set_num_keys(100'000);
  if (g->payload_bytes() == 0) g->set_payload_bytes(600);
  const int64_t max_payload = std::min<int64_t>(kMaxPayloadBytes, spec->max_event_bytes());
  if (g->payload_bytes() < kMinPayloadBytes || g->payload_bytes() > max_payload) {
    return SpecError(*spec, "generator.payload_bytes",
                     fmt::format("{} is not in {}..{} (at most max_event_bytes and 1 MiB)", g->payload_bytes(),
                                 kMinPayloadBytes, max_payload));
  }
  if (g->rate_per_partition() < 0) return SpecError(*spec, "generator.rate_per_partition", "must not be negative");
  if (g->num_keys() < 1 || g->num_keys() > kMaxKeys) {
    return SpecError(*spec, "generator.num_keys", fmt::format("{} is not in 1..{}", g->num_keys(), kMaxKeys));
  }
  return internal::CheckPartitionCount(*spec);
}

Result<std::unique_ptr<SourceConnector>> Create(const proto::SourceSpec& spec, Clock* clock) {
  RETURN_IF_ERROR_PREPEND(OptionsOf(spec).Validate(), fmt::format("source '{}'", spec.name()));
  return std::unique_ptr<SourceConnector>(new GeneratorConnector(spec, clock));
}

// The leader fixes when offsets start to become available, so every worker's
// generator paces alike.
void Stamp(proto::SourceSpec* spec, int64_t now_unix_ms) {
  if (spec->generator().available_from_unix_ms() == 0) {
    spec->mutable_generator()->set_available_from_unix_ms(now_unix_ms);
  }
}

void CopyStamp(const proto::SourceSpec& from, proto::SourceSpec* to) {
  to->mutable_generator()->set_available_from_unix_ms(from.generator().available_from_unix_ms());
}

}  // namespace

namespace internal {
const ConnectorKind kGeneratorKind{.kind = proto::SOURCE_KIND_GENERATOR,
                                   .name = "generator",
                                   .replayable = true,
                                   .commits_positions = false,
                                   .initial_next_offset = 0,
                                   .default_replication = 1,
                                   .normalize = &Normalize,
                                   .create = &Create,
                                   .stamp = &Stamp,
                                   .copy_stamp = &CopyStamp};
}  // namespace internal

}  // namespace sluice::source
