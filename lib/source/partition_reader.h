// PartitionReader: one partition of a source, read forward into blocks — the
// interface receivers use, whatever the source.
//
// Module sluice::source owns it, with adapters for the generator and Kafka.
// A reader is replayable if a range it produced can be produced again from
// its offsets (generator, Kafka); blocks of non-replayable sources need the
// receiver WAL.
//
// Thread-compatible: one receiver drives one reader.
#pragma once

#include <memory>

#include "lib/common/status.h"
#include "lib/format/block.h"
#include "lib/source/generator_source.h"
#include "lib/source/kafka_source.h"

namespace sluice::source {

// Whether a receiver stopped by `code` must not be restarted: the data is
// gone (DATA_LOSS, OUT_OF_RANGE) or the source's spec is wrong
// (INVALID_ARGUMENT, NOT_FOUND). Anything else — the leader refused a block,
// a broker gave up — is cured by restarting at the leader's offset. The
// worker (ReceiverSet) and the leader (DataPath) decide by this one rule.
inline bool IsPermanentReadError(absl::StatusCode code) {
  return code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kInvalidArgument ||
         code == absl::StatusCode::kNotFound || code == absl::StatusCode::kOutOfRange;
}

class PartitionReader {
 public:
  virtual ~PartitionReader() = default;
  // Appends records from builder->next_offset() on, at most `max_records`,
  // waiting at most `timeout_ms` for data. Returns how many were added.
  [[nodiscard]] virtual Result<int64_t> ReadInto(int64_t max_records, int timeout_ms,
                                                 format::BlockBuilder* builder) = 0;
  virtual bool replayable() const = 0;
  // One past the source's last offset as last heard, without asking the
  // source (Kafka: the high watermark); -1 if unknown or endless.
  virtual int64_t EndOffset() const { return -1; }
};

// Reads `partition` of a generator (which must outlive the reader).
std::unique_ptr<PartitionReader> NewGeneratorReader(const GeneratorSource* generator, int32_t partition);
// Reads `partition` through a KafkaSource (which must outlive the reader).
std::unique_ptr<PartitionReader> NewKafkaReader(KafkaSource* kafka, int32_t partition);

}  // namespace sluice::source
