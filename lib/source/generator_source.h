// GeneratorSource: a deterministic, seeded event source, replayable by
// offset — what the benchmarks and the demo read when no Kafka is at hand.
//
// Module sluice::source owns it. The event at (partition p, offset o) is a
// pure function of (seed, p, o): a JSON object padded to `payload_size` bytes,
//
//   {"id":"<p>-<o>","key":"k<key>","ts":<event time ms>,"v":<value>,"pad":"xx…"}
//
// with key = a hash of (seed, p, o) modulo num_keys, value likewise, and the
// event time start_time_ms + o * 1000 / rate_per_partition (or + o, unpaced).
// So any block can be produced again from its lineage, exactly, like Kafka.
// With a rate, offsets become available as wall time passes (from `clock`).
//
// Thread-compatible; one reader per partition.
#pragma once

#include <cstdint>
#include <string>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/format/block.h"

namespace sluice::source {

struct GeneratorOptions {
  std::string name = "generator";
  uint64_t seed = 1;
  int32_t partitions = 1;
  int64_t rate_per_partition = 0;  // events/s; 0: as fast as read
  int64_t num_keys = 100'000;
  int32_t payload_size = 600;      // bytes per event (>= 96)
  int64_t start_time_ms = 1'700'000'000'000;
  // With a rate: offsets become available as wall time passes from here, so
  // readers in different processes agree; 0: from the source's construction.
  int64_t available_from_unix_ms = 0;

  [[nodiscard]] Status Validate() const;
};

class GeneratorSource {
 public:
  GeneratorSource(GeneratorOptions options, Clock* clock);

  const GeneratorOptions& options() const { return options_; }

  // Writes event (partition, offset) to `out` (options().payload_size bytes).
  void Event(int32_t partition, int64_t offset, char* out) const;
  std::string EventString(int32_t partition, int64_t offset) const;

  // Offsets of `partition` available now: [0, Available()).
  int64_t Available(int32_t partition) const;

  // Appends events [builder.next_offset(), min(end_offset, Available)) to the
  // builder, at most max_records. Returns how many were added.
  int64_t ReadInto(int32_t partition, int64_t end_offset, int64_t max_records,
                   format::BlockBuilder* builder) const;

 private:
  const GeneratorOptions options_;
  Clock* const clock_;
  const Clock::TimePoint started_;
  std::string template_;  // the padded event with its variable fields blank
};

}  // namespace sluice::source
