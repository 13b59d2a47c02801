#include "lib/sink/kafka_sink.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <charconv>
#include <chrono>

#include "lib/common/kafka_properties.h"

namespace sluice::sink {
namespace {

// Together well under the leader's RunTask deadline (60 s), so a task the
// leader has given up on has ended before it is tried elsewhere.
constexpr int kInitTimeoutMs = 10'000;
constexpr int kCommitTimeoutMs = 20'000;
constexpr int kReadTimeoutMs = 10'000;
constexpr int kTransactionTimeoutMs = 60'000;

constexpr char kJobHeader[] = "sluice.job";
constexpr char kBatchHeader[] = "sluice.batch";

Status SetAll(rd_kafka_conf_t* conf, const std::vector<std::pair<std::string, std::string>>& settings) {
  char errstr[512];
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(fmt::format("kafka sink: {}: {}", k, errstr));
    }
  }
  return absl::OkStatus();
}

Result<rd_kafka_t*> NewClient(rd_kafka_type_t type, const proto::KafkaSinkSpec& spec,
                              std::vector<std::pair<std::string, std::string>> settings) {
  std::vector<std::pair<std::string, std::string>> all = {{"bootstrap.servers", spec.brokers()}};
  for (const auto& [k, v] : spec.properties()) {
    RETURN_IF_ERROR(CheckKafkaProperty(k, "sink.kafka.properties"));
    all.emplace_back(k, v);
  }
  for (auto& s : settings) all.push_back(std::move(s));
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (Status st = SetAll(conf, all); !st.ok()) {
    rd_kafka_conf_destroy(conf);
    return st;
  }
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));  // owns conf on success
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(fmt::format("kafka sink: {}", errstr));
  }
  return rk;
}

std::string_view Header(const rd_kafka_message_t* m, const char* name) {
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  return {static_cast<const char*>(value), size};
}

}  // namespace

Result<std::unique_ptr<KafkaPartitionWriter>> KafkaPartitionWriter::Open(const proto::KafkaSinkSpec& spec,
                                                                         const std::string& job_id,
                                                                         int32_t partition) {
  std::unique_ptr<KafkaPartitionWriter> w(new KafkaPartitionWriter(spec, job_id, partition));
  ASSIGN_OR_RETURN(w->producer_, NewClient(RD_KAFKA_PRODUCER, spec,
                                           {{"transactional.id", fmt::format("sluice-{}-{}", job_id, partition)},
                                            {"transaction.timeout.ms", std::to_string(kTransactionTimeoutMs)},
                                            {"linger.ms", "5"}}));
  RETURN_IF_ERROR(w->FromTxnError(rd_kafka_init_transactions(w->producer_, kInitTimeoutMs), "init transactions"));
  return w;
}

KafkaPartitionWriter::~KafkaPartitionWriter() {
  if (producer_ != nullptr) rd_kafka_destroy(producer_);
}

Status KafkaPartitionWriter::FromTxnError(void* opaque, std::string_view step) {
  auto* error = static_cast<rd_kafka_error_t*>(opaque);
  if (error == nullptr) return absl::OkStatus();
  const std::string what = fmt::format("kafka sink {}[{}] (job {}): {}: {}", spec_.topic(), partition_, job_id_,
                                       step, rd_kafka_error_string(error));
  const bool fatal = rd_kafka_error_is_fatal(error);
  const bool abortable = rd_kafka_error_txn_requires_abort(error);
  rd_kafka_error_destroy(error);
  if (fatal) return absl::FailedPreconditionError(what + " (this producer is fenced or failed)");
  if (abortable) return absl::AbortedError(what);
  return absl::UnavailableError(what);
}

