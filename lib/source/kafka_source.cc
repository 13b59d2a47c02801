#include "lib/source/kafka_source.h"

#include <librdkafka/rdkafka.h>

#include <vector>

#include "lib/common/kafka_properties.h"

namespace sluice::source {

Result<std::unique_ptr<KafkaSource>> KafkaSource::Create(KafkaSourceOptions options) {
  std::unique_ptr<KafkaSource> s(new KafkaSource(std::move(options)));
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  auto set = [&](rd_kafka_conf_t* c, const std::string& k, const std::string& v) -> Status {
    if (rd_kafka_conf_set(c, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(fmt::format("kafka source {}: {}: {}", s->options_.name, k, errstr));
    }
    return absl::OkStatus();
  };
  Status st = set(conf, "bootstrap.servers", s->options_.brokers);
  if (st.ok()) st = set(conf, "group.id", "sluice-" + s->options_.name);  // required; never joined
  if (st.ok()) st = set(conf, "enable.auto.commit", "false");
  if (st.ok()) st = set(conf, "enable.partition.eof", "false");
  // Read-ahead bounded in bytes: a receiver held back by its rate limit
  // should not sit on librdkafka's default 64 MiB prefetch per partition
  // (docs/jobs.md "Backpressure"). The source's properties may override it.
  if (st.ok()) st = set(conf, "queued.max.messages.kbytes", std::to_string(kReadAheadKBytes));
  for (const auto& [k, v] : s->options_.consumer_config) {
    if (st.ok()) st = CheckKafkaProperty(k, "kafka.properties");
    if (st.ok()) st = set(conf, k, v);
  }
  if (!st.ok()) {
    rd_kafka_conf_destroy(conf);
    return st;
  }
  s->rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (s->rk_ == nullptr) {
    return absl::InvalidArgumentError(fmt::format("kafka source {}: {}", s->options_.name, errstr));
  }
  rd_kafka_topic_conf_t* tconf = rd_kafka_topic_conf_new();
  // A start offset that is gone must be an error, never a silent jump.
  rd_kafka_topic_conf_set(tconf, "auto.offset.reset", "error", errstr, sizeof(errstr));
  s->rkt_ = rd_kafka_topic_new(s->rk_, s->options_.topic.c_str(), tconf);
  return s;
}

KafkaSource::~KafkaSource() {
  for (const auto& [p, offset] : position_) rd_kafka_consume_stop(rkt_, p);
  if (rkt_ != nullptr) rd_kafka_topic_destroy(rkt_);
  if (rk_ != nullptr) rd_kafka_destroy(rk_);
}

Result<int32_t> KafkaSource::Partitions(int timeout_ms) {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk_, 0, rkt_, &md, timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(fmt::format("kafka source {}: metadata of {}: {}", options_.name,
                                              options_.topic, rd_kafka_err2str(err)));
  }
  Status st = absl::OkStatus();
  int32_t n = 0;
  if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    st = absl::NotFoundError(fmt::format("kafka source {}: topic {}: {}", options_.name, options_.topic,
                                         md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err)
                                                            : "no such topic"));
  } else {
    n = md->topics[0].partition_cnt;
  }
  rd_kafka_metadata_destroy(md);
  if (!st.ok()) return st;
  return n;
}

Result<std::pair<int64_t, int64_t>> KafkaSource::Watermarks(int32_t partition, int timeout_ms) {
  int64_t low = 0, high = 0;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk_, options_.topic.c_str(), partition,
                                                             &low, &high, timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(fmt::format("kafka source {}: watermarks of {}[{}]: {}", options_.name,
                                              options_.topic, partition, rd_kafka_err2str(err)));
  }
  return std::pair(low, high);
}

int64_t KafkaSource::CachedHighWatermark(int32_t partition) const {
  int64_t low = -1, high = -1;
  if (rd_kafka_get_watermark_offsets(rk_, options_.topic.c_str(), partition, &low, &high) !=
      RD_KAFKA_RESP_ERR_NO_ERROR) {
    return -1;
  }
  return high >= 0 ? high : -1;  // RD_KAFKA_OFFSET_INVALID (-1001) until a fetch answered
}

void KafkaSource::StopFetching() {
  for (const auto& [p, offset] : position_) rd_kafka_consume_stop(rkt_, p);
  position_.clear();
}

Status KafkaSource::StartAt(int32_t partition, int64_t offset) {
  auto it = position_.find(partition);
  if (it != position_.end()) {
    if (it->second == offset) return absl::OkStatus();
    rd_kafka_consume_stop(rkt_, partition);
    position_.erase(it);
  }
  if (rd_kafka_consume_start(rkt_, partition, offset) != 0) {
    return absl::InternalError(fmt::format("kafka source {}: cannot start {}[{}] at {}: {}", options_.name,
                                           options_.topic, partition, offset,
                                           rd_kafka_err2str(rd_kafka_last_error())));
  }
  position_[partition] = offset;
  return absl::OkStatus();
}

