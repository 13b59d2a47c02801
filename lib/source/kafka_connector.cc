// Kafka's connector: exact offset ranges of one topic through librdkafka's
// simple consumer (KafkaSource). Replayable; positions are committed to a
// consumer group.
//
// Consumers are made lazily and kept: a receiver's reader owns one; ranges
// read again (ReadRange), partition counts and start offsets borrow an idle
// one and give it back, so recomputing many blocks does not connect once per
// block. At most kMaxIdleConsumers wait, and a waiting consumer fetches
// nothing (StopFetching), so the pool holds no data.
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "lib/common/kafka_properties.h"
#include "lib/source/internal/connector_kind.h"
#include "lib/source/kafka_source.h"

namespace sluice::source {
namespace {

using internal::SpecError;

constexpr size_t kMaxIdleConsumers = 2;
constexpr size_t kMaxCommitters = 8;  // consumer groups committed to, per connector
constexpr int kMetadataTimeoutMs = 5'000;
constexpr auto kReadStep = std::chrono::milliseconds(500);

KafkaSourceOptions OptionsOf(const proto::SourceSpec& spec) {
  KafkaSourceOptions o{.name = spec.name(),
                       .brokers = spec.kafka().brokers(),
                       .topic = spec.kafka().topic(),
                       .max_event_bytes = spec.max_event_bytes()};
  for (const auto& [k, v] : spec.kafka().properties()) o.consumer_config[k] = v;
  return o;
}

// A receiver's reader: one consumer, owned, on one partition.
class KafkaPartitionReader final : public PartitionReader {
 public:
  KafkaPartitionReader(std::unique_ptr<KafkaSource> consumer, int32_t partition)
      : consumer_(std::move(consumer)), reader_(NewKafkaReader(consumer_.get(), partition)) {}
  Result<int64_t> ReadInto(int64_t max_records, int timeout_ms, format::BlockBuilder* builder) override {
    return reader_->ReadInto(max_records, timeout_ms, builder);
  }
  bool replayable() const override { return true; }
  int64_t EndOffset() const override { return reader_->EndOffset(); }

 private:
  const std::unique_ptr<KafkaSource> consumer_;
  const std::unique_ptr<PartitionReader> reader_;  // uses consumer_; destroyed first
};

class KafkaConnector final : public SourceConnector {
 public:
  explicit KafkaConnector(const proto::SourceSpec& spec) : SourceConnector(spec), options_(OptionsOf(spec)) {}

  Result<int32_t> Partitions() override {
    if (spec().partitions() > 0) return spec().partitions();
    ASSIGN_OR_RETURN(std::unique_ptr<KafkaSource> consumer, Borrow());
    Result<int32_t> n = consumer->Partitions(kMetadataTimeoutMs);
    GiveBack(std::move(consumer));
    return n;
  }

  Result<OpenedReader> OpenReader(int32_t partition, int64_t offset) override {
    RETURN_IF_ERROR(CheckPartition(partition));
    ASSIGN_OR_RETURN(std::unique_ptr<KafkaSource> consumer, Borrow());
    if (offset < 0) {
      Result<int64_t> start = consumer->StartOffset(partition, spec().kafka().start(), kMetadataTimeoutMs);
      if (!start.ok()) {
        GiveBack(std::move(consumer));
        return start.status();
      }
      offset = *start;
    }
    return OpenedReader{std::make_unique<KafkaPartitionReader>(std::move(consumer), partition), offset};
  }

  Result<format::Block> ReadRange(int32_t partition, int64_t start_offset, int64_t end_offset,
                          std::chrono::milliseconds timeout) override {
    RETURN_IF_ERROR(CheckPartition(partition));
    ASSIGN_OR_RETURN(std::unique_ptr<KafkaSource> consumer, Borrow());
    format::BlockBuilder builder(spec().name(), partition, start_offset);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Status st = absl::OkStatus();
    while (st.ok() && builder.next_offset() < end_offset) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      st = consumer->ReadInto(partition, end_offset, end_offset - builder.next_offset(),
                              static_cast<int>(std::min(left, kReadStep).count()), &builder)
               .status();
    }
    GiveBack(std::move(consumer));
    RETURN_IF_ERROR(st);
    if (builder.next_offset() < end_offset) {
      return absl::DataLossError(fmt::format(
          "source '{}': partition {} offsets {}..{}: from {} not delivered by the brokers within {} ms",
          spec().name(), partition, start_offset, end_offset, builder.next_offset(), timeout.count()));
    }
    return builder.Cut();
  }

