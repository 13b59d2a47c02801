// The source-connector conformance suite (lib/source/source_connector.h), run
// against every kind: the generator, Kafka (librdkafka's mock cluster, in
// this process) and sockets (listeners on 127.0.0.1 owned by the test).
//
//   - a reader opened at an offset delivers the records from that offset;
//   - a range read again (ReadRange) is byte-identical to the blocks the
//     reader cut from it, in one read; a source that is not replayable
//     refuses with DATA_LOSS;
//   - a range the source cannot give (a gap) is DATA_LOSS, never a short block;
//   - a bad spec is INVALID_ARGUMENT naming the field.
// Then the kind-independent parts: the registry, stamps, the connector cache.
#include "lib/source/source_connector.h"

#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/source/connector_cache.h"
#include "lib/source/generator_source.h"

namespace sluice::source {
namespace {

using ::testing::HasSubstr;
using SteadyClock = std::chrono::steady_clock;

constexpr int32_t kPartitions = 2;
constexpr int64_t kStart = 100;   // where the readers under test start
constexpr int64_t kRecords = 300;  // how many they read
constexpr int64_t kPerBlock = 37;  // records per block they cut

// A bad spec: what to change in a good one, and the field the error must name.
struct BadSpec {
  std::function<void(proto::SourceSpec*)> change;
  std::string field;
};

// One kind of source with data in it, for the conformance tests.
class SourceFixture {
 public:
  virtual ~SourceFixture() = default;
  // A spec the leader would record (normalised, partitions known) of a
  // source with kPartitions partitions whose readers, opened at kStart,
  // deliver at least kRecords records.
  virtual proto::SourceSpec Spec() = 0;
  // The record at `offset` of `partition`, as a reader opened at kStart delivers it.
  virtual std::string Record(int32_t partition, int64_t offset) = 0;
  // A connector, and a range of its partition 0 the source cannot give.
  struct Gap {
    std::unique_ptr<SourceConnector> connector;
    int64_t start = 0, end = 0;
    bool reader_fails = false;  // a reader opened at `start` fails too (not merely waits)
  };
  virtual Gap MakeGap() = 0;
  virtual std::vector<BadSpec> BadSpecs() = 0;
  Clock* clock() { return &clock_; }

 protected:
  FakeClock clock_;
};

// ---- the generator ----

class GeneratorFixture final : public SourceFixture {
 public:
  proto::SourceSpec Spec() override {
    proto::SourceSpec spec;
    spec.set_name("gen");
    spec.set_kind(proto::SOURCE_KIND_GENERATOR);
    spec.set_partitions(kPartitions);
    spec.mutable_generator()->set_seed(42);
    spec.mutable_generator()->set_payload_bytes(120);
    spec.mutable_generator()->set_num_keys(50);
    EXPECT_TRUE(NormalizeSourceSpec(&spec).ok());
    return spec;
  }
  std::string Record(int32_t partition, int64_t offset) override {
    GeneratorSource g({.name = "gen", .seed = 42, .partitions = kPartitions, .num_keys = 50, .payload_size = 120},
                      &clock_);
    return g.EventString(partition, offset);
  }
  Gap MakeGap() override {
    // Paced at 1,000 events/s from now: offsets 0..999 exist only after a
    // second, and none has passed on the fake clock.
    proto::SourceSpec spec = Spec();
    spec.mutable_generator()->set_rate_per_partition(1000);
    spec.mutable_generator()->set_available_from_unix_ms(clock_.UnixMillis());
    auto c = SourceConnector::Create(spec, &clock_);
    EXPECT_TRUE(c.ok()) << c.status();
    return {std::move(*c), 0, 1000, false};
  }
  std::vector<BadSpec> BadSpecs() override {
    return {{[](proto::SourceSpec* s) { s->mutable_generator()->set_payload_bytes(10); }, "generator.payload_bytes"},
            {[](proto::SourceSpec* s) { s->mutable_generator()->set_num_keys(-5); }, "generator.num_keys"},
            {[](proto::SourceSpec* s) { s->mutable_generator()->set_rate_per_partition(-1); },
             "generator.rate_per_partition"},
            {[](proto::SourceSpec* s) { s->set_partitions(5000); }, "partitions"}};
  }
};

// ---- Kafka: librdkafka's mock cluster in this process ----

class KafkaMockCluster {
 public:
  KafkaMockCluster() {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    EXPECT_NE(rk_, nullptr) << errstr;
    mock_ = rd_kafka_mock_cluster_new(rk_, 1);
    EXPECT_NE(mock_, nullptr);
    bootstrap_ = rd_kafka_mock_cluster_bootstraps(mock_);
  }
  ~KafkaMockCluster() {
    if (producer_ != nullptr) rd_kafka_destroy(producer_);
    if (mock_ != nullptr) rd_kafka_mock_cluster_destroy(mock_);
    if (rk_ != nullptr) rd_kafka_destroy(rk_);
  }
  const std::string& bootstrap() const { return bootstrap_; }

