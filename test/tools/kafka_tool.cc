// kafka-tool: a producer and a checking consumer, as separate processes, for tests.
//
//   kafka-tool produce --brokers B --topic T --count N [--size 600] [--rate R] [--first 0]
//                      [--json] [--malformed-every K] [--lines FILE]
//       Sends messages "id=<n>;" padded with 'x' to --size bytes, keyed by the id
//       (--json: {"id":<n>,"g":<n % 10>,"pad":"xx..."}; with --malformed-every K,
//       every id divisible by K is sent as "not json <n>" instead; --lines:
//       message n is line n mod L of FILE, e.g. text for word count),
//       ids first..first+N-1, at most R per second if --rate is given; waits for
//       every delivery report. Prints "produced=N failed=F"; exit 0 iff F == 0.
//   kafka-tool consume --brokers B --topic T --count N [--timeout-s 60] [--ready-file F]
//       Reads every partition of T from the beginning (no consumer group; the
//       ready file is written once partitions are assigned) until it has seen N
//       distinct ids, the timeout passes, or an offset is skipped, printing "progress unique=U" every
//       200 ms. An offset that is gone (retention)
//       is an error, never skipped. Prints
//       "received=R unique=U duplicates=D missing=M"; exit 0 iff M == 0 and D == 0.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"

namespace {

struct Common {
  std::string brokers;
  std::string topic;
  long count = 0;
};

rd_kafka_conf_t* NewConf(const std::string& brokers) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
  return conf;
}

void Set(rd_kafka_conf_t* conf, const char* key, const char* value) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
    std::cerr << "kafka-tool: error: " << key << ": " << errstr << "\n";
    std::exit(sluice::kExitUsage);
  }
}

long g_failed = 0;

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (g_failed++ < 5) std::cerr << "kafka-tool: delivery failed: " << rd_kafka_err2str(m->err) << "\n";
  }
}

struct ProduceOptions {
  int size = 600;
  long rate = 0;
  long first = 0;
  bool json = false;
  long malformed_every = 0;
  std::string lines_file;
  std::vector<std::string> lines;  // read from lines_file
};

std::string Payload(const ProduceOptions& o, long id) {
  std::string payload;
  if (!o.lines.empty()) return o.lines[static_cast<size_t>(id) % o.lines.size()];
  if (!o.json) {
    payload = "id=" + std::to_string(id) + ";";
    if (static_cast<int>(payload.size()) < o.size) payload.resize(o.size, 'x');
    return payload;
  }
  if (o.malformed_every > 0 && id % o.malformed_every == 0) return "not json " + std::to_string(id);
  payload = "{\"id\":" + std::to_string(id) + ",\"g\":" + std::to_string(id % 10) + ",\"pad\":\"";
  const int pad = o.size - static_cast<int>(payload.size()) - 2;
  if (pad > 0) payload.append(pad, 'x');
  payload += "\"}";
  return payload;
}

int Produce(const Common& c, const ProduceOptions& o) {
  const long rate = o.rate, first = o.first;
  rd_kafka_conf_t* conf = NewConf(c.brokers);
  Set(conf, "enable.idempotence", "true");
  Set(conf, "linger.ms", "5");
  rd_kafka_conf_set_dr_msg_cb(conf, OnDelivery);
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    std::cerr << "kafka-tool: error: " << errstr << "\n";
    return 1;
  }
  std::string payload;
  auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < c.count; ++i) {
    long id = first + i;
    payload = Payload(o, id);
    std::string key = std::to_string(id);
    while (true) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(c.topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(payload.data(), payload.size()), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk, 10);
        continue;
      }
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::cerr << "kafka-tool: produce: " << rd_kafka_err2str(err) << "\n";
        ++g_failed;
      }
      break;
    }
    rd_kafka_poll(rk, 0);
    if (rate > 0 && (i + 1) % 100 == 0) {
      auto due = start + std::chrono::microseconds((i + 1) * 1'000'000 / rate);
      std::this_thread::sleep_until(due);
    }
  }
  if (rd_kafka_flush(rk, 120'000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::cerr << "kafka-tool: flush timed out with " << rd_kafka_outq_len(rk) << " in flight\n";
    g_failed += rd_kafka_outq_len(rk);
  }
  rd_kafka_destroy(rk);
  std::cout << "produced=" << c.count << " failed=" << g_failed << std::endl;
  return g_failed == 0 ? 0 : 1;
}