Result<int32_t> KafkaPartitionWriter::TopicPartitions() {
  rd_kafka_topic_t* topic = rd_kafka_topic_new(producer_, spec_.topic().c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(producer_, 0, topic, &md, kReadTimeoutMs);
  rd_kafka_topic_destroy(topic);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(
        fmt::format("kafka sink: metadata of topic {}: {}", spec_.topic(), rd_kafka_err2str(err)));
  }
  int32_t n = 0;
  Status st;
  if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    n = md->topics[0].partition_cnt;
  } else {
    st = absl::FailedPreconditionError(fmt::format(
        "kafka sink: topic {}: {}", spec_.topic(),
        md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not in the broker's metadata"));
  }
  rd_kafka_metadata_destroy(md);
  if (!st.ok()) return st;
  return n;
}

Result<int64_t> KafkaPartitionWriter::HeldBatch() {
  ASSIGN_OR_RETURN(rd_kafka_t * consumer, NewClient(RD_KAFKA_CONSUMER, spec_,
                                                    {{"group.id", "sluice-sink-" + job_id_},  // never joined
                                                     {"enable.auto.commit", "false"},
                                                     {"enable.partition.eof", "true"},
                                                     {"auto.offset.reset", "error"},
                                                     {"isolation.level", "read_committed"}}));
  auto close = [&] {
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
  };
  int64_t low = 0, high = 0;
  rd_kafka_resp_err_t err =
      rd_kafka_query_watermark_offsets(consumer, spec_.topic().c_str(), partition_, &low, &high, kReadTimeoutMs);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    close();
    return absl::UnavailableError(fmt::format("kafka sink {}[{}]: watermarks: {}", spec_.topic(), partition_,
                                              rd_kafka_err2str(err)));
  }
  // Read the tail, widening until a record of this job turns up (other jobs
  // and transaction markers may sit after it). The read must reach `high`:
  // a read_committed consumer stops at the last stable offset, before any
  // transaction still open (another job's, or a dead task's until it times
  // out), and what this job committed after that is not visible yet — then
  // the answer is UNAVAILABLE (try again), never "not held".
  int64_t held = 0;
  bool found = false;
  for (int64_t window = 64; high > low && !found; window *= 16) {
    const int64_t start = std::max(low, high - window);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, spec_.topic().c_str(), partition_)->offset = start;
    err = rd_kafka_assign(consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      close();
      return absl::UnavailableError(
          fmt::format("kafka sink {}[{}]: assign: {}", spec_.topic(), partition_, rd_kafka_err2str(err)));
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kReadTimeoutMs);
    bool eof = false;
    while (!eof && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, 200);
      if (m == nullptr) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        eof = m->offset >= high;  // else at the last stable offset: wait for the open transaction
      } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        err = m->err;
        eof = true;
      } else if (Header(m, kJobHeader) == job_id_) {
        const std::string_view b = Header(m, kBatchHeader);
        int64_t batch = 0;
        std::from_chars(b.data(), b.data() + b.size(), batch);
        held = batch;
        found = true;
      }
      rd_kafka_message_destroy(m);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || !eof) {
      close();
      return absl::UnavailableError(fmt::format(
          "kafka sink {}[{}]: reading the tail from {} to {}: {}", spec_.topic(), partition_, start, high,
          err != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(err)
                                            : "not reached in time (a transaction still open in the partition?)"));
    }
    if (start == low) break;
  }
  close();
  return held;
}

Status KafkaPartitionWriter::Begin() { return FromTxnError(rd_kafka_begin_transaction(producer_), "begin"); }

Status KafkaPartitionWriter::Produce(int64_t batch_id, std::string_view lines) {
  const std::string batch = std::to_string(batch_id);
  size_t pos = 0;
  while (pos < lines.size()) {
    size_t end = lines.find('\n', pos);
    if (end == std::string_view::npos) end = lines.size();
    const std::string_view line = lines.substr(pos, end - pos);
    pos = end + 1;
    for (;;) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          producer_, RD_KAFKA_V_TOPIC(spec_.topic().c_str()), RD_KAFKA_V_PARTITION(partition_),
          RD_KAFKA_V_VALUE(const_cast<char*>(line.data()), line.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_HEADER(kJobHeader, job_id_.data(), static_cast<ssize_t>(job_id_.size())),
          RD_KAFKA_V_HEADER(kBatchHeader, batch.data(), static_cast<ssize_t>(batch.size())), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(producer_, 50);
        continue;
      }
      const std::string what =
          fmt::format("kafka sink {}[{}] (job {}): produce: {}", spec_.topic(), partition_, job_id_, rd_kafka_err2str(err));
      if (err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR__FATAL) {
        return absl::FailedPreconditionError(what + " (this producer is fenced or failed)");
      }
      return absl::AbortedError(what);
    }
  }
  rd_kafka_poll(producer_, 0);
  return absl::OkStatus();
}