  void CreateTopic(const std::string& topic, int partitions) {
    ASSERT_EQ(rd_kafka_mock_topic_create(mock_, topic.c_str(), partitions, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  // Produces `count` messages to `partition`, the i-th made by payload(i); waits until all are acknowledged.
  void Produce(const std::string& topic, int32_t partition, int64_t count,
               const std::function<std::string(int64_t)>& payload) {
    if (producer_ == nullptr) {
      char errstr[512];
      rd_kafka_conf_t* conf = rd_kafka_conf_new();
      rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap_.c_str(), errstr, sizeof(errstr));
      rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr));
      rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr));  // offsets in order, no duplicates
      producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
      ASSERT_NE(producer_, nullptr) << errstr;
    }
    for (int64_t i = 0; i < count; ++i) {
      const std::string value = payload(i);
      rd_kafka_resp_err_t err;
      while ((err = rd_kafka_producev(producer_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                                      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
             RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(producer_, 10);
      }
      ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
    }
    ASSERT_EQ(rd_kafka_flush(producer_, 30'000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

 private:
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_mock_cluster_t* mock_ = nullptr;
  rd_kafka_t* producer_ = nullptr;
  std::string bootstrap_;
};

std::string KafkaRecord(int32_t partition, int64_t offset) { return fmt::format("{}:{}", partition, offset); }

class KafkaFixture final : public SourceFixture {
 public:
  KafkaFixture() {
    mock_.CreateTopic("events", kPartitions);
    for (int32_t p = 0; p < kPartitions; ++p) {
      mock_.Produce("events", p, kStart + kRecords, [p](int64_t o) { return KafkaRecord(p, o); });
    }
  }
  proto::SourceSpec Spec() override { return SpecOf("events"); }
  std::string Record(int32_t partition, int64_t offset) override { return KafkaRecord(partition, offset); }
  Gap MakeGap() override {
    // More than the mock keeps of a partition (about 5 MiB): the first
    // offsets are deleted, as by retention.
    mock_.CreateTopic("small", 1);
    mock_.Produce("small", 0, 20'000, [](int64_t o) { return std::string(600, 'a' + o % 26); });
    proto::SourceSpec spec = SpecOf("small");
    spec.set_partitions(1);
    auto c = SourceConnector::Create(spec, &clock_);
    EXPECT_TRUE(c.ok()) << c.status();
    return {std::move(*c), 0, 100, true};
  }
  std::vector<BadSpec> BadSpecs() override {
    return {{[](proto::SourceSpec* s) { s->mutable_kafka()->clear_topic(); }, "kafka.topic"},
            {[](proto::SourceSpec* s) { s->mutable_kafka()->clear_brokers(); }, "kafka.brokers"},
            {[](proto::SourceSpec* s) { s->mutable_kafka()->set_start("yesterday"); }, "kafka.start"},
            {[](proto::SourceSpec* s) { s->mutable_kafka()->set_start("committed"); }, "kafka.properties.group.id"},
            {[](proto::SourceSpec* s) { (*s->mutable_kafka()->mutable_properties())["no.such.setting"] = "1"; },
             "kafka.properties.no.such.setting"},
            {[](proto::SourceSpec* s) { s->set_partitions(-2); }, "partitions"}};
  }

 private:
  proto::SourceSpec SpecOf(const std::string& topic) {
    proto::SourceSpec spec;
    spec.set_name(topic == "events" ? "clicks" : "gone");
    spec.set_kind(proto::SOURCE_KIND_KAFKA);
    spec.mutable_kafka()->set_brokers(mock_.bootstrap());
    spec.mutable_kafka()->set_topic(topic);
    EXPECT_TRUE(NormalizeSourceSpec(&spec).ok());
    // As the leader does: the topic's partitions, asked of the brokers.
    auto c = SourceConnector::Create(spec, &clock_);
    EXPECT_TRUE(c.ok()) << c.status();
    auto n = (*c)->Partitions();
    EXPECT_TRUE(n.ok()) << n.status();
    if (n.ok()) spec.set_partitions(*n);
    return spec;
  }

  KafkaMockCluster mock_;
};

// ---- sockets: one listener per partition, serving lines ----

// Listens on 127.0.0.1; each connection it accepts is sent `lines`, then
// kept open until the server goes.
class LineServer {
 public:
  explicit LineServer(std::string lines) : lines_(std::move(lines)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd_, 4), 0);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~LineServer() {
    stop_ = true;
    thread_.join();
    for (int c : conns_) ::close(c);
    ::close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) != 1) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      conns_.push_back(c);
      size_t sent = 0;
      while (sent < lines_.size() && !stop_) {
        const ssize_t n = ::send(c, lines_.data() + sent, lines_.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += n;
      }
    }
  }

  const std::string lines_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::vector<int> conns_;  // the server thread's, until it is joined
  std::thread thread_;
};

class SocketFixture final : public SourceFixture {
 public:
  SocketFixture() {
    for (int32_t p = 0; p < kPartitions; ++p) {
      std::string lines;
      for (int64_t o = kStart; o < kStart + kRecords; ++o) lines += Record(p, o) + "\n";
      servers_.push_back(std::make_unique<LineServer>(lines));
    }
  }
  proto::SourceSpec Spec() override {
    proto::SourceSpec spec;
    spec.set_name("sock");
    spec.set_kind(proto::SOURCE_KIND_SOCKET);
    for (const auto& s : servers_) spec.mutable_socket()->add_addresses(s->address());
    EXPECT_TRUE(NormalizeSourceSpec(&spec).ok());
    return spec;
  }
  // Offsets count lines from where the reader starts.
  std::string Record(int32_t partition, int64_t offset) override {
    return fmt::format("line {} of {}", offset, partition);
  }
  Gap MakeGap() override {
    // Nothing read can be asked for again: every range is a gap.
    auto c = SourceConnector::Create(Spec(), &clock_);
    EXPECT_TRUE(c.ok()) << c.status();
    return {std::move(*c), kStart, kStart + 10, false};
  }
  std::vector<BadSpec> BadSpecs() override {
    return {{[](proto::SourceSpec* s) { s->mutable_socket()->clear_addresses(); }, "socket.addresses"},
            {[](proto::SourceSpec* s) { s->mutable_socket()->set_addresses(1, "no-port-here"); },
             "socket.addresses[1]"},
            {[](proto::SourceSpec* s) { s->mutable_socket()->set_framing("xml"); }, "socket.framing"},
            {[](proto::SourceSpec* s) { s->set_partitions(3); }, "partitions"}};
  }

 private:
  std::vector<std::unique_ptr<LineServer>> servers_;
};

// ---- the suite ----

struct Kind {
  std::string name;
  std::function<std::unique_ptr<SourceFixture>()> make;
};
std::ostream& operator<<(std::ostream& os, const Kind& k) { return os << k.name; }

class ConnectorConformance : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    fixture_ = GetParam().make();
    spec_ = fixture_->Spec();
    auto c = SourceConnector::Create(spec_, fixture_->clock());
    ASSERT_TRUE(c.ok()) << c.status();
    connector_ = std::move(*c);
  }

