// KafkaSource: reads exact offset ranges of a Kafka topic's partitions into
// blocks (librdkafka's simple consumer: the driver, not Kafka's group
// coordinator, decides who reads which partition from where).
//
// Module sluice::source owns it. Offsets must run without a gap: a jump in
// offsets, or a start offset the broker no longer holds (retention), is a
// DATA_LOSS error naming the partition and the offsets — never skipped
// (auto.offset.reset is "error"). Consumer settings pass through (security
// settings included).
//
// Thread-compatible: one thread drives a KafkaSource.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "lib/common/status.h"
#include "lib/format/block.h"

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;

namespace sluice::source {

// What one consumer may fetch ahead of its reader, in KiB
// (queued.max.messages.kbytes): 16 MiB, about 30 ms of a receiver's fastest
// read here, so the bound costs no speed (bench/kafka_ingest_bench).
inline constexpr int kReadAheadKBytes = 16 * 1024;

struct KafkaSourceOptions {
  std::string name;     // the source's name in lineage
  std::string brokers;  // bootstrap.servers
  std::string topic;
  std::map<std::string, std::string> consumer_config;  // passed through
  int64_t max_event_bytes = 0;  // larger messages are dead letters; 0: no limit
};

class KafkaSource {
 public:
  // INVALID_ARGUMENT for a bad setting (naming it).
  [[nodiscard]] static Result<std::unique_ptr<KafkaSource>> Create(KafkaSourceOptions options);
  ~KafkaSource();

  // UNAVAILABLE if the brokers cannot be reached in time; NOT_FOUND if the
  // topic does not exist.
  [[nodiscard]] Result<int32_t> Partitions(int timeout_ms = 10'000);
  // {low, high}: the first offset still held and one past the last.
  [[nodiscard]] Result<std::pair<int64_t, int64_t>> Watermarks(int32_t partition,
                                                               int timeout_ms = 5'000);

  // One past the last offset of `partition` as the consumer last heard
  // from the broker (its fetch answers carry the high watermark); -1 until
  // known. Never asks the broker: cheap, for the receiver's lag.
  int64_t CachedHighWatermark(int32_t partition) const;

  // Where reading starts for `start` = earliest | latest | committed (the
  // group.id's committed offset; the earliest held if none is committed).
  [[nodiscard]] Result<int64_t> StartOffset(int32_t partition, const std::string& start, int timeout_ms = 5'000);

  // Appends records of `partition` from builder->next_offset() up to
  // `end_offset` (exclusive), at most `max_records`, waiting at most
  // `timeout_ms` for data. Returns how many were added (0: nothing yet).
  [[nodiscard]] Result<int64_t> ReadInto(int32_t partition, int64_t end_offset, int64_t max_records,
                                         int timeout_ms, format::BlockBuilder* builder);

  // Stops fetching every partition and drops what was fetched ahead, so an
  // idle consumer holds no data; the next ReadInto starts afresh.
  void StopFetching();

 private:
  explicit KafkaSource(KafkaSourceOptions options) : options_(std::move(options)) {}
  [[nodiscard]] Status StartAt(int32_t partition, int64_t offset);

  const KafkaSourceOptions options_;
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_topic_t* rkt_ = nullptr;
  std::map<int32_t, int64_t> position_;  // partition -> next offset the consumer will deliver
};

// Commits a job's positions to a Kafka consumer group — for visibility
// (lag monitoring, kafka-consumer-groups) and so a source declared with
// `start: committed` and that group.id resumes there. Sluice's own record of
// positions is its WAL; these commits follow it, after BatchCommitted.
//
// Thread-compatible.
class KafkaOffsetCommitter {
 public:
  // `source` gives brokers, topic and settings; `group` the group.id.
  [[nodiscard]] static Result<std::unique_ptr<KafkaOffsetCommitter>> Create(const KafkaSourceOptions& source,
                                                                            const std::string& group);
  ~KafkaOffsetCommitter();

  // Synchronous commit of partition -> next offset to read.
  [[nodiscard]] Status Commit(const std::map<int32_t, int64_t>& offsets);

 private:
  KafkaOffsetCommitter(std::string topic, std::string group) : topic_(std::move(topic)), group_(std::move(group)) {}
  const std::string topic_;
  const std::string group_;
  rd_kafka_t* rk_ = nullptr;
};

}  // namespace sluice::source