Result<int64_t> KafkaSource::ReadInto(int32_t partition, int64_t end_offset, int64_t max_records,
                                      int timeout_ms, format::BlockBuilder* builder) {
  const int64_t from = builder->next_offset();
  const int64_t want = std::min(end_offset - from, max_records);
  if (want <= 0) return int64_t{0};
  RETURN_IF_ERROR(StartAt(partition, from));
  std::vector<rd_kafka_message_t*> msgs(static_cast<size_t>(std::min<int64_t>(want, 10'000)));
  ssize_t n = rd_kafka_consume_batch(rkt_, partition, timeout_ms, msgs.data(), msgs.size());
  if (n < 0) {
    return absl::UnavailableError(fmt::format("kafka source {}: reading {}[{}]: {}", options_.name,
                                              options_.topic, partition,
                                              rd_kafka_err2str(rd_kafka_last_error())));
  }
  Status st = absl::OkStatus();
  int64_t added = 0;
  for (ssize_t i = 0; i < n; ++i) {
    rd_kafka_message_t* m = msgs[i];
    if (st.ok()) {
      const int64_t expected = builder->next_offset();
      if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        // Name the range that is gone: the broker's first offset now ends it.
        Result<std::pair<int64_t, int64_t>> held = Watermarks(partition, 2'000);
        if (held.ok() && held->first > expected) {
          st = absl::DataLossError(fmt::format(
              "kafka source {}: {}[{}] offsets {}..{} are no longer held by the broker (it holds {}..{}; "
              "retention?): {}",
              options_.name, options_.topic, partition, expected, held->first - 1, held->first, held->second,
              rd_kafka_message_errstr(m)));
        } else {
          st = absl::DataLossError(fmt::format(
              "kafka source {}: {}[{}] offsets from {} are no longer held by the broker (retention?): {}",
              options_.name, options_.topic, partition, expected, rd_kafka_message_errstr(m)));
        }
      } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        st = absl::UnavailableError(fmt::format("kafka source {}: {}[{}]: {}", options_.name, options_.topic,
                                                partition, rd_kafka_message_errstr(m)));
      } else if (m->offset != expected) {
        st = absl::DataLossError(fmt::format("kafka source {}: {}[{}] skipped offsets {}..{}", options_.name,
                                             options_.topic, partition, expected, m->offset - 1));
      } else if (m->offset < end_offset) {
        if (options_.max_event_bytes > 0 && static_cast<int64_t>(m->len) > options_.max_event_bytes) {
          builder->AddDeadLetter(fmt::format("message of {} bytes is over the {}-byte limit", m->len,
                                             options_.max_event_bytes));
        } else {
          builder->Add(std::string_view(static_cast<const char*>(m->payload), m->len));
        }
        ++added;
      }
    }
    rd_kafka_message_destroy(m);
  }
  if (!st.ok() || added < n) {
    // An error, or records past end_offset were fetched: start afresh at the
    // builder's offset next time.
    rd_kafka_consume_stop(rkt_, partition);
    position_.erase(partition);
    if (!st.ok()) return st;
  } else {
    position_[partition] = from + n;  // the consumer continues right there
  }
  return added;
}

Result<int64_t> KafkaSource::StartOffset(int32_t partition, const std::string& start, int timeout_ms) {
  if (start == "committed") {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, options_.topic.c_str(), partition);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk_, list, timeout_ms);
    const int64_t offset = list->elems[0].offset;
    const rd_kafka_resp_err_t perr = list->elems[0].err;
    rd_kafka_topic_partition_list_destroy(list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || perr != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::UnavailableError(fmt::format("kafka source {}: committed offset of {}[{}]: {}", options_.name,
                                                options_.topic, partition,
                                                rd_kafka_err2str(err != RD_KAFKA_RESP_ERR_NO_ERROR ? err : perr)));
    }
    if (offset >= 0) return offset;
    // Nothing committed yet for this group: from the earliest offset held.
  }
  ASSIGN_OR_RETURN(auto marks, Watermarks(partition, timeout_ms));
  return start == "latest" ? marks.second : marks.first;
}

Result<std::unique_ptr<KafkaOffsetCommitter>> KafkaOffsetCommitter::Create(const KafkaSourceOptions& source,
                                                                          const std::string& group) {
  std::unique_ptr<KafkaOffsetCommitter> c(new KafkaOffsetCommitter(source.topic, group));
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::map<std::string, std::string> settings = source.consumer_config;
  settings["bootstrap.servers"] = source.brokers;
  settings["group.id"] = group;
  settings["enable.auto.commit"] = "false";
  for (const auto& [k, v] : settings) {
    if (Status refused = CheckKafkaProperty(k, "kafka.properties"); !refused.ok()) {
      rd_kafka_conf_destroy(conf);
      return refused;
    }
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(fmt::format("kafka offset commits of {}: {}: {}", source.name, k, errstr));
    }
  }
  c->rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (c->rk_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(fmt::format("kafka offset commits of {}: {}", source.name, errstr));
  }
  return c;
}

KafkaOffsetCommitter::~KafkaOffsetCommitter() {
  if (rk_ != nullptr) rd_kafka_destroy(rk_);
}

Status KafkaOffsetCommitter::Commit(const std::map<int32_t, int64_t>& offsets) {
  if (offsets.empty()) return absl::OkStatus();
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size()));
  for (const auto& [partition, offset] : offsets) {
    rd_kafka_topic_partition_list_add(list, topic_.c_str(), partition)->offset = offset;
  }
  rd_kafka_resp_err_t err = rd_kafka_commit(rk_, list, 0);
  Status st;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    st = absl::UnavailableError(fmt::format("committing offsets of {} to group {}: {}", topic_, group_,
                                            rd_kafka_err2str(err)));
  } else {
    for (int i = 0; i < list->cnt && st.ok(); ++i) {
      if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        st = absl::UnavailableError(fmt::format("committing offset {} of {}[{}] to group {}: {}",
                                                list->elems[i].offset, topic_, list->elems[i].partition, group_,
                                                rd_kafka_err2str(list->elems[i].err)));
      }
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  return st;
}

}  // namespace sluice::source