  // Reads kRecords records of `partition` from kStart with a reader of the
  // connector, cutting a block every kPerBlock records.
  std::vector<format::Block> ReadBlocks(int32_t partition) {
    std::vector<format::Block> blocks;
    auto opened = connector_->OpenReader(partition, kStart);
    EXPECT_TRUE(opened.ok()) << opened.status();
    if (!opened.ok()) return blocks;
    EXPECT_EQ(opened->offset, kStart);
    format::BlockBuilder builder(spec_.name(), partition, opened->offset);
    int64_t read = 0;
    const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
    while (read < kRecords && SteadyClock::now() < deadline) {
      auto n = opened->reader->ReadInto(std::min(kPerBlock - builder.records(), kRecords - read - builder.records()),
                                        200, &builder);
      EXPECT_TRUE(n.ok()) << n.status();
      if (!n.ok()) break;
      if (builder.records() == kPerBlock || read + builder.records() == kRecords) {
        read += builder.records();
        blocks.push_back(builder.Cut());
      }
    }
    EXPECT_EQ(read, kRecords) << "the reader did not deliver in time";
    return blocks;
  }

  std::unique_ptr<SourceFixture> fixture_;
  proto::SourceSpec spec_;
  std::unique_ptr<SourceConnector> connector_;
};

TEST_P(ConnectorConformance, ReadsFromAnOffset) {
  auto partitions = connector_->Partitions();
  ASSERT_TRUE(partitions.ok()) << partitions.status();
  EXPECT_EQ(*partitions, kPartitions);

  std::vector<format::Block> blocks = ReadBlocks(1);
  int64_t offset = kStart;
  for (const format::Block& b : blocks) {
    EXPECT_EQ(b.lineage().source, spec_.name());
    EXPECT_EQ(b.lineage().partition, 1);
    EXPECT_EQ(b.lineage().start_offset, offset);
    ASSERT_TRUE(b.ForEach([&](std::string_view r) { EXPECT_EQ(r, fixture_->Record(1, offset++)); }).ok());
    EXPECT_EQ(b.lineage().end_offset, offset);
  }
  EXPECT_EQ(offset, kStart + kRecords);

  // With no offset, where the spec says reading starts (Kafka: earliest).
  auto first = connector_->OpenReader(0, -1);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->offset, 0);
  EXPECT_EQ(first->reader->replayable(), connector_->replayable());

