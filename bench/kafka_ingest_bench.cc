// kafka_ingest_bench: Kafka ingest through the Kafka mock broker process —
// Sluice's receivers (KafkaSource -> Receiver -> BlockStore, in memory)
// against raw librdkafka consumers reading the same data in the same run.
//
//   kafka_ingest_bench [--partitions 16] [--events 7000] [--payload 600] [--runs 5]
//                      [--block-records 1000] [--max-partition-fetch-bytes 1048576]
//
// Data: --events records of --payload bytes produced into each partition of a
// topic on the mock (test/harness KafkaMock), then checked to be all still
// held: the mock keeps only ~5 MiB per partition (PLATFORM.md), so keep
// events x payload under ~4.5 MB and add partitions for more data. 16
// partitions (67 MB, ~100 ms a run) because with 4 (17 MB, ~25 ms a run) the
// noise of this 2-core machine swings the ratio between 0.6 and 1.2.
//
// Phases, run --runs times each after one uncounted warm-up round, interleaved;
// every run has fresh consumers, connected to the broker (a watermark query)
// before the clock starts, reading from offset 0 to the end:
//   raw queue     one consumer, all partitions into one queue, consume_batch_queue
//   raw poll      one consumer, assign + rd_kafka_consumer_poll
//   raw threads   one consumer and one thread per partition, rd_kafka_consume_batch
//                 (the call KafkaSource makes, in the receivers' layout)
//   sluice        per partition a KafkaSource + NewKafkaReader + Receiver, all
//                 into one BlockStore; timed until every record is in a
//                 reported block
//   sluice 200ms  the same with the Receiver's default options, for reference
// Every consumer gets the same fetch settings (FetchConfig). The raw baseline
// is the fastest raw phase (by its median); the target (Kafka ingest >= 80% of
// the raw consumer rate) is checked on "sluice" (its median).
//
// Fairness: "sluice" cuts blocks by count only (max_block_records =
// --block-records, which divides --events; block interval 1 h), so the last
// block of a partition is cut the moment its last record is read. With the
// Receiver's defaults (cut at 200 ms or 131,072 records) a partition of 7,000
// records is one block cut when the 200 ms interval is over, and the
// ReadInto running then (timeout 20 ms; rd_kafka_consume_batch waits for its
// whole array) may add up to 20 ms: "sluice 200ms" measures 210-220 ms
// whatever the data. That is block latency, not throughput — a live stream
// never reaches its end — but on a finite data set read in ~100 ms it is the
// whole measurement. 1,000-record blocks rather than one 7,000-record block
// per partition: a receiver reserves a block's buffer only from its second
// block on (the size of the previous one), so one block per partition would
// measure only the unreserved first block, grown by doubling (~10% slower).
#include <librdkafka/rdkafka.h>
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "lib/common/config.h"
#include "lib/source/kafka_source.h"
#include "lib/source/partition_reader.h"
#include "lib/worker/block_store.h"
#include "lib/worker/receiver.h"
#include "test/harness/kafka_mock.h"
#include "test/harness/util.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kTopic = "events";
constexpr int kMaxBatch = 10'000;  // as KafkaSource: at most 10,000 messages per call

// Fetch settings given to every consumer, raw and Sluice's alike.
std::map<std::string, std::string> FetchConfig(int64_t max_partition_fetch_bytes) {
  return {{"max.partition.fetch.bytes", std::to_string(max_partition_fetch_bytes)},
          {"fetch.max.bytes", "104857600"},
          {"queued.min.messages", "100000"},
          {"queued.max.messages.kbytes", "262144"},
          {"fetch.wait.max.ms", "100"}};
}

struct Setup {
  std::string brokers;
  int partitions = 0;
  int64_t events = 0;  // per partition
  int payload = 0;
  std::map<std::string, std::string> fetch;
  int64_t total() const { return events * partitions; }
};

void Die(const std::string& what) {
  std::fprintf(stderr, "kafka_ingest_bench: %s\n", what.c_str());
  std::exit(1);
}

