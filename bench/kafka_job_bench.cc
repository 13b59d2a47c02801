// kafka_job_bench: a job reading a Kafka topic on a local cluster of real
// processes (test/harness LocalCluster: ZooKeeper, driverd, 2 workerd, the
// Kafka mock broker) — kafka -> parse json -> filter -> project -> null sink,
// 1 s batches — against a bare librdkafka consumer reading the same topic of
// the same mock in the same run, while a producer in this process keeps
// writing to it.
//
//   kafka_job_bench [--seconds 20] [--warmup 5] [--partitions 64] [--payload 600]
//                   [--rate 0] [--ahead-kb 4096] [--fetch-wait-ms 10]
//                   [--job-max-rate 0] [--drivers 1]
//
// Data: the generator's 600-byte JSON events (lib/source/generator_source.h,
// as e2e_bench: {"id":..,"key":..,"ts":..,"v":..,"pad":..}), event (p, o)
// produced into partition p by one producer thread here (librdkafka,
// linger.ms 5, message sets of at most 256 KiB). The mock keeps only ~5 MiB
// per partition (PLATFORM.md; at least ~7,800 of these events): data a
// reader has not fetched before it is deleted is lost (the job then fails
// that partition with DATA_LOSS). So the producer never runs more than a
// bounded backlog ahead of the reader, in one of two modes:
//   --rate 0 (default)  "ahead": per partition, the producer writes whenever
//       the reader is less than --ahead-kb behind the partition's end — as
//       fast as the reader reads, never faster: the reader always has data
//       waiting (it reads at its own speed, which is what is measured) and is
//       never more than --ahead-kb (< retention) behind. The reader's
//       position is the bare consumer's own; for the job, the leader's
//       accepted offsets (ListSources every 100 ms), which trail what the
//       receivers have fetched, so the real backlog is smaller, never larger.
//       The loop bounds a reader at about partitions x ahead / its latency
//       (for the job, ~0.4 s: the 200 ms block interval, the report, the
//       poll): ~1 M events/s with the defaults, above what either reads here.
//   --rate R            a steady R events/s in total; the bench prints how
//       many seconds of data the mock keeps per partition at that pace.
// Printed for both phases: the backlog (produced - reader position) the
// producer kept, mean and max, against the retention — near --ahead-kb on
// average means the producer kept up and the reader was never starved — and
// the CPU each process used (from /proc), as a share of one core.
//
// Every consumer, the job's source included (its `properties`), gets
// fetch.wait.max.ms = --fetch-wait-ms (10): the mock answers a fetch that
// finds no data only after the whole wait, even if data arrives meanwhile
// (librdkafka's rdkafka_mock_handlers.c, Fetch), so with the default 500 ms
// a reader that catches up with the end of a partition sleeps 500 ms. In
// "ahead" mode that bounded both readers at ahead / 0.5 s (measured: 629,000
// and 450,000 events/s with a 3 MiB backlog), whatever they could read.
//
// Phases, on one cluster and one topic (the producer pauses and drains
// between them; each reader starts at the end of the topic):
//   baseline   bare librdkafka consumers, one consumer and thread per
//              partition reading with rd_kafka_consume_batch (20 ms timeout,
//              10,000 messages: the receivers' call; kafka_ingest_bench's
//              fastest layout), the same consumer settings as KafkaSource;
//              events/s over --seconds after min(--warmup, 3) s. The cluster
//              is up and idle meanwhile (no source is declared yet).
//   job        `sluicectl submit` of the job, its source the topic with
//              `start: latest` (and max_rate_per_partition = --job-max-rate /
//              partitions, if set); committed events/s = DescribeJob's
//              total_input over --seconds after the first commit and
//              --warmup more; p50/p99 of the batch summaries' total delay,
//              scheduling delay and processing of the batches committed in
//              the window (polled every 2 s; the leader keeps the last 20),
//              as e2e_bench. Also the receivers' own rate (accepted offsets),
//              and how often receivers were paused (store full, too many
//              unreported blocks): where a job loses against the consumer.
//              Workers get --block-memory-mb 2048, as in e2e_bench.
// There is no rate controller (docs/jobs.md "Benchmark"): in "ahead" mode the
// receivers read as fast as they can, and if tasks are slower, batches grow.
// --job-max-rate caps them, as Spark's maxRatePerPartition.
//
// Target: the job commits >= 80% of the bare consumer's events/s in this run.
// Printed as met / NOT met; exits 0 whatever the figures, and 1 only if the
// cluster cannot start or the job FAILED. Not a test: run it by hand or with
// scripts/bench.sh.
#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/bench_cluster.h"
#include "lib/common/clock.h"
#include "lib/common/config.h"
#include "lib/rpc/driver_client.h"
#include "lib/source/generator_source.h"
#include "test/harness/local_cluster.h"
#include "test/harness/util.h"