  // A partition the source does not have.
  auto none = connector_->OpenReader(kPartitions, 0);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("source '" + spec_.name() + "': partitions:"));
}

TEST_P(ConnectorConformance, ARangeReadAgainIsByteIdenticalToTheBlocksRead) {
  std::vector<format::Block> blocks = ReadBlocks(1);
  ASSERT_GE(blocks.size(), 5u);
  auto concat = [&](size_t from, size_t to) {
    std::string data;
    int64_t records = 0;
    for (size_t i = from; i < to; ++i) {
      data += blocks[i].data();
      records += blocks[i].records();
    }
    return std::pair(data, records);
  };
  const int64_t start = blocks.front().lineage().start_offset;
  const int64_t end = blocks.back().lineage().end_offset;
  if (!connector_->replayable()) {
    auto again = connector_->ReadRange(1, start, end, std::chrono::seconds(1));
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(again.status().message()), HasSubstr("not replayable"));
    return;
  }
  // The whole range, in one read, twice (the second through the kept consumer).
  for (int round = 0; round < 2; ++round) {
    auto again = connector_->ReadRange(1, start, end, std::chrono::seconds(20));
    ASSERT_TRUE(again.ok()) << again.status();
    auto [data, records] = concat(0, blocks.size());
    EXPECT_EQ(again->lineage().source, spec_.name());
    EXPECT_EQ(again->lineage().partition, 1);
    EXPECT_EQ(again->lineage().start_offset, start);
    EXPECT_EQ(again->lineage().end_offset, end);
    EXPECT_EQ(again->records(), records);
    EXPECT_TRUE(again->data() == data) << "round " << round << ": the range read again differs from its blocks";
  }
  // Blocks 1..3 alone.
  auto middle = connector_->ReadRange(1, blocks[1].lineage().start_offset, blocks[3].lineage().end_offset,
                                      std::chrono::seconds(20));
  ASSERT_TRUE(middle.ok()) << middle.status();
  EXPECT_TRUE(middle->data() == concat(1, 4).first);
  // An empty range is an empty block.
  auto empty = connector_->ReadRange(1, start, start, std::chrono::seconds(1));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->records(), 0);
}

TEST_P(ConnectorConformance, AGapIsDataLoss) {
  SourceFixture::Gap gap = fixture_->MakeGap();
  ASSERT_NE(gap.connector, nullptr);
  const std::string name = gap.connector->spec().name();
  auto again = gap.connector->ReadRange(0, gap.start, gap.end, std::chrono::seconds(5));
  ASSERT_FALSE(again.ok()) << "a range the source cannot give came back as a block of " << again->records();
  EXPECT_EQ(again.status().code(), absl::StatusCode::kDataLoss) << again.status();
  EXPECT_THAT(std::string(again.status().message()), HasSubstr(name));
  if (!gap.reader_fails) return;
  auto opened = gap.connector->OpenReader(0, gap.start);
  ASSERT_TRUE(opened.ok()) << opened.status();
  format::BlockBuilder builder(name, 0, gap.start);
  Result<int64_t> n = int64_t{0};
  for (int i = 0; i < 20 && n.ok() && *n == 0; ++i) n = opened->reader->ReadInto(100, 500, &builder);
  ASSERT_FALSE(n.ok()) << "the reader skipped the gap";
  EXPECT_EQ(n.status().code(), absl::StatusCode::kDataLoss) << n.status();
  EXPECT_EQ(builder.records(), 0);
}

