// SourceConnector: one kind of source (generator, Kafka, socket) behind one
// interface, made from its SourceSpec by one factory. The leader, the
// receivers and the executors use it whatever the kind; nothing outside
// this module looks at a spec's kind.
//
// Module sluice::source owns it. Each kind is one file (generator_connector.cc,
// kafka_connector.cc, socket_connector.cc) and one line in the registry
// (source_connector.cc). The free functions answer from a spec alone,
// without connecting to anything. docs/data-path.md "Sources".
//
// Thread-safe: a connector's methods may be called from any thread. A reader
// it opens is driven by one thread and must not outlive the connector.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/format/block.h"
#include "lib/source/partition_reader.h"
#include "proto/job.pb.h"

namespace sluice::source {

// Fills a spec's defaults and checks it: INVALID_ARGUMENT naming the field,
// as in "source 'clicks': kafka.topic: must not be empty".
[[nodiscard]] Status NormalizeSourceSpec(proto::SourceSpec* spec);

// What the leader fixes when it first records a spec, so that every worker
// agrees on it (the generator's pacing origin, `now_unix_ms`).
void StampSourceSpec(proto::SourceSpec* spec, int64_t now_unix_ms);
// Whether `spec`, stamped again, is the `recorded` spec: a retry of its
// registration rather than another spec under the same name.
[[nodiscard]] bool SameSourceSpec(const proto::SourceSpec& recorded, const proto::SourceSpec& spec);

// A partition's next offset before its first block: 0, or -1 where the
// first reader decides (Kafka's `start`: earliest, latest, committed).
[[nodiscard]] int64_t InitialNextOffset(const proto::SourceSpec& spec);
// Whether a range, read once, can be read again byte for byte from its
// offsets (generator, Kafka). A partition of a source that is not replayable
// stays with its reader while the reader's worker lives, and its blocks go
// through the receiver WAL.
[[nodiscard]] bool IsReplayable(const proto::SourceSpec& spec);
// Whether consumed positions are committed back to the source (Kafka).
[[nodiscard]] bool CommitsPositions(const proto::SourceSpec& spec);
// on_data_loss: "" (meaning "fail"), "fail" or "skip" (docs/data-path.md
// "When the source loses data").
[[nodiscard]] bool IsDataLossPolicy(std::string_view policy);
// Whether offsets the source no longer holds are skipped (and recorded)
// rather than stopping the partition.
[[nodiscard]] bool SkipsLostData(const proto::SourceSpec& spec);

// The kind named `name` in job files and on sluicectl's command line;
// INVALID_ARGUMENT "'x' is not generator, kafka or socket" otherwise.
[[nodiscard]] Result<proto::SourceKind> SourceKindFromName(std::string_view name);
std::vector<std::string> SourceKindNames();

// A reader and the offset its first block starts at.
struct OpenedReader {
  std::unique_ptr<PartitionReader> reader;
  int64_t offset = 0;
};

class SourceConnector {
 public:
  // The connector of spec.kind(), for a spec NormalizeSourceSpec accepted.
  // INVALID_ARGUMENT for a bad spec or setting, naming it. Connects to
  // nothing yet. `clock` (the generator's pacing) must outlive it.
  [[nodiscard]] static Result<std::unique_ptr<SourceConnector>> Create(const proto::SourceSpec& spec, Clock* clock);

  virtual ~SourceConnector() = default;

  const proto::SourceSpec& spec() const { return spec_; }
  bool replayable() const { return IsReplayable(spec_); }

  // The spec's partition count, or, when it gives none (Kafka), the topic's,
  // asked of the brokers: UNAVAILABLE if they cannot be reached, NOT_FOUND
  // if the topic does not exist.
  [[nodiscard]] virtual Result<int32_t> Partitions() = 0;

  // A reader of `partition` whose first block starts at `offset` or, for a
  // negative offset, where the spec says reading starts (InitialNextOffset).
  // INVALID_ARGUMENT for a partition the spec does not have.
  [[nodiscard]] virtual Result<OpenedReader> OpenReader(int32_t partition, int64_t offset) = 0;

  // Reads [start_offset, end_offset) of `partition` again, in one read, into
  // one block: the lineage of lost blocks. DATA_LOSS naming the range if the
  // source cannot give every offset of it (not replayable, deleted by
  // retention, a gap, nothing there within `timeout`); UNAVAILABLE if the
  // source cannot be reached.
  [[nodiscard]] virtual Result<format::Block> ReadRange(int32_t partition, int64_t start_offset, int64_t end_offset,
                                                std::chrono::milliseconds timeout) = 0;

  // {first, end}: the first offset of `partition` the source still holds
  // and one past its last (Kafka: the low and high watermarks), asked of the
  // source. UNAVAILABLE if it cannot be reached; UNIMPLEMENTED for a kind
  // that keeps no offsets (generator, socket: nothing is ever lost there).
  [[nodiscard]] virtual Result<std::pair<int64_t, int64_t>> HeldRange(int32_t partition);

  // Records `next_offsets` (partition -> next offset to read) as `group`'s
  // position in the source (Kafka: the consumer group's committed offsets,
  // for lag monitoring and a later `start: committed`). A kind without
  // positions (CommitsPositions false) does nothing. INVALID_ARGUMENT for a
  // setting the source refuses (retrying cannot help); UNAVAILABLE otherwise.
  [[nodiscard]] virtual Status CommitPositions(const std::string& group,
                                               const std::map<int32_t, int64_t>& next_offsets);

 protected:
  explicit SourceConnector(proto::SourceSpec spec) : spec_(std::move(spec)) {}
  // INVALID_ARGUMENT unless the spec has `partition`.
  [[nodiscard]] Status CheckPartition(int32_t partition) const;

 private:
  const proto::SourceSpec spec_;
};

}  // namespace sluice::source