namespace {

using sluice::bench::Clock;
using sluice::bench::Percentile;
using sluice::bench::Since;
using sluice::bench::Sleep;
using sluice::testing::LocalCluster;

constexpr const char* kTopic = "events";
constexpr const char* kJob = "kafka-job";
constexpr int kMaxBatch = 10'000;    // as KafkaSource::ReadInto: at most 10,000 messages per call
constexpr int kReadTimeoutMs = 20;   // as the Receiver
// The mock's retention per partition (librdkafka 2.0.2's mock: 5 MiB of
// message sets; PLATFORM.md). It deletes whole message sets, so it holds at
// least 5 MiB less one set: the producer's sets are at most kBatchBytes.
// What a record takes there besides its value is rounded up (with 600-byte
// events the mock held 8,191-8,280 records of a partition: 633-640 B each).
// The bench prints what the mock holds at the end.
constexpr int64_t kRetentionBytes = 5 << 20;
constexpr int64_t kBatchBytes = 256 << 10;
constexpr int64_t kRecordOverhead = 40;

void Fail(const std::string& what) {
  std::fprintf(stderr, "kafka_job_bench: %s\n", what.c_str());
  std::exit(1);
}

// Per-partition counters, written by one thread each and read by others.
// Thread-safe.
class Counters {
 public:
  explicit Counters(int n) : v_(n) {
    for (auto& x : v_) x.store(0);
  }
  int64_t Get(int p) const { return v_[p].load(std::memory_order_relaxed); }
  void Set(int p, int64_t x) { v_[p].store(x, std::memory_order_relaxed); }
  int64_t Sum() const {
    int64_t s = 0;
    for (const auto& x : v_) s += x.load(std::memory_order_relaxed);
    return s;
  }

 private:
  std::vector<std::atomic<int64_t>> v_;
};

// The producer: generator events into every partition, paced (rate > 0) or
// kept `ahead` events past each partition's reader (rate 0). Reader
// positions are set by whoever reads; a negative one is "not known yet":
// then the producer trickles (kTrickle events/s per partition, at most
// `ahead` past where it stood when resumed), since a reader starting at
// `latest` may wait for data before it reports a position. Produces on a
// thread of its own; thread-safe.
class Producer {
 public:
  static constexpr int64_t kTrickle = 200;

