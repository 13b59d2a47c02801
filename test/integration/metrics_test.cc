// Every daemon's /metrics on a cluster of real processes (3 drivers on
// ZooKeeper, 2 workers, the Kafka mock, --http-address on all): the figures
// move while a generator job and a Kafka job run — input rate, committed
// batches, receivers' offsets and the Kafka lag, gRPC calls, tasks — and
// only the serving leader exports job metrics; /healthz and /readyz answer.
// After kill -9 of the leader, the new leader reports a higher epoch and
// is_leader 1, and its committed batches go on from the replicated count
// within a bound. Every metric name the cluster exposes is documented in
// docs/operations.md.
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/harness/http_get.h"
#include "test/harness/local_cluster.h"
#include "test/harness/metrics_text.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

constexpr int kSessionTimeoutMs = 4000;
constexpr int kKafkaEvents = 20'000;

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::vector<std::string> http = {"--http-address", "127.0.0.1:0"};
    auto c = LocalCluster::Start({.dir = dir_.path(),
                                  .drivers = 3,
                                  .workers = 2,
                                  .kafka_topics = {{"backlog", 1}},
                                  .driver_flags = http,
                                  .worker_flags = http,
                                  .zk_session_timeout_ms = kSessionTimeoutMs});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    for (int i = 0; i < cluster_->num_drivers(); ++i) {
      Result<proto::DriverStatus> st = GetDriverStatus(cluster_->driver_address(i));
      ASSERT_TRUE(st.ok()) << st.status();
      ASSERT_FALSE(st->process().http_address().empty());
      drivers_http_.push_back(st->process().http_address());
    }
    for (int i = 0; i < cluster_->num_workers(); ++i) {
      Result<proto::WorkerStatus> st = GetWorkerStatus(cluster_->worker_address(i));
      ASSERT_TRUE(st.ok()) << st.status();
      ASSERT_FALSE(st->process().http_address().empty());
      workers_http_.push_back(st->process().http_address());
    }
  }

  // GET /metrics, parsed; a failed scrape or parse fails the test.
  ParsedMetrics Scrape(const std::string& address) {
    Result<HttpReply> got = HttpGet(address, "/metrics");
    EXPECT_TRUE(got.ok()) << address << ": " << got.status();
    if (!got.ok()) return {};
    EXPECT_EQ(got->status, 200) << address;
    ParsedMetrics m = ParseMetrics(got->body);
    EXPECT_EQ(m.error, "") << address << ": a line does not parse";
    families_.insert(m.type.begin(), m.type.end());
    return m;
  }

  int HttpStatus(const std::string& address, const std::string& path) {
    Result<HttpReply> got = HttpGet(address, path);
    return got.ok() ? got->status : -1;
  }

  void Submit(const std::string& name, const std::string& text) {
    const std::string path = dir_.Sub(name + ".yaml");
    ASSERT_TRUE(WriteFile(path, text).ok());
    const int code = cluster_->Sluicectl({"submit", path}, dir_.Sub("sluicectl.log"));
    ASSERT_EQ(code, 0) << ReadFile(dir_.Sub("sluicectl.log")).value_or("");
  }

  // The driver whose /metrics says it is the serving leader, or -1.
  int MetricsLeader() {
    for (int i = 0; i < cluster_->num_drivers(); ++i) {
      if (!cluster_->driver(i) || !cluster_->driver(i)->Running()) continue;
      Result<HttpReply> got = HttpGet(drivers_http_[i], "/metrics", milliseconds(1000));
      if (!got.ok()) continue;
      ParsedMetrics m = ParseMetrics(got->body);
      if (m.Value("sluice_driver_is_leader") == 1.0 && m.Value("sluice_driver_serving") == 1.0) return i;
    }
    return -1;
  }

  TempDir dir_{"metrics"};
  std::unique_ptr<LocalCluster> cluster_;
  std::vector<std::string> drivers_http_;
  std::vector<std::string> workers_http_;
  std::map<std::string, std::string> families_;  // every family seen: name -> type
};