int Consume(const Common& c, int timeout_s, const std::string& ready_file) {
  rd_kafka_conf_t* conf = NewConf(c.brokers);
  Set(conf, "group.id", "kafka-tool");  // required by the API; no group is joined
  Set(conf, "enable.auto.commit", "false");
  Set(conf, "auto.offset.reset", "error");
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    std::cerr << "kafka-tool: error: " << errstr << "\n";
    return 1;
  }
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, c.topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10'000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::cerr << "kafka-tool: error: no metadata for topic " << c.topic << "\n";
    return 1;
  }
  int partitions = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(parts, c.topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  if (!ready_file.empty()) {
    FILE* f = std::fopen(ready_file.c_str(), "w");
    if (f != nullptr) std::fclose(f);
  }

  std::vector<bool> seen(c.count, false);
  std::vector<int64_t> next_offset(partitions, 0);
  long received = 0, unique = 0, duplicates = 0, foreign = 0;
  int rc = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  auto next_progress = std::chrono::steady_clock::now();
  while (unique < c.count && std::chrono::steady_clock::now() < deadline) {
    if (std::chrono::steady_clock::now() >= next_progress) {
      std::cout << "progress unique=" << unique << std::endl;
      next_progress += std::chrono::milliseconds(200);
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      rd_kafka_message_destroy(m);
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::cerr << "kafka-tool: consume error on partition " << m->partition << " at offset "
                << m->offset << ": " << rd_kafka_message_errstr(m) << "\n";
      rd_kafka_message_destroy(m);
      rc = 1;
      break;
    }
    // Offsets of a partition must run 0, 1, 2, ...: a jump means records were
    // lost (to retention, say) before this consumer read them.
    if (m->offset != next_offset[m->partition]) {
      std::cerr << "kafka-tool: gap in partition " << m->partition << ": expected offset "
                << next_offset[m->partition] << ", got " << m->offset << "\n";
      rd_kafka_message_destroy(m);
      rc = 1;
      break;
    }
    next_offset[m->partition] = m->offset + 1;
    ++received;
    long id = -1;
    const char* p = static_cast<const char*>(m->payload);
    if (m->len > 3 && std::string_view(p, 3) == "id=") id = std::strtol(p + 3, nullptr, 10);
    if (id < 0 || id >= c.count) {
      ++foreign;
    } else if (seen[id]) {
      ++duplicates;
    } else {
      seen[id] = true;
      ++unique;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  long missing = c.count - unique;
  std::cout << "received=" << received << " unique=" << unique << " duplicates=" << duplicates
            << " missing=" << missing << " foreign=" << foreign << std::endl;
  if (missing != 0 || duplicates != 0 || foreign != 0) rc = 1;
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Test producer and checking consumer for Kafka topics", "kafka-tool");
  app.require_subcommand(1);
  Common c;
  ProduceOptions po;
  int timeout_s = 60;
  std::string ready_file;
  for (CLI::App* sub : {app.add_subcommand("produce", "Produce numbered messages"),
                        app.add_subcommand("consume", "Consume and check numbered messages")}) {
    sub->add_option("--brokers", c.brokers, "Bootstrap servers")->required();
    sub->add_option("--topic", c.topic, "Topic")->required();
    sub->add_option("--count", c.count, "Number of messages")->required();
  }
  CLI::App* produce = app.get_subcommand("produce");
  produce->add_option("--size", po.size, "Message size in bytes")->capture_default_str();
  produce->add_option("--rate", po.rate, "Messages per second (0: unpaced)");
  produce->add_option("--first", po.first, "First id");
  produce->add_flag("--json", po.json, "JSON events {\"id\":N,\"g\":N%10,\"pad\":...}");
  produce->add_option("--malformed-every", po.malformed_every, "With --json: every id divisible by K is not JSON");
  produce->add_option("--lines", po.lines_file, "Message n is line n (mod the line count) of this file");
  CLI::App* consume = app.get_subcommand("consume");
  consume->add_option("--timeout-s", timeout_s, "Give up after this long")->capture_default_str();
  consume->add_option("--ready-file", ready_file, "Created once partitions are assigned");
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  if (c.count < 0) {
    std::cerr << "kafka-tool: error: --count must be >= 0\n";
    return sluice::kExitUsage;
  }
  if (!po.lines_file.empty()) {
    std::ifstream in(po.lines_file);
    for (std::string line; std::getline(in, line);) po.lines.push_back(line);
    if (po.lines.empty()) {
      std::cerr << "kafka-tool: error: --lines " << po.lines_file << ": no lines (missing or empty)\n";
      return sluice::kExitUsage;
    }
  }
  return produce->parsed() ? Produce(c, po) : Consume(c, timeout_s, ready_file);
}