  Producer(const std::string& brokers, int partitions, int payload, int64_t rate, int64_t ahead)
      : partitions_(partitions),
        rate_(rate),
        ahead_(ahead),
        gen_({.partitions = partitions, .num_keys = 1000, .payload_size = payload}, sluice::Clock::Real()),
        produced_(partitions),
        reader_(partitions),
        resumed_at_(partitions) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"bootstrap.servers", brokers},
             {"linger.ms", "5"},
             {"batch.num.messages", "10000"},
             {"batch.size", std::to_string(kBatchBytes)},
             {"queue.buffering.max.messages", "1000000"}}) {
      if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) Fail(errstr);
    }
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) static_cast<Producer*>(opaque)->failed_++;
    });
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk_ == nullptr) Fail(errstr);
    for (int p = 0; p < partitions; ++p) reader_.Set(p, -1);
    thread_ = std::thread([this] { Run(); });
  }

  ~Producer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    rd_kafka_flush(rk_, 10'000);
    rd_kafka_destroy(rk_);
  }

  // Stops producing and waits until every message is delivered: then
  // produced(p) is partition p's end offset.
  void Pause() {
    std::unique_lock<std::mutex> lock(mu_);
    want_paused_ = true;
    cv_.wait(lock, [&] { return paused_; });
  }
  // Produces again; every reader position unknown until set.
  void Resume() {
    for (int p = 0; p < partitions_; ++p) {
      reader_.Set(p, -1);
      resumed_at_.Set(p, produced_.Get(p));
    }
    std::lock_guard<std::mutex> lock(mu_);
    want_paused_ = false;
    paused_ = false;
    cv_.notify_all();
  }

  void SetReader(int p, int64_t next_offset) { reader_.Set(p, next_offset); }
  int64_t Reader(int p) const { return reader_.Get(p); }
  int64_t Produced(int p) const { return produced_.Get(p); }
  int64_t Total() const { return produced_.Sum(); }
  int64_t failed() const { return failed_.load(); }
  // Times a paced producer could not keep its pace (more than 100 ms late).
  int64_t late() const { return late_.load(); }

 private:
  void ProduceOne(int p) {
    const int64_t o = produced_.Get(p);
    gen_.Event(p, o, buf_.data());
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(kTopic), RD_KAFKA_V_PARTITION(p),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_VALUE(buf_.data(), buf_.size()), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk_, 5);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) Fail(std::string("produce: ") + rd_kafka_err2str(err));
    produced_.Set(p, o + 1);
  }

  // How far partition p may be produced now (ahead mode).
  int64_t Limit(int p, double since_resume) const {
    const int64_t reader = reader_.Get(p);
    if (reader >= 0) return reader + ahead_;
    const int64_t from = resumed_at_.Get(p);
    return from + std::min<int64_t>(ahead_, static_cast<int64_t>(kTrickle * since_resume));
  }

  void Run() {
    buf_.resize(gen_.EventString(0, 0).size());
    Clock::time_point resumed = Clock::now();
    int64_t paced_base = 0;  // Total() when the pace (re)started
    int next = 0;            // round robin, paced
    bool was_paused = true;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (stop_) return;
        if (want_paused_) {
          lock.unlock();
          rd_kafka_flush(rk_, 30'000);
          lock.lock();
          paused_ = true;
          cv_.notify_all();
          cv_.wait(lock, [&] { return stop_ || !want_paused_; });
          if (stop_) return;
          was_paused = true;
        }
      }
      if (was_paused) {
        was_paused = false;
        resumed = Clock::now();
        paced_base = Total();
      }
      int64_t made = 0;
      if (rate_ > 0) {
        const int64_t due = paced_base + static_cast<int64_t>(static_cast<double>(rate_) * Since(resumed));
        int64_t behind = due - Total();
        if (behind > rate_ / 10) ++late_;
        for (; behind > 0 && made < 20'000; --behind, ++made) {
          ProduceOne(next);
          next = (next + 1) % partitions_;
        }
      } else {
        const double since = Since(resumed);
        for (int p = 0; p < partitions_; ++p) {
          const int64_t limit = Limit(p, since);
          for (int64_t n = 0; produced_.Get(p) < limit && n < 2'000; ++n, ++made) ProduceOne(p);
        }
      }
      rd_kafka_poll(rk_, 0);
      if (made == 0) std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }

  const int partitions_;
  const int64_t rate_;
  const int64_t ahead_;
  const sluice::source::GeneratorSource gen_;
  rd_kafka_t* rk_ = nullptr;
  std::string buf_;
  Counters produced_;    // next offset of each partition, as produced (written by the thread)
  Counters reader_;      // each partition's reader position; -1: unknown
  Counters resumed_at_;  // produced_ at the last Resume
  std::atomic<int64_t> failed_{0};
  std::atomic<int64_t> late_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;         // guarded by mu_
  bool want_paused_ = false;  // guarded by mu_
  bool paused_ = false;       // guarded by mu_
  std::thread thread_;        // last: started once everything else is set
};

// CPU time of processes over a window, as a percentage of one core: where
// the machine's cores went during each phase.
class CpuShares {
 public:
  struct Proc {
    std::string name;
    pid_t pid;
  };
  explicit CpuShares(std::vector<Proc> procs) : procs_(std::move(procs)), t0_(Clock::now()) {
    for (const Proc& p : procs_) start_.push_back(CpuSecondsOf(p.pid));
  }
  // "name 85, name 40, ..." since construction.
  std::string Format() const {
    const double wall = Since(t0_);
    std::string out;
    double sum = 0;
    for (size_t i = 0; i < procs_.size(); ++i) {
      const double pct = 100.0 * (CpuSecondsOf(procs_[i].pid) - start_[i]) / wall;
      sum += pct;
      out += (out.empty() ? "" : ", ") + procs_[i].name + " " + std::to_string(static_cast<int>(pct + 0.5));
    }
    return out + "; sum " + std::to_string(static_cast<int>(sum + 0.5)) + " of " +
           std::to_string(100 * std::thread::hardware_concurrency());
  }

 private:
  // utime + stime of /proc/PID/stat (fields 14 and 15, after the command's ")").
  static double CpuSecondsOf(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) return 0;
    std::istringstream fields(stat.substr(paren + 2));
    std::string f;
    int64_t utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i) {
      if (i == 14) utime = std::stoll(f);
      if (i == 15) stime = std::stoll(f);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }

  const std::vector<Proc> procs_;
  const Clock::time_point t0_;
  std::vector<double> start_;
};