TEST_F(MetricsTest, FiguresMoveOnEveryDaemonAndFollowTheLeaderThroughAKill) {
  int leader = -1;
  ASSERT_TRUE(WaitUntil([&] { return (leader = MetricsLeader()) >= 0; }, milliseconds(20'000), milliseconds(200)));
  auto produced = RunCommand({kKafkaToolPath, "produce", "--brokers", cluster_->kafka()->bootstrap(), "--topic",
                              "backlog", "--count", std::to_string(kKafkaEvents), "--size", "200", "--json"},
                             dir_.Sub("produce.log"), std::chrono::seconds(60));
  ASSERT_TRUE(produced.ok() && *produced == 0) << ReadFile(dir_.Sub("produce.log")).value_or("");
  ASSERT_NO_FATAL_FAILURE(Submit("gen", R"(name: gen
batch_interval: 500ms
sources:
  - {name: gen-events, kind: generator, partitions: 2, rate: 2000}
operators:
  - parse: {format: json}
sink: {null: {}}
)"));
  // The Kafka job reads its backlog at 200 events/s: a lag to see for 100 s,
  // however slow the machine is to get to the check.
  ASSERT_NO_FATAL_FAILURE(Submit("kaf", R"(name: kaf
batch_interval: 500ms
sources:
  - {name: backlog, kind: kafka, brokers: )" + cluster_->kafka()->bootstrap() +
                                           R"(, topic: backlog, start: earliest, max_rate_per_partition: 200}
operators:
  - parse: {format: json}
sink: {null: {}}
)"));
  const std::map<std::string, std::string> gen = {{"job", "gen"}};
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Scrape(drivers_http_[leader]).Value("sluice_job_batches_committed_total", gen).value_or(0) >= 3;
      },
      milliseconds(30'000), milliseconds(300)));

  // Two scrapes of every daemon, 2 s apart.
  std::vector<ParsedMetrics> d1, d2, w1, w2;
  for (const std::string& a : drivers_http_) d1.push_back(Scrape(a));
  for (const std::string& a : workers_http_) w1.push_back(Scrape(a));
  std::this_thread::sleep_for(milliseconds(2000));
  for (const std::string& a : drivers_http_) d2.push_back(Scrape(a));
  for (const std::string& a : workers_http_) w2.push_back(Scrape(a));

  // The leader's job metrics move.
  const ParsedMetrics& l1 = d1[leader];
  const ParsedMetrics& l2 = d2[leader];
  const double committed1 = l1.Value("sluice_job_batches_committed_total", gen).value_or(-1);
  const double committed2 = l2.Value("sluice_job_batches_committed_total", gen).value_or(-1);
  std::printf("leader driver-%d: gen batches committed %.0f -> %.0f, input rate %.0f events/s, records in %.0f -> "
              "%.0f\n",
              leader + 1, committed1, committed2, l2.Value("sluice_job_input_rate_events_per_second", gen).value_or(-1),
              l1.Value("sluice_job_input_records_total", gen).value_or(-1),
              l2.Value("sluice_job_input_records_total", gen).value_or(-1));
  EXPECT_GT(committed2, committed1);
  EXPECT_GT(l2.Value("sluice_job_input_rate_events_per_second", gen).value_or(0), 0);
  EXPECT_GT(l2.Value("sluice_job_input_records_total", gen).value_or(0),
            l1.Value("sluice_job_input_records_total", gen).value_or(0));
  EXPECT_GE(l2.Value("sluice_job_batches_planned_total", gen).value_or(0), committed2);
  EXPECT_GT(l2.Value("sluice_job_total_delay_seconds_count", gen).value_or(0), 0);
  EXPECT_GT(l2.Value("sluice_job_processing_seconds_count", gen).value_or(0), 0);
  EXPECT_EQ(l2.Value("sluice_job_running", gen), 1.0);
  EXPECT_GT(l2.Value("sluice_wal_commit_seconds_count").value_or(0), l1.Value("sluice_wal_commit_seconds_count").value_or(0));
  int peers = 0;
  l2.Sum("sluice_wal_peer_lag_records", {}, &peers);
  EXPECT_EQ(peers, 2) << "one lag series per standby";
  const double epoch = l2.Value("sluice_driver_leader_epoch").value_or(0);
  EXPECT_GT(epoch, 0);

  // Standbys: no job metrics, not leading, the same epoch.
  for (int i = 0; i < cluster_->num_drivers(); ++i) {
    EXPECT_EQ(d2[i].Value("sluice_zk_session_connected"), 1.0) << "driver-" << i + 1;
    EXPECT_GT(d2[i].Sum("sluice_rpc_server_started_total"), d1[i].Sum("sluice_rpc_server_started_total"))
        << "driver-" << i + 1;
    if (i == leader) continue;
    EXPECT_EQ(d2[i].Value("sluice_driver_is_leader"), 0.0);
    EXPECT_EQ(d2[i].Value("sluice_driver_leader_epoch"), epoch);
    int job_series = 0;
    d2[i].Sum("sluice_job_batches_committed_total", {}, &job_series);
    EXPECT_EQ(job_series, 0) << "a standby exports no job metrics";
  }
  // The workers' receivers and tasks move.
  double offsets1 = 0, offsets2 = 0, tasks1 = 0, tasks2 = 0, rpc1 = 0, rpc2 = 0;
  int gen_receivers = 0;
  std::optional<double> kafka_end, kafka_lag;
  for (int i = 0; i < cluster_->num_workers(); ++i) {
    int n = 0;
    offsets1 += w1[i].Sum("sluice_receiver_next_offset", {{"source", "gen-events"}});
    offsets2 += w2[i].Sum("sluice_receiver_next_offset", {{"source", "gen-events"}}, &n);
    gen_receivers += n;
    tasks1 += w1[i].Sum("sluice_executor_tasks_total");
    tasks2 += w2[i].Sum("sluice_executor_tasks_total");
    rpc1 += w1[i].Sum("sluice_rpc_server_handled_total", {{"code", "OK"}});
    rpc2 += w2[i].Sum("sluice_rpc_server_handled_total", {{"code", "OK"}});
    EXPECT_EQ(w2[i].Value("sluice_zk_session_connected"), 1.0) << "worker-" << i + 1;
  }
  std::printf("workers: generator offsets %.0f -> %.0f, tasks %.0f -> %.0f, gRPC calls OK %.0f -> %.0f\n", offsets1,
              offsets2, tasks1, tasks2, rpc1, rpc2);
  EXPECT_EQ(gen_receivers, 2);
  EXPECT_GT(offsets2, offsets1);
  EXPECT_GT(tasks2, tasks1);
  EXPECT_GT(rpc2, rpc1);
  // The Kafka receiver's lag: known once its consumer has heard a fetch answer.
  const std::map<std::string, std::string> p0 = {{"source", "backlog"}, {"partition", "0"}};
  double kafka_next = -1;
  const bool lag_seen = WaitUntil(
      [&] {
        for (const std::string& a : workers_http_) {
          ParsedMetrics m = Scrape(a);
          if (auto n = m.Value("sluice_receiver_next_offset", p0)) kafka_next = *n;
          if (auto e = m.Value("sluice_receiver_source_end_offset", p0)) kafka_end = e;
          if (auto l = m.Value("sluice_receiver_lag_records", p0)) kafka_lag = l;
        }
        return kafka_lag.has_value();
      },
      milliseconds(10'000), milliseconds(200));
  std::printf("Kafka receiver: next offset %.0f, end %.0f, lag %.0f\n", kafka_next, kafka_end.value_or(-1),
              kafka_lag.value_or(-1));
  EXPECT_TRUE(lag_seen) << "no sluice_receiver_lag_records for backlog[0] within 10 s";
  EXPECT_EQ(kafka_end, kKafkaEvents);
  ASSERT_TRUE(kafka_lag.has_value());
  EXPECT_GT(*kafka_lag, 0) << "200 events/s through a backlog of " << kKafkaEvents;
  EXPECT_LT(*kafka_lag, kKafkaEvents);

  // Health and readiness.
  for (const std::string& a : drivers_http_) EXPECT_EQ(HttpStatus(a, "/healthz"), 200) << a;
  for (const std::string& a : workers_http_) {
    EXPECT_EQ(HttpStatus(a, "/healthz"), 200) << a;
    EXPECT_EQ(HttpStatus(a, "/readyz"), 200) << a;
  }
  EXPECT_EQ(HttpStatus(drivers_http_[leader], "/readyz"), 200);

  // kill -9 of the leader: a new one, with a higher epoch, goes on committing.
  const double before = Scrape(drivers_http_[leader]).Value("sluice_job_batches_committed_total", gen).value_or(0);
  cluster_->KillDriver(leader);
  const auto killed = Steady::now();
  int successor = -1;
  double after = 0;
  ParsedMetrics s;
  ASSERT_TRUE(WaitUntil(
      [&] {
        successor = MetricsLeader();
        if (successor < 0) return false;
        s = Scrape(drivers_http_[successor]);
        after = s.Value("sluice_job_batches_committed_total", gen).value_or(0);
        return after > before;
      },
      milliseconds(60'000), milliseconds(100)));
  const double took = std::chrono::duration<double>(Steady::now() - killed).count();
  std::printf("driver-%d killed at gen batch %.0f; driver-%d (epoch %.0f -> %.0f) committed batch %.0f %.1f s later\n",
              leader + 1, before, successor + 1, epoch, s.Value("sluice_driver_leader_epoch").value_or(-1), after, took);
  EXPECT_NE(successor, leader);
  EXPECT_EQ(s.Value("sluice_driver_is_leader"), 1.0);
  EXPECT_GT(s.Value("sluice_driver_leader_epoch").value_or(0), epoch);
  EXPECT_LT(took, (kSessionTimeoutMs + 11'000) / 1000.0) << "no batch committed in time after the failover";
  // The mirrored totals went on from the replicated state, not from zero.
  EXPECT_GE(s.Value("sluice_job_input_records_total", gen).value_or(0),
            l2.Value("sluice_job_input_records_total", gen).value_or(0));

  // Every metric exposed is documented.
  const Result<std::string> doc = ReadFile(std::string(kSourceDir) + "/docs/operations.md");
  ASSERT_TRUE(doc.ok()) << doc.status();
  for (const auto& [name, type] : families_) {
    EXPECT_NE(doc->find("`" + name + "`"), std::string::npos) << name << " (" << type << ") is not in docs/operations.md";
  }
  std::printf("%zu metric families exposed, all documented\n", families_.size());
}

}  // namespace
}  // namespace sluice::testing