rd_kafka_t* NewConsumer(const Setup& s) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::map<std::string, std::string> settings = s.fetch;
  settings["bootstrap.servers"] = s.brokers;
  settings["group.id"] = "kafka-ingest-bench";  // required; never joined
  settings["enable.auto.commit"] = "false";
  settings["enable.partition.eof"] = "false";
  settings["auto.offset.reset"] = "error";
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      Die(k + ": " + errstr);
    }
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) Die(errstr);
  return rk;
}

// Connects `rk` to the partition leader, as KafkaSource::Watermarks does.
std::pair<int64_t, int64_t> Watermarks(rd_kafka_t* rk, int32_t partition) {
  int64_t low = 0, high = 0;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, kTopic, partition, &low, &high, 10'000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) Die(std::string("watermarks: ") + rd_kafka_err2str(err));
  return {low, high};
}

// Produces s.events records of s.payload bytes into each partition; returns seconds.
double Produce(const Setup& s) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  static std::atomic<int64_t> failed{0};
  const std::vector<std::pair<const char*, const char*>> settings = {
      {"bootstrap.servers", s.brokers.c_str()}, {"linger.ms", "5"}, {"queue.buffering.max.messages", "1000000"}};
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) Die(errstr);
  }
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) ++failed;
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) Die(errstr);
  auto t0 = Clock::now();
  std::string payload;
  for (int64_t i = 0; i < s.events; ++i) {
    for (int32_t p = 0; p < s.partitions; ++p) {
      payload = "id=" + std::to_string(p) + "-" + std::to_string(i) + ";";
      payload.resize(std::max<size_t>(payload.size(), s.payload), 'x');
      rd_kafka_resp_err_t err;
      while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(kTopic), RD_KAFKA_V_PARTITION(p),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_VALUE(payload.data(), payload.size()),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk, 10);
      }
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) Die(std::string("produce: ") + rd_kafka_err2str(err));
    }
    rd_kafka_poll(rk, 0);
  }
  if (rd_kafka_flush(rk, 60'000) != RD_KAFKA_RESP_ERR_NO_ERROR) Die("produce: flush timed out");
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  rd_kafka_destroy(rk);
  if (failed > 0) Die("produce: " + std::to_string(failed.load()) + " deliveries failed");
  return secs;
}

// One timed run: wall time, and CPU time of this process (all its threads:
// ours and librdkafka's; not the mock broker's).
struct Run {
  double secs = 0;
  double cpu_secs = 0;
};

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

class Stopwatch {
 public:
  Stopwatch() : t0_(Clock::now()), cpu0_(CpuSeconds()) {}
  Run Elapsed() const {
    return {std::chrono::duration<double>(Clock::now() - t0_).count(), CpuSeconds() - cpu0_};
  }

 private:
  const Clock::time_point t0_;
  const double cpu0_;
};

// Sums one message into the per-partition counters; dies on a gap or an error.
void Count(const rd_kafka_message_t* m, std::vector<int64_t>* next, int64_t* bytes) {
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) Die(std::string("consume: ") + rd_kafka_message_errstr(m));
  int64_t& expected = (*next)[m->partition];
  if (m->offset != expected) Die("consume: offset gap at " + std::to_string(expected));
  ++expected;
  *bytes += static_cast<int64_t>(m->len);
}

// One consumer, every partition into one queue, read with consume_batch_queue.
Run RawQueue(const Setup& s) {
  rd_kafka_t* rk = NewConsumer(s);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, kTopic, nullptr);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  for (int32_t p = 0; p < s.partitions; ++p) Watermarks(rk, p);
  std::vector<int64_t> next(s.partitions, 0);
  std::vector<rd_kafka_message_t*> msgs(kMaxBatch);
  int64_t got = 0, bytes = 0;
  Stopwatch watch;
  for (int32_t p = 0; p < s.partitions; ++p) {
    if (rd_kafka_consume_start_queue(rkt, p, 0, q) != 0) Die("consume_start_queue failed");
  }
  while (got < s.total()) {
    ssize_t n = rd_kafka_consume_batch_queue(q, 1000, msgs.data(),
                                             std::min<int64_t>(kMaxBatch, s.total() - got));
    if (n < 0) Die("consume_batch_queue failed");
    for (ssize_t i = 0; i < n; ++i) {
      Count(msgs[i], &next, &bytes);
      rd_kafka_message_destroy(msgs[i]);
    }
    got += n;
  }
  Run run = watch.Elapsed();
  for (int32_t p = 0; p < s.partitions; ++p) rd_kafka_consume_stop(rkt, p);
  rd_kafka_queue_destroy(q);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return run;
}