// Backlog samples: produced - reader position, per partition, every 100 ms.
struct Backlog {
  double sum = 0;
  int64_t samples = 0;
  int64_t max = 0;
  void Sample(const Producer& producer, int partitions) {
    for (int p = 0; p < partitions; ++p) {
      const int64_t reader = producer.Reader(p);
      if (reader < 0) continue;
      const int64_t lag = producer.Produced(p) - reader;
      sum += static_cast<double>(lag);
      max = std::max(max, lag);
      ++samples;
    }
  }
  double mean() const { return samples > 0 ? sum / static_cast<double>(samples) : 0; }
};

struct BaselineResult {
  double events_per_s = 0;
  double seconds = 0;
  Backlog backlog;
  int64_t errors = 0;
  std::string first_error;
  std::string cpu;
};

// Bare consumers, one consumer and thread per partition, from the end of the
// topic (the producer is paused and drained when this starts).
BaselineResult RunBaseline(const std::string& brokers, int partitions, int fetch_wait_ms, Producer& producer,
                           double warmup, double seconds, const std::vector<CpuShares::Proc>& procs) {
  producer.Pause();
  BaselineResult r;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> errors{0};
  std::mutex error_mu;
  std::vector<std::thread> threads;
  std::vector<int64_t> start(partitions);
  for (int p = 0; p < partitions; ++p) start[p] = producer.Produced(p);
  producer.Resume();
  for (int p = 0; p < partitions; ++p) producer.SetReader(p, start[p]);
  Counters read(partitions);
  for (int p = 0; p < partitions; ++p) {
    threads.emplace_back([&, p] {
      char errstr[512];
      rd_kafka_conf_t* conf = rd_kafka_conf_new();
      // KafkaSource's settings.
      for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
               {"bootstrap.servers", brokers},
               {"group.id", "kafka-job-bench"},  // required; never joined
               {"enable.auto.commit", "false"},
               {"enable.partition.eof", "false"},
               {"fetch.wait.max.ms", std::to_string(fetch_wait_ms)}}) {
        if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) Fail(errstr);
      }
      rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
      if (rk == nullptr) Fail(errstr);
      rd_kafka_topic_conf_t* tconf = rd_kafka_topic_conf_new();
      rd_kafka_topic_conf_set(tconf, "auto.offset.reset", "error", errstr, sizeof(errstr));
      rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, kTopic, tconf);
      if (rd_kafka_consume_start(rkt, p, start[p]) != 0) Fail("consume_start failed");
      std::vector<rd_kafka_message_t*> msgs(kMaxBatch);
      int64_t next = start[p];
      while (!stop.load()) {
        const ssize_t n = rd_kafka_consume_batch(rkt, p, kReadTimeoutMs, msgs.data(), msgs.size());
        if (n < 0) Fail(std::string("consume_batch: ") + rd_kafka_err2str(rd_kafka_last_error()));
        for (ssize_t i = 0; i < n; ++i) {
          const rd_kafka_message_t* m = msgs[i];
          if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR || m->offset != next) {
            if (errors++ == 0) {
              std::lock_guard<std::mutex> lock(error_mu);
              r.first_error = "partition " + std::to_string(p) + " at offset " + std::to_string(next) + ": " +
                              (m->err != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_message_errstr(m)
                                                                    : "got offset " + std::to_string(m->offset));
            }
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) next = m->offset + 1;
          } else {
            ++next;
          }
          rd_kafka_message_destroy(msgs[i]);
        }
        read.Set(p, next);
        producer.SetReader(p, next);
      }
      rd_kafka_consume_stop(rkt, p);
      rd_kafka_topic_destroy(rkt);
      rd_kafka_destroy(rk);
    });
  }
  Sleep(warmup);
  const int64_t read0 = read.Sum();
  const auto t0 = Clock::now();
  CpuShares cpu(procs);
  while (Since(t0) < seconds) {
    Sleep(0.1);
    r.backlog.Sample(producer, partitions);
  }
  r.seconds = Since(t0);
  r.cpu = cpu.Format();
  r.events_per_s = static_cast<double>(read.Sum() - read0) / r.seconds;
  stop = true;
  for (auto& t : threads) t.join();
  r.errors = errors.load();
  return r;
}

struct JobResult {
  bool failed = false;
  std::string stop_reason;
  double events_per_s = 0;      // committed
  double accepted_per_s = 0;    // read by the receivers (accepted offsets)
  double seconds = 0;
  std::vector<int64_t> total_delay, scheduling_delay, processing;
  int64_t batches_behind = 0;   // planned but not committed at the end
  int64_t blocks_fetched = 0, blocks_recomputed = 0;
  Backlog backlog;
  int64_t paused_samples = 0, receiver_samples = 0;  // receivers seen paused / seen, in the window
  std::vector<std::string> partition_errors;
  std::string cpu;
};