TEST_P(ConnectorConformance, ABadSpecNamesTheField) {
  std::vector<BadSpec> bad = fixture_->BadSpecs();
  // And what every kind shares.
  bad.push_back({[](proto::SourceSpec* s) { s->set_replication(3); }, "replication"});
  bad.push_back({[](proto::SourceSpec* s) { s->set_max_event_bytes(-1); }, "max_event_bytes"});
  bad.push_back({[](proto::SourceSpec* s) { s->set_max_rate_per_partition(-1); }, "max_rate_per_partition"});
  for (const BadSpec& b : bad) {
    proto::SourceSpec spec = spec_;
    b.change(&spec);
    Status st = NormalizeSourceSpec(&spec);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << b.field << ": " << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("source '" + spec_.name() + "': " + b.field + ":")) << st;
  }
  // The recorded spec is normalised already: normalising again changes nothing.
  proto::SourceSpec again = spec_;
  ASSERT_TRUE(NormalizeSourceSpec(&again).ok());
  EXPECT_EQ(again.SerializeAsString(), spec_.SerializeAsString());
}

INSTANTIATE_TEST_SUITE_P(
    EveryKind, ConnectorConformance,
    ::testing::Values(Kind{"generator", [] { return std::unique_ptr<SourceFixture>(new GeneratorFixture()); }},
                      Kind{"kafka", [] { return std::unique_ptr<SourceFixture>(new KafkaFixture()); }},
                      Kind{"socket", [] { return std::unique_ptr<SourceFixture>(new SocketFixture()); }}),
    [](const ::testing::TestParamInfo<Kind>& info) { return info.param.name; });

// ---- kind-independent ----

TEST(SourceRegistry, KindsByNameAndTheirTraits) {
  EXPECT_EQ(SourceKindNames(), (std::vector<std::string>{"generator", "kafka", "socket"}));
  for (const std::string& name : SourceKindNames()) {
    auto kind = SourceKindFromName(name);
    ASSERT_TRUE(kind.ok()) << kind.status();
  }
  auto ftp = SourceKindFromName("ftp");
  ASSERT_FALSE(ftp.ok());
  EXPECT_EQ(ftp.status().message(), "'ftp' is not generator, kafka or socket");

  proto::SourceSpec spec;
  spec.set_kind(proto::SOURCE_KIND_GENERATOR);
  EXPECT_TRUE(IsReplayable(spec));
  EXPECT_FALSE(CommitsPositions(spec));
  EXPECT_EQ(InitialNextOffset(spec), 0);
  spec.set_kind(proto::SOURCE_KIND_KAFKA);
  EXPECT_TRUE(IsReplayable(spec));
  EXPECT_TRUE(CommitsPositions(spec));
  EXPECT_EQ(InitialNextOffset(spec), -1);  // the first reader's start position
  spec.set_kind(proto::SOURCE_KIND_SOCKET);
  EXPECT_FALSE(IsReplayable(spec));
  EXPECT_FALSE(CommitsPositions(spec));
  EXPECT_EQ(InitialNextOffset(spec), 0);
}