// One consumer, partitions assigned at offset 0, read with consumer_poll.
Run RawPoll(const Setup& s) {
  rd_kafka_t* rk = NewConsumer(s);
  rd_kafka_poll_set_consumer(rk);
  for (int32_t p = 0; p < s.partitions; ++p) Watermarks(rk, p);
  std::vector<int64_t> next(s.partitions, 0);
  int64_t got = 0, bytes = 0;
  Stopwatch watch;
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(s.partitions);
  for (int32_t p = 0; p < s.partitions; ++p) rd_kafka_topic_partition_list_add(parts, kTopic, p)->offset = 0;
  if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) Die("assign failed");
  rd_kafka_topic_partition_list_destroy(parts);
  while (got < s.total()) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 1000);
    if (m == nullptr) continue;
    Count(m, &next, &bytes);
    rd_kafka_message_destroy(m);
    ++got;
  }
  Run run = watch.Elapsed();
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return run;
}

// One consumer and one thread per partition, each reading with consume_batch
// as KafkaSource::ReadInto does (without building blocks).
Run RawThreads(const Setup& s) {
  std::vector<rd_kafka_t*> rks;
  std::vector<rd_kafka_topic_t*> rkts;
  for (int32_t p = 0; p < s.partitions; ++p) {
    rks.push_back(NewConsumer(s));
    rkts.push_back(rd_kafka_topic_new(rks.back(), kTopic, nullptr));
    Watermarks(rks.back(), p);
  }
  Stopwatch watch;
  std::vector<std::thread> threads;
  for (int32_t p = 0; p < s.partitions; ++p) {
    threads.emplace_back([&, p] {
      if (rd_kafka_consume_start(rkts[p], p, 0) != 0) Die("consume_start failed");
      std::vector<int64_t> next(s.partitions, 0);
      std::vector<rd_kafka_message_t*> msgs(kMaxBatch);
      int64_t got = 0, bytes = 0;
      while (got < s.events) {
        ssize_t n = rd_kafka_consume_batch(rkts[p], p, 1000, msgs.data(),
                                           std::min<int64_t>(kMaxBatch, s.events - got));
        if (n < 0) Die("consume_batch failed");
        for (ssize_t i = 0; i < n; ++i) {
          Count(msgs[i], &next, &bytes);
          rd_kafka_message_destroy(msgs[i]);
        }
        got += n;
      }
    });
  }
  for (auto& t : threads) t.join();
  Run run = watch.Elapsed();
  for (int32_t p = 0; p < s.partitions; ++p) {
    rd_kafka_consume_stop(rkts[p], p);
    rd_kafka_topic_destroy(rkts[p]);
    rd_kafka_destroy(rks[p]);
  }
  return run;
}