  Result<std::pair<int64_t, int64_t>> HeldRange(int32_t partition) override {
    RETURN_IF_ERROR(CheckPartition(partition));
    ASSIGN_OR_RETURN(std::unique_ptr<KafkaSource> consumer, Borrow());
    Result<std::pair<int64_t, int64_t>> marks = consumer->Watermarks(partition, kMetadataTimeoutMs);
    GiveBack(std::move(consumer));
    return marks;
  }

  Status CommitPositions(const std::string& group, const std::map<int32_t, int64_t>& next_offsets) override {
    if (next_offsets.empty()) return absl::OkStatus();
    absl::MutexLock lock(&commit_mu_);
    auto it = committers_.find(group);
    if (it == committers_.end()) {
      ASSIGN_OR_RETURN(std::unique_ptr<KafkaOffsetCommitter> made, KafkaOffsetCommitter::Create(options_, group));
      if (committers_.size() >= kMaxCommitters) committers_.erase(committers_.begin());
      it = committers_.emplace(group, std::move(made)).first;
    }
    return it->second->Commit(next_offsets);
  }

 private:
  // An idle consumer, or a new one.
  Result<std::unique_ptr<KafkaSource>> Borrow() {
    {
      absl::MutexLock lock(&mu_);
      if (!idle_.empty()) {
        std::unique_ptr<KafkaSource> c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    return KafkaSource::Create(options_);
  }

  void GiveBack(std::unique_ptr<KafkaSource> consumer) {
    consumer->StopFetching();
    {
      absl::MutexLock lock(&mu_);
      if (idle_.size() < kMaxIdleConsumers) {
        idle_.push_back(std::move(consumer));
        return;
      }
    }
    consumer.reset();  // one too many: closed outside the lock
  }

  const KafkaSourceOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<KafkaSource>> idle_ ABSL_GUARDED_BY(mu_);
  absl::Mutex commit_mu_;  // also serialises the commits: a committer is used by one thread
  std::map<std::string, std::unique_ptr<KafkaOffsetCommitter>> committers_ ABSL_GUARDED_BY(commit_mu_);
};

// Every consumer setting is checked as librdkafka would take it, so a bad
// one is refused with the spec rather than by each receiver.
Status CheckSettings(const proto::SourceSpec& spec) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[512];
  Status st = absl::OkStatus();
  auto set = [&](const std::string& field, const std::string& key, const std::string& value) {
    if (st.ok() && rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      st = SpecError(spec, field, errstr);
    }
  };
  set("kafka.brokers", "bootstrap.servers", spec.kafka().brokers());
  for (const auto& [k, v] : spec.kafka().properties()) {
    if (Status refused = CheckKafkaProperty(k, "kafka.properties"); st.ok() && !refused.ok()) {
      st = absl::InvalidArgumentError(fmt::format("source '{}': {}", spec.name(), std::string(refused.message())));
    }
    set("kafka.properties." + k, k, v);
  }
  rd_kafka_conf_destroy(conf);
  return st;
}

Status Normalize(proto::SourceSpec* spec) {
  proto::KafkaSourceSpec* k = spec->mutable_kafka();
  if (k->brokers().empty()) return SpecError(*spec, "kafka.brokers", "must not be empty");
  if (k->topic().empty()) return SpecError(*spec, "kafka.topic", "must not be empty");
  if (k->start().empty()) k->set_start("earliest");
  if (k->start() != "earliest" && k->start() != "latest" && k->start() != "committed") {
    return SpecError(*spec, "kafka.start", fmt::format("'{}' is not earliest, latest or committed", k->start()));
  }
  if (k->start() == "committed" && !k->properties().contains("group.id")) {
    return SpecError(*spec, "kafka.properties.group.id", "start 'committed' needs the group whose offsets to use");
  }
  // 0: the topic's partition count, asked of the brokers when the source is registered.
  if (spec->partitions() < 0) return SpecError(*spec, "partitions", "must not be negative");
  return CheckSettings(*spec);
}

Result<std::unique_ptr<SourceConnector>> Create(const proto::SourceSpec& spec, Clock* /*clock*/) {
  RETURN_IF_ERROR(CheckSettings(spec));
  return std::unique_ptr<SourceConnector>(new KafkaConnector(spec));
}

}  // namespace

namespace internal {
const ConnectorKind kKafkaKind{.kind = proto::SOURCE_KIND_KAFKA,
                               .name = "kafka",
                               .replayable = true,
                               .commits_positions = true,
                               .initial_next_offset = -1,  // the first reader's start offset
                               .default_replication = 1,
                               .normalize = &Normalize,
                               .create = &Create};
}  // namespace internal

}  // namespace sluice::source