Status KafkaPartitionWriter::Commit() {
  return FromTxnError(rd_kafka_commit_transaction(producer_, kCommitTimeoutMs), "commit");
}

void KafkaPartitionWriter::Abort() {
  IgnoreError(FromTxnError(rd_kafka_abort_transaction(producer_, kCommitTimeoutMs), "abort"),
              "a producer that cannot abort is dropped; opening the next fences it");
}

namespace {

class KafkaSink : public Sink {
 public:
  explicit KafkaSink(proto::KafkaSinkSpec spec) : spec_(std::move(spec)) {}

  Result<WriteResult> Write(const WriteRequest& request, std::string_view lines) override {
    WriteResult result{.name = fmt::format("{}[{}]", spec_.topic(), request.output_partition)};
    if (lines.empty()) return result;  // nothing to write, nothing to fence: a re-run writes nothing too
    Slot* slot;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::unique_ptr<Slot>& s = slots_[{request.job_id, request.output_partition}];
      if (!s) s = std::make_unique<Slot>();
      slot = s.get();
    }
    std::lock_guard<std::mutex> lock(slot->mu);
    Status last;
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!slot->writer) {
        ASSIGN_OR_RETURN(slot->writer,
                         KafkaPartitionWriter::Open(spec_, request.job_id, request.output_partition));
        ASSIGN_OR_RETURN(int32_t partitions, slot->writer->TopicPartitions());
        if (request.output_partition >= partitions) {
          slot->writer.reset();
          return absl::FailedPreconditionError(fmt::format(
              "kafka sink: topic {} has {} partitions; output partition {} needs at least {} (one per partition the "
              "job reads, or per reduce partition for a keyed job)",
              spec_.topic(), partitions, request.output_partition, request.output_partition + 1));
        }
      }
      last = WriteOnce(slot->writer.get(), request, lines, &result);
      if (last.ok()) return result;
      if (request.still_current && !request.still_current().ok()) return last;  // a zombie: no second try
      if (!absl::IsFailedPrecondition(last)) slot->writer->Abort();
      slot->writer.reset();  // the next one fences whatever else writes this partition
    }
    return absl::UnavailableError(last.message());
  }

 private:
  struct Slot {
    std::mutex mu;
    std::unique_ptr<KafkaPartitionWriter> writer;  // guarded by mu
  };

  static Status WriteOnce(KafkaPartitionWriter* w, const WriteRequest& request, std::string_view lines,
                          WriteResult* result) {
    ASSIGN_OR_RETURN(int64_t held, w->HeldBatch());
    if (held >= request.batch_id) {
      result->skipped = true;  // a previous attempt committed it
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(w->Begin());
    RETURN_IF_ERROR(w->Produce(request.batch_id, lines));
    if (request.still_current) {
      if (Status current = request.still_current(); !current.ok()) {
        w->Abort();
        return absl::FailedPreconditionError(fmt::format("kafka sink: batch {} not committed, the task is fenced: {}",
                                                         request.batch_id, std::string(current.message())));
      }
    }
    return w->Commit();
  }

  const proto::KafkaSinkSpec spec_;
  std::mutex mu_;
  std::map<std::pair<std::string, int32_t>, std::unique_ptr<Slot>> slots_;  // guarded by mu_
};

}  // namespace

Result<std::unique_ptr<Sink>> OpenKafkaSink(const proto::KafkaSinkSpec& spec) {
  if (spec.brokers().empty() || spec.topic().empty()) {
    return absl::InvalidArgumentError("kafka sink: needs brokers and topic");
  }
  return std::unique_ptr<Sink>(new KafkaSink(spec));
}

}  // namespace sluice::sink