// Polls the leader's ListSources every 100 ms: each partition's accepted
// offset becomes the producer's reader position; counts paused receivers.
// Polls on a thread of its own; thread-safe.
class SourceMonitor {
 public:
  SourceMonitor(sluice::rpc::DriverClient* leader, Producer* producer, int partitions)
      : leader_(leader), producer_(producer), partitions_(partitions), accepted_(partitions) {
    thread_ = std::thread([this] { Run(); });
  }
  ~SourceMonitor() {
    stop_ = true;
    thread_.join();
  }
  // Sum of accepted offsets (-1 while any partition has none).
  int64_t Accepted() const { return all_known_.load() ? accepted_.Sum() : -1; }
  void StartCounting() { counting_ = true; }
  int64_t paused() const { return paused_.load(); }
  int64_t seen() const { return seen_.load(); }
  std::vector<std::string> errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }

 private:
  void Run() {
    while (!stop_.load()) {
      sluice::proto::ListSourcesRequest request;
      request.set_source("events");
      auto listed = leader_->ListSources(request, std::chrono::seconds(2));
      if (listed.ok() && listed->sources_size() == 1) {
        bool all = listed->sources(0).partitions_size() == partitions_;
        for (const auto& p : listed->sources(0).partitions()) {
          if (p.partition() >= partitions_) continue;
          if (p.next_offset() >= 0) {
            accepted_.Set(p.partition(), p.next_offset());
            producer_->SetReader(p.partition(), p.next_offset());
          } else {
            all = false;
          }
          if (counting_.load() && !p.worker().empty()) {
            ++seen_;
            if (p.receiver().paused()) ++paused_;
          }
          if (!p.error().empty()) {
            std::lock_guard<std::mutex> lock(mu_);
            if (errors_.size() < 5 && std::find(errors_.begin(), errors_.end(), p.error()) == errors_.end()) {
              errors_.push_back(p.error());
            }
          }
        }
        all_known_ = all;
      }
      Sleep(0.1);
    }
  }

  sluice::rpc::DriverClient* const leader_;
  Producer* const producer_;
  const int partitions_;
  Counters accepted_;
  std::atomic<bool> all_known_{false};
  std::atomic<bool> counting_{false};
  std::atomic<int64_t> paused_{0}, seen_{0};
  std::mutex mu_;
  std::vector<std::string> errors_;  // guarded by mu_
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::optional<JobResult> RunJob(LocalCluster& cluster, sluice::rpc::DriverClient& leader, Producer& producer,
                                int partitions, int fetch_wait_ms, int64_t max_rate_per_partition, double warmup,
                                double seconds, const std::vector<CpuShares::Proc>& procs) {
  producer.Pause();
  producer.Resume();  // reader positions unknown until the receivers' first blocks
  const std::string file = cluster.dir() + "/kafka-job.yaml";
  std::string source = "  - {name: events, kind: kafka, brokers: \"" + cluster.kafka()->bootstrap() +
                       "\", topic: " + kTopic + ", start: latest, properties: {fetch.wait.max.ms: \"" +
                       std::to_string(fetch_wait_ms) + "\"}";
  if (max_rate_per_partition > 0) source += ", max_rate_per_partition: " + std::to_string(max_rate_per_partition);
  source += "}\n";
  const std::string text = std::string("name: ") + kJob + "\n" +
                           "batch_interval: 1s\n"
                           "sources:\n" + source +
                           "operators:\n"
                           "  - parse: {format: json}\n"
                           "  - filter: \"v >= 100000\"\n"  // keeps ~90%, as e2e_bench
                           "  - project: {fields: [id, key, v]}\n"
                           "sink:\n"
                           "  null:\n";
  const std::string log = cluster.dir() + "/submit.log";
  if (!sluice::testing::WriteFile(file, text).ok() || cluster.Sluicectl({"submit", file}, log) != 0) {
    std::fprintf(stderr, "kafka_job_bench: submit failed: %s", sluice::testing::ReadFile(log).value_or("").c_str());
    return std::nullopt;
  }
  SourceMonitor monitor(&leader, &producer, partitions);
  JobResult r;
  auto describe = [&]() -> std::optional<sluice::proto::JobInfo> {
    sluice::proto::DescribeJobRequest request;
    request.set_job_id(kJob);
    auto info = leader.DescribeJob(request, std::chrono::seconds(2));
    if (!info.ok()) return std::nullopt;
    if (info->state() == "stopped") {
      r.failed = true;
      r.stop_reason = info->stop_reason();
    }
    return *std::move(info);
  };
  const auto submitted = Clock::now();
  for (;;) {
    auto info = describe();
    if (r.failed) return r;
    if (info && info->last_committed_batch() > 0 && monitor.Accepted() >= 0) break;
    if (Since(submitted) > 60) {
      std::fprintf(stderr, "kafka_job_bench: no batch committed within 60 s (logs under %s)\n",
                   cluster.dir().c_str());
      return std::nullopt;
    }
    Sleep(0.2);
  }
  Sleep(warmup);
  std::optional<sluice::proto::JobInfo> first = describe();
  if (r.failed) return r;
  if (!first) {
    std::fprintf(stderr, "kafka_job_bench: DescribeJob failed\n");
    return std::nullopt;
  }
  monitor.StartCounting();
  const auto t0 = Clock::now();
  CpuShares cpu(procs);
  const int64_t accepted0 = monitor.Accepted();
  const int64_t input0 = first->total_input();
  const int64_t committed0 = first->last_committed_batch();
  std::map<int64_t, sluice::proto::BatchSummary> batches;
  sluice::proto::JobInfo last = *first;
  double last_t = 0, next_describe = 2;
  while (Since(t0) < seconds) {
    Sleep(0.1);
    r.backlog.Sample(producer, partitions);
    if (Since(t0) < next_describe && Since(t0) + 0.1 < seconds) continue;
    next_describe += 2;
    std::optional<sluice::proto::JobInfo> info = describe();
    if (r.failed) return r;
    if (!info) continue;
    last = *info;
    last_t = Since(t0);
    for (const auto& s : info->recent_batches()) {
      if (s.batch_id() > committed0) batches[s.batch_id()] = s;
    }
  }
  const int64_t accepted1 = monitor.Accepted();
  const double window = Since(t0);
  r.cpu = cpu.Format();
  r.seconds = last_t;
  r.events_per_s = last_t > 0 ? static_cast<double>(last.total_input() - input0) / last_t : 0;
  r.accepted_per_s = accepted0 >= 0 && accepted1 >= 0 ? static_cast<double>(accepted1 - accepted0) / window : 0;
  r.batches_behind = last.last_planned_batch() - last.last_committed_batch();
  for (const auto& [id, s] : batches) {
    r.total_delay.push_back(s.total_delay_ms());
    r.scheduling_delay.push_back(s.scheduling_delay_ms());
    r.processing.push_back(s.processing_ms());
    r.blocks_fetched += s.blocks_fetched();
    r.blocks_recomputed += s.blocks_recomputed();
  }
  r.paused_samples = monitor.paused();
  r.receiver_samples = monitor.seen();
  r.partition_errors = monitor.errors();
  return r;
}