// Sluice: per partition a KafkaSource, its reader and a Receiver, all into one
// BlockStore; timed until every partition's last record is in a reported block.
Run Sluice(const Setup& s, const std::string& spill, const sluice::worker::ReceiverOptions& base) {
  auto store = sluice::worker::BlockStore::Open(
      {.memory_budget_bytes = 2 * static_cast<size_t>(s.total()) * (s.payload + 64) + (64u << 20),
       .disk_budget_bytes = 0,
       .spill_path = spill});
  if (!store.ok()) Die(std::string(store.status().message()));
  std::vector<std::unique_ptr<sluice::source::KafkaSource>> sources;
  for (int32_t p = 0; p < s.partitions; ++p) {
    auto src = sluice::source::KafkaSource::Create(
        {.name = kTopic, .brokers = s.brokers, .topic = kTopic, .consumer_config = s.fetch});
    if (!src.ok()) Die(std::string(src.status().message()));
    auto marks = (*src)->Watermarks(p);  // connects, as the raw consumers' warm-up
    if (!marks.ok()) Die(std::string(marks.status().message()));
    sources.push_back(std::move(*src));
  }
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;          // guarded by mu
  int64_t reported = 0;  // records in reported blocks; guarded by mu
  std::vector<std::unique_ptr<sluice::worker::Receiver>> receivers;
  for (int32_t p = 0; p < s.partitions; ++p) {
    sluice::worker::ReceiverOptions options = base;
    options.source = kTopic;
    options.partition = p;
    receivers.push_back(std::make_unique<sluice::worker::Receiver>(
        options, sluice::source::NewKafkaReader(sources[p].get(), p), store->get(),
        [&](const sluice::worker::HeldBlock& b) {
          std::lock_guard<std::mutex> lock(mu);
          reported += b.records;
          if (b.lineage.end_offset >= s.events) {
            ++done;
            cv.notify_one();
          }
          return absl::OkStatus();
        },
        sluice::Clock::Real()));
  }
  Stopwatch watch;
  for (auto& r : receivers) r->Start();
  {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == s.partitions; })) {
      Die("sluice: receivers did not finish in 60 s");
    }
  }
  Run run = watch.Elapsed();
  // (Not ReceiverStats::records: a receiver stopped right after its last
  // report leaves that block out of its stats.)
  for (auto& r : receivers) {
    r->Stop();
    sluice::worker::ReceiverStats stats = r->Stats();
    if (!stats.error.ok()) Die("sluice: " + stats.error.ToString());
  }
  if (reported != s.total()) Die("sluice: " + std::to_string(reported) + " records in blocks");
  if ((*store)->Stats().blocks_on_disk != 0) Die("sluice: blocks spilled; memory budget too small");
  receivers.clear();
  sources.clear();
  store->reset();
  return run;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Kafka ingest (mock broker): Sluice receivers vs raw librdkafka consumers", "kafka_ingest_bench");
  Setup s;
  s.partitions = 16;
  s.events = 7'000;
  s.payload = 600;
  int runs = 5;
  int64_t block_records = 1000;
  int64_t max_partition_fetch_bytes = 1 << 20;
  app.add_option("--partitions", s.partitions, "Partitions of the topic")->capture_default_str();
  app.add_option("--events", s.events, "Events per partition (keep events x payload < ~4.5 MB)")
      ->capture_default_str();
  app.add_option("--payload", s.payload, "Event size in bytes")->capture_default_str();
  app.add_option("--runs", runs, "Runs per phase (the median is reported)")->capture_default_str();
  app.add_option("--block-records", block_records,
                 "max_block_records of the 'sluice' phase (must divide --events)")
      ->capture_default_str();
  app.add_option("--max-partition-fetch-bytes", max_partition_fetch_bytes, "For every consumer")
      ->capture_default_str();
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  if (s.partitions < 1 || s.events < 1 || s.payload < 16 || runs < 1) {
    std::fprintf(stderr, "kafka_ingest_bench: bad arguments\n");
    return sluice::kExitUsage;
  }
  if (block_records < 1 || s.events % block_records != 0) {
    std::fprintf(stderr, "kafka_ingest_bench: --block-records must divide --events\n");
    return sluice::kExitUsage;
  }
  s.fetch = FetchConfig(max_partition_fetch_bytes);
  // As workerd does: keep freed block buffers in the heap.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);

  sluice::testing::TempDir dir("sluice-kafka-ingest-bench");
  auto mock = sluice::testing::KafkaMock::Start(dir.path(), {{kTopic, s.partitions}});
  if (!mock.ok()) Die(mock.status().ToString());
  s.brokers = (*mock)->bootstrap();
  double produce_s = Produce(s);
  {
    rd_kafka_t* rk = NewConsumer(s);
    for (int32_t p = 0; p < s.partitions; ++p) {
      auto [low, high] = Watermarks(rk, p);
      if (low != 0 || high != s.events) {
        Die("partition " + std::to_string(p) + " holds offsets [" + std::to_string(low) + ", " +
            std::to_string(high) + "), not [0, " + std::to_string(s.events) +
            "): lost to the mock's ~5 MiB retention? use fewer --events, more --partitions");
      }
    }
    rd_kafka_destroy(rk);
  }

  // Blocks cut by count only (an interval cut mid-run would misalign the
  // blocks and leave the last one waiting for the next interval).
  sluice::worker::ReceiverOptions fitted{.block_interval = std::chrono::hours(1),
                                         .max_block_records = block_records};
  sluice::worker::ReceiverOptions defaults{};
  struct Phase {
    const char* name;
    std::function<Run()> run;
    std::vector<double> secs, cpu_secs;
  };
  int spills = 0;
  auto spill = [&] { return dir.Sub("spill-" + std::to_string(spills++)); };
  std::vector<Phase> phases = {
      {"raw queue (1 consumer, consume_batch_queue)", [&] { return RawQueue(s); }},
      {"raw poll (1 consumer, assign + consumer_poll)", [&] { return RawPoll(s); }},
      {"raw threads (consumer + thread per partition)", [&] { return RawThreads(s); }},
      {"sluice (receivers -> BlockStore)", [&] { return Sluice(s, spill(), fitted); }},
      {"sluice 200ms (Receiver defaults; reference)", [&] { return Sluice(s, spill(), defaults); }},
  };
  constexpr int kRawPhases = 3, kSluicePhase = 3;
  for (Phase& ph : phases) (void)ph.run();  // warm-up round (the mock's and our heaps), not counted
  for (int r = 0; r < runs; ++r) {
    for (Phase& ph : phases) {
      Run run = ph.run();
      ph.secs.push_back(run.secs);
      ph.cpu_secs.push_back(run.cpu_secs);
    }
  }

  auto rate = [&](const Phase& ph) { return s.total() / Median(ph.secs); };
  double raw = 0;
  for (int i = 0; i < kRawPhases; ++i) raw = std::max(raw, rate(phases[i]));
  std::printf("kafka ingest: mock broker on loopback, %d partitions x %lld events of %d B = %.1f MB\n",
              s.partitions, static_cast<long long>(s.events), s.payload,
              static_cast<double>(s.total()) * s.payload / 1e6);
  std::printf("  produced in %.2f s; max.partition.fetch.bytes %lld for every consumer; sluice blocks of "
              "%lld records\n",
              produce_s, static_cast<long long>(max_partition_fetch_bytes), static_cast<long long>(block_records));
  std::printf("  median of %d runs per phase, phases interleaved; cpu = this process (consumer side)\n", runs);
  std::printf("%-46s %7s %10s %6s %7s %7s   %s\n", "phase", "ms", "events/s", "MB/s", "vs raw", "cpu ms",
              "runs (ms)");
  for (const Phase& ph : phases) {
    std::string all;
    for (double x : ph.secs) all += (all.empty() ? "" : " ") + std::to_string(std::lround(x * 1e3));
    std::printf("%-46s %7.1f %10.0f %6.0f %7.3f %7.1f   %s\n", ph.name, Median(ph.secs) * 1e3, rate(ph),
                rate(ph) * s.payload / 1e6, rate(ph) / raw, Median(ph.cpu_secs) * 1e3, all.c_str());
  }
  const double sluice = rate(phases[kSluicePhase]);
  std::printf("raw baseline (fastest raw phase): %.0f events/s, %.0f MB/s\n", raw, raw * s.payload / 1e6);
  std::printf("sluice: %.0f events/s, %.0f MB/s; ratio sluice / raw = %.3f\n", sluice,
              sluice * s.payload / 1e6, sluice / raw);
  std::printf("target >= 80%% of raw: %s\n", sluice >= 0.8 * raw ? "MET" : "NOT MET");
  return 0;
}