TEST(SourceRegistry, AnUnknownKindNamesTheField) {
  proto::SourceSpec spec;
  spec.set_name("mystery");
  Status st = NormalizeSourceSpec(&spec);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "source 'mystery': kind: must be generator, kafka or socket");
  FakeClock clock;
  auto c = SourceConnector::Create(spec, &clock);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SourceRegistry, DefaultsPerKind) {
  proto::SourceSpec g;
  g.set_name("g");
  g.set_kind(proto::SOURCE_KIND_GENERATOR);
  ASSERT_TRUE(NormalizeSourceSpec(&g).ok());
  EXPECT_EQ(g.partitions(), 1);
  EXPECT_EQ(g.replication(), 1);
  EXPECT_EQ(g.max_event_bytes(), 1 << 20);
  EXPECT_EQ(g.generator().seed(), 1u);
  EXPECT_EQ(g.generator().num_keys(), 100'000);
  EXPECT_EQ(g.generator().payload_bytes(), 600);

  proto::SourceSpec k;
  k.set_name("k");
  k.set_kind(proto::SOURCE_KIND_KAFKA);
  k.mutable_kafka()->set_brokers("127.0.0.1:9092");
  k.mutable_kafka()->set_topic("t");
  ASSERT_TRUE(NormalizeSourceSpec(&k).ok());
  EXPECT_EQ(k.partitions(), 0);  // the topic's, asked when registered
  EXPECT_EQ(k.kafka().start(), "earliest");
  EXPECT_EQ(k.replication(), 1);

  proto::SourceSpec s;
  s.set_name("s");
  s.set_kind(proto::SOURCE_KIND_SOCKET);
  s.mutable_socket()->add_addresses("127.0.0.1:1");
  s.mutable_socket()->add_addresses("127.0.0.1:2");
  ASSERT_TRUE(NormalizeSourceSpec(&s).ok());
  EXPECT_EQ(s.partitions(), 2);  // one per address
  EXPECT_EQ(s.socket().framing(), "lines");
  EXPECT_EQ(s.replication(), 2);  // the receiver WAL
}

TEST(SourceRegistry, TheGeneratorIsStampedOnceAndARetryIsTheSameSpec) {
  proto::SourceSpec spec;
  spec.set_name("g");
  spec.set_kind(proto::SOURCE_KIND_GENERATOR);
  spec.mutable_generator()->set_rate_per_partition(100);
  ASSERT_TRUE(NormalizeSourceSpec(&spec).ok());
  proto::SourceSpec recorded = spec;
  StampSourceSpec(&recorded, 1'000);
  EXPECT_EQ(recorded.generator().available_from_unix_ms(), 1'000);
  StampSourceSpec(&recorded, 2'000);  // stamped already: kept
  EXPECT_EQ(recorded.generator().available_from_unix_ms(), 1'000);

  proto::SourceSpec retry = spec;
  StampSourceSpec(&retry, 5'000);
  EXPECT_TRUE(SameSourceSpec(recorded, retry));
  retry.mutable_generator()->set_rate_per_partition(200);
  EXPECT_FALSE(SameSourceSpec(recorded, retry));

  // Kinds without a stamp compare as they are.
  proto::SourceSpec k;
  k.set_name("k");
  k.set_kind(proto::SOURCE_KIND_KAFKA);
  proto::SourceSpec k2 = k;
  StampSourceSpec(&k2, 5'000);
  EXPECT_TRUE(SameSourceSpec(k, k2));
  k2.set_partitions(3);
  EXPECT_FALSE(SameSourceSpec(k, k2));
}

TEST(ConnectorCache, KeepsConnectorsBySpecAndBoundsThem) {
  FakeClock clock;
  ConnectorCache cache(&clock, 2);
  auto spec = [](const std::string& name, int64_t seed) {
    proto::SourceSpec s;
    s.set_name(name);
    s.set_kind(proto::SOURCE_KIND_GENERATOR);
    s.mutable_generator()->set_seed(seed);
    EXPECT_TRUE(NormalizeSourceSpec(&s).ok());
    return s;
  };
  auto a = cache.Get(spec("a", 1));
  ASSERT_TRUE(a.ok()) << a.status();
  auto a_again = cache.Get(spec("a", 1));
  ASSERT_TRUE(a_again.ok());
  EXPECT_EQ(a->get(), a_again->get());  // kept
  auto a_changed = cache.Get(spec("a", 2));
  ASSERT_TRUE(a_changed.ok());
  EXPECT_NE(a->get(), a_changed->get());  // another spec under the name replaces it
  EXPECT_EQ((*a_changed)->spec().generator().seed(), 2u);
  EXPECT_EQ(cache.size(), 1u);
  ASSERT_TRUE(cache.Get(spec("b", 1)).ok());
  ASSERT_TRUE(cache.Get(spec("c", 1)).ok());
  EXPECT_EQ(cache.size(), 2u);  // the least recently used went
  // A connector handed out stays usable after it left the cache.
  auto block = (*a_changed)->ReadRange(0, 0, 10, std::chrono::seconds(1));
  ASSERT_TRUE(block.ok()) << block.status();
  EXPECT_EQ(block->records(), 10);

  proto::SourceSpec bad;
  bad.set_name("bad");
  EXPECT_FALSE(cache.Get(bad).ok());
}

}  // namespace
}  // namespace sluice::source