// Offsets [low, high) the mock holds of partition 0 now: its retention, measured.
std::pair<int64_t, int64_t> HeldOffsets(const std::string& brokers) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) return {0, 0};
  int64_t low = 0, high = 0;
  if (rd_kafka_query_watermark_offsets(rk, kTopic, 0, &low, &high, 5'000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    low = high = 0;
  }
  rd_kafka_destroy(rk);
  return {low, high};
}

// `ahead`: the backlog the producer keeps (0 when paced).
void PrintBacklog(const Backlog& b, int64_t retained, int64_t event_bytes, int64_t ahead) {
  std::printf("  backlog per partition    mean %.0f, max %lld events (%.1f / %.1f MB; retention ~%lld events)\n",
              b.mean(), static_cast<long long>(b.max), b.mean() * static_cast<double>(event_bytes) / 1e6,
              static_cast<double>(b.max * event_bytes) / 1e6, static_cast<long long>(retained));
  if (ahead > 0 && b.mean() < 0.5 * static_cast<double>(ahead)) {
    std::printf("  (the producer kept on average %.0f%% of the %lld events it aims for: at times it, not the "
                "reader, was the limit, so this rate is a lower bound)\n",
                100.0 * b.mean() / static_cast<double>(ahead), static_cast<long long>(ahead));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Kafka -> parse -> filter -> project -> null on a local cluster vs a bare librdkafka consumer",
               "kafka_job_bench");
  double seconds = 20, warmup = 5;
  int partitions = 64, payload = 600, drivers = 1, fetch_wait_ms = 10;
  int64_t rate = 0, ahead_kb = 4096, job_max_rate = 0;
  app.add_option("--seconds", seconds, "Measurement window of each phase")->capture_default_str();
  app.add_option("--warmup", warmup, "Seconds before measuring (the job: after its first commit)")
      ->capture_default_str();
  app.add_option("--partitions", partitions, "Partitions of the topic")->capture_default_str();
  app.add_option("--payload", payload, "Event size in bytes (the generator's payload_bytes)")->capture_default_str();
  app.add_option("--rate", rate, "Producer: events/s in total; 0: keep --ahead-kb ahead of each reader")
      ->capture_default_str();
  app.add_option("--ahead-kb", ahead_kb, "Producer with --rate 0: backlog kept per partition")->capture_default_str();
  app.add_option("--job-max-rate", job_max_rate, "The job's source max_rate_per_partition x partitions; 0: none")
      ->capture_default_str();
  app.add_option("--fetch-wait-ms", fetch_wait_ms, "fetch.wait.max.ms of every consumer, the job's too")
      ->capture_default_str();
  app.add_option("--drivers", drivers, "driverd processes (1 saves CPU; 3 as in production)")->capture_default_str();
  if (std::optional<int> code = sluice::ParseCommandLine(app, argc, argv)) return *code;
  sluice::source::GeneratorOptions gen_options{.partitions = 1, .payload_size = payload};
  if (sluice::Status st = gen_options.Validate(); !st.ok() || partitions < 1 || rate < 0 || ahead_kb < 1) {
    std::fprintf(stderr, "kafka_job_bench: bad arguments%s%s\n", st.ok() ? "" : ": ",
                 std::string(st.message()).c_str());
    return sluice::kExitUsage;
  }
  const int64_t event_bytes = static_cast<int64_t>(
      sluice::source::GeneratorSource(gen_options, sluice::Clock::Real()).EventString(0, 0).size());
  // Events per partition the mock holds at least.
  const int64_t retained = (kRetentionBytes - kBatchBytes) / (event_bytes + kRecordOverhead);
  const int64_t ahead = ahead_kb * 1024 / (event_bytes + kRecordOverhead);
  if (rate == 0 && ahead >= retained) {
    std::fprintf(stderr, "kafka_job_bench: --ahead-kb must stay under the mock's retention (~%lld KiB)\n",
                 static_cast<long long>(retained * (event_bytes + kRecordOverhead) / 1024));
    return sluice::kExitUsage;
  }

  sluice::testing::TempDir dir("sluice-kafka-job-bench");
  auto cluster = LocalCluster::Start({.dir = dir.path(),
                                      .drivers = drivers,
                                      .workers = 2,
                                      .kafka_topics = {{kTopic, partitions}},
                                      .worker_flags = {"--block-memory-mb", "2048"},
                                      .log_level = "warn"});
  if (!cluster.ok()) {
    std::fprintf(stderr, "kafka_job_bench: cannot start the cluster: %s\n", cluster.status().ToString().c_str());
    return 1;
  }
  int leader_index = -1;
  sluice::testing::WaitUntil([&] { return (leader_index = (*cluster)->LeaderIndex()) >= 0; },
                             std::chrono::milliseconds(30'000), std::chrono::milliseconds(100));
  if (leader_index < 0) {
    std::fprintf(stderr, "kafka_job_bench: no leader within 30 s (logs under %s)\n", dir.path().c_str());
    return 1;
  }
  sluice::rpc::DriverClient leader(sluice::testing::Channels(), (*cluster)->driver_address(leader_index));
  const std::string brokers = (*cluster)->kafka()->bootstrap();

  std::vector<CpuShares::Proc> procs = {{"bench", getpid()},
                                        {"kafka-mock", (*cluster)->kafka()->process().pid()},
                                        {"zookeeper", (*cluster)->zk().server_pid(0)}};
  for (int i = 0; i < (*cluster)->num_drivers(); ++i) procs.push_back({"driverd", (*cluster)->driver(i)->pid()});
  for (int i = 0; i < (*cluster)->num_workers(); ++i) {
    procs.push_back({"workerd-" + std::to_string(i + 1), (*cluster)->worker(i)->pid()});
  }

  Producer producer(brokers, partitions, payload, rate, ahead);
  BaselineResult base =
      RunBaseline(brokers, partitions, fetch_wait_ms, producer, std::min(warmup, 3.0), seconds, procs);
  std::optional<JobResult> job = RunJob(**cluster, leader, producer, partitions, fetch_wait_ms,
                                        job_max_rate / partitions, warmup, seconds, procs);
  if (!job) return 1;
  producer.Pause();
  const auto [held_low, held_high] = HeldOffsets(brokers);

  std::printf("kafka job: kafka (mock broker) -> parse json -> filter (~90%% pass) -> project -> null sink, "
              "1 s batches\n");
  std::printf("  cluster: ZooKeeper, %d driverd, 2 workerd, the Kafka mock, one machine (%u cores); "
              "%lld-byte events, %d partitions\n",
              drivers, std::thread::hardware_concurrency(), static_cast<long long>(event_bytes), partitions);
  std::printf("  retention: the mock keeps ~5 MiB per partition, at least ~%lld events (held at the end: %lld of "
              "partition 0)\n",
              static_cast<long long>(retained), static_cast<long long>(held_high - held_low));
  std::printf("  every consumer, the job's too: fetch.wait.max.ms %d (the mock holds a fetch that finds no data "
              "that long, even if data arrives meanwhile)\n",
              fetch_wait_ms);
  if (rate > 0) {
    const double per_partition = static_cast<double>(rate) / partitions;
    std::printf("  producer: paced at %lld events/s in total (%.0f per partition): the mock keeps %.2f s of data "
                "per partition; a reader further behind loses data (the producer was more than 100 ms behind its pace "
                "in %lld rounds)\n",
                static_cast<long long>(rate), per_partition, static_cast<double>(retained) / per_partition,
                static_cast<long long>(producer.late()));
  } else {
    std::printf("  producer: keeps %lld events (%lld KiB) per partition ahead of each reader: faster than the "
                "reader reads, never more than that behind, so retention is never hit\n",
                static_cast<long long>(ahead), static_cast<long long>(ahead_kb));
  }
  std::printf("  produced %lld events in all, %lld deliveries failed\n", static_cast<long long>(producer.Total()),
              static_cast<long long>(producer.failed()));
  std::printf("baseline: bare librdkafka consumers (one consumer and thread per partition, consume_batch), "
              "over %.1f s\n",
              base.seconds);
  std::printf("  events/s                 %12.0f\n", base.events_per_s);
  std::printf("  MB/s                     %12.0f\n", base.events_per_s * static_cast<double>(event_bytes) / 1e6);
  PrintBacklog(base.backlog, retained, event_bytes, rate > 0 ? 0 : ahead);
  std::printf("  cpu %% of a core          %s (bench = producer + consumers)\n", base.cpu.c_str());
  if (base.errors > 0) {
    std::printf("  %lld read errors or gaps (the figures are not valid); first: %s\n",
                static_cast<long long>(base.errors), base.first_error.c_str());
  }
  int code = 0;
  if (job->failed) {
    std::printf("job FAILED: %s\n", job->stop_reason.c_str());
    code = 1;
  } else {
    const double p99 = Percentile(job->total_delay, 0.99);
    std::printf("job%s, committed over %.1f s\n",
                job_max_rate > 0 ? (" (source max_rate_per_partition " + std::to_string(job_max_rate / partitions) +
                                    ")").c_str()
                                 : "",
                job->seconds);
    std::printf("  events/s                 %12.0f\n", job->events_per_s);
    std::printf("  MB/s                     %12.0f\n", job->events_per_s * static_cast<double>(event_bytes) / 1e6);
    std::printf("  receivers' events/s      %12.0f   (accepted offsets)\n", job->accepted_per_s);
    std::printf("  total delay p50 / p99 ms %6.0f / %-6.0f\n", Percentile(job->total_delay, 0.5), p99);
    std::printf("  scheduling p50 / p99 ms  %6.0f / %-6.0f\n", Percentile(job->scheduling_delay, 0.5),
                Percentile(job->scheduling_delay, 0.99));
    std::printf("  processing p50 / p99 ms  %6.0f / %-6.0f\n", Percentile(job->processing, 0.5),
                Percentile(job->processing, 0.99));
    std::printf("  batches measured         %12zu   (%lld planned, not committed, at the end; blocks fetched "
                "from the other worker %lld, recomputed from Kafka %lld)\n",
                job->total_delay.size(), static_cast<long long>(job->batches_behind),
                static_cast<long long>(job->blocks_fetched), static_cast<long long>(job->blocks_recomputed));
    std::printf("  receivers paused         %11.1f%%   (of %lld partition samples, every 100 ms)\n",
                job->receiver_samples > 0
                    ? 100.0 * static_cast<double>(job->paused_samples) / static_cast<double>(job->receiver_samples)
                    : 0.0,
                static_cast<long long>(job->receiver_samples));
    PrintBacklog(job->backlog, retained, event_bytes, rate > 0 ? 0 : ahead);
    std::printf("  cpu %% of a core          %s (bench = producer)\n", job->cpu.c_str());
    for (const std::string& e : job->partition_errors) std::printf("  partition error: %s\n", e.c_str());
    const double ratio = base.events_per_s > 0 ? job->events_per_s / base.events_per_s : 0.0;
    std::printf("ratio: job / bare consumer = %.3f   target >= 0.8: %s\n", ratio, ratio >= 0.8 ? "met" : "NOT met");
  }
  return code;
}
