// The data path with real processes: driverd and workerd over gRPC,
// ZooKeeper, the Kafka mock. Receivers follow the leader's assignment as
// workers join and die; blocks are contiguous per partition, every event in
// exactly one block; socket blocks survive their receiver through the
// replica; a full block store pauses the source with memory bounded.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/worker_client.h"
#include "lib/format/block.h"
#include "lib/worker/executor.h"
#include "test/harness/certs.h"
#include "test/harness/local_cluster.h"
#include "test/harness/paths.h"
#include "test/harness/subprocess.h"
#include "test/harness/util.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::LocalCluster;
using testing::TempDir;

// The serving leader's address, or "".
std::string Leader(LocalCluster& c) {
  for (int i = 0; i < c.num_drivers(); ++i) {
    if (c.driver(i) == nullptr) continue;
    Result<proto::DriverStatus> st = testing::GetDriverStatus(c.driver_address(i), milliseconds(300));
    if (st.ok() && st->role() == proto::DRIVER_ROLE_LEADER && st->wal().serving()) return c.driver_address(i);
  }
  return "";
}

std::string WaitForLeader(LocalCluster& c) {
  std::string leader;
  EXPECT_TRUE(testing::WaitUntil([&] { return !(leader = Leader(c)).empty(); }, milliseconds(20'000)));
  return leader;
}

Result<proto::SourceSpec> Register(const std::string& leader, const proto::SourceSpec& spec) {
  proto::RegisterSourceRequest request;
  *request.mutable_spec() = spec;
  ASSIGN_OR_RETURN(proto::RegisterSourceResponse response,
                   rpc::DriverClient(testing::Channels(), leader).RegisterSource(request, milliseconds(15'000)));
  return response.spec();
}

Result<proto::SourceInfo> List(const std::string& leader, const std::string& source) {
  proto::ListSourcesRequest request;
  request.set_source(source);
  request.set_with_blocks(true);
  ASSIGN_OR_RETURN(proto::ListSourcesResponse response,
                   rpc::DriverClient(testing::Channels(), leader).ListSources(request, milliseconds(3'000)));
  if (response.sources_size() != 1) return absl::NotFoundError("no source " + source);
  return response.sources(0);
}

int64_t Records(const proto::SourceInfo& s) {
  int64_t n = 0;
  for (const proto::PartitionInfo& p : s.partitions()) n += p.records();
  return n;
}

// Waits until the leader reports `records` records in `source`'s blocks.
proto::SourceInfo WaitForRecords(LocalCluster& c, const std::string& source, int64_t records,
                                 milliseconds timeout = milliseconds(60'000)) {
  proto::SourceInfo last;
  const bool ok = testing::WaitUntil(
      [&] {
        const std::string leader = Leader(c);
        if (leader.empty()) return false;
        Result<proto::SourceInfo> s = List(leader, source);
        if (!s.ok()) return false;
        last = *s;
        return Records(last) >= records;
      },
      timeout, milliseconds(200));
  EXPECT_TRUE(ok) << "the leader holds " << Records(last) << " records of " << source << ", want " << records;
  return last;
}

// Blocks of each partition start where the previous one ended, from `first`.
void ExpectContiguous(const proto::SourceInfo& s, int64_t first) {
  for (const proto::PartitionInfo& p : s.partitions()) {
    int64_t next = first;
    for (const proto::BlockInfo& b : p.block_list()) {
      EXPECT_EQ(b.range().start_offset(), next) << "partition " << p.partition();
      EXPECT_GT(b.range().end_offset(), b.range().start_offset());
      next = b.range().end_offset();
    }
    EXPECT_EQ(p.next_offset(), next) << "partition " << p.partition();
  }
}

Result<format::Block> Fetch(const std::string& worker, const proto::PartitionRange& r) {
  rpc::WorkerClient client(testing::Channels(), worker);
  return worker::FetchRemoteBlock(client, r);
}

std::map<std::string, int> WorkerLoad(const proto::SourceInfo& s) {
  std::map<std::string, int> load;
  for (const proto::PartitionInfo& p : s.partitions()) ++load[p.worker()];
  return load;
}

void Produce(const TempDir& dir, const std::string& brokers, int first, int count) {
  auto rc = testing::RunCommand({testing::kKafkaToolPath, "produce", "--brokers", brokers, "--topic", "events",
                                 "--count", std::to_string(count), "--size", "200", "--first",
                                 std::to_string(first)},
                                dir.path() + "/produce.log", milliseconds(60'000));
  ASSERT_TRUE(rc.ok() && *rc == 0) << testing::ReadFile(dir.path() + "/produce.log").value_or("");
}

TEST(DataPathTest, KafkaPartitionsFollowTheWorkersWithEveryEventInExactlyOneBlock) {
  TempDir dir("data-path-kafka");
  auto cluster = LocalCluster::Start({.dir = dir.path(),
                                      .drivers = 3,
                                      .workers = 3,
                                      .kafka_topics = {{"events", 8}},
                                      .worker_flags = {"--block-interval-ms", "100"}});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster& c = **cluster;
  c.StopWorker(2);  // joins later: scaling out is starting another workerd
  const std::string brokers = c.kafka()->bootstrap();
  Produce(dir, brokers, 0, 8000);

  proto::SourceSpec spec;
  spec.set_name("events");
  spec.set_kind(proto::SOURCE_KIND_KAFKA);
  spec.mutable_kafka()->set_brokers(brokers);
  spec.mutable_kafka()->set_topic("events");
  Result<proto::SourceSpec> registered = Register(WaitForLeader(c), spec);
  ASSERT_TRUE(registered.ok()) << registered.status();
  EXPECT_EQ(registered->partitions(), 8);  // asked of the broker
  EXPECT_EQ(registered->replication(), 1);
  EXPECT_EQ(registered->kafka().start(), "earliest");

  proto::SourceInfo s = WaitForRecords(c, "events", 8000);
  ExpectContiguous(s, 0);
  EXPECT_EQ(WorkerLoad(s), (std::map<std::string, int>{{"worker-1", 4}, {"worker-2", 4}}));

  // A third worker takes its share; then worker-1 dies and its partitions move.
  ASSERT_TRUE(c.StartWorker(2).ok());
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        Result<proto::SourceInfo> got = List(Leader(c), "events");
        return got.ok() && WorkerLoad(*got).size() == 3 && !WorkerLoad(*got).contains("");
      },
      milliseconds(20'000), milliseconds(200)));
  Produce(dir, brokers, 8000, 8000);
  c.KillWorker(0);
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        Result<proto::SourceInfo> got = List(Leader(c), "events");
        return got.ok() && WorkerLoad(*got) == std::map<std::string, int>{{"worker-2", 4}, {"worker-3", 4}};
      },
      milliseconds(30'000), milliseconds(200)));
  Produce(dir, brokers, 16000, 8000);
  // And the leader dies: the new one learns the holdings from the workers.
  const std::string old_leader = Leader(c);
  for (int i = 0; i < c.num_drivers(); ++i) {
    if (c.driver_address(i) == old_leader) c.KillDriver(i);
  }
  Produce(dir, brokers, 24000, 8000);
  s = WaitForRecords(c, "events", 32000);
  ExpectContiguous(s, 0);
  EXPECT_EQ(Records(s), 32000);

  // Every event is in exactly one block: read every block a live worker holds;
  // the blocks only worker-1 held are lost, to be recomputed from lineage.
  std::map<int, int> seen;  // id -> times
  int64_t lost_records = 0;
  for (const proto::PartitionInfo& p : s.partitions()) {
    for (const proto::BlockInfo& b : p.block_list()) {
      if (b.holders().empty()) {
        lost_records += b.records();
        continue;
      }
      const int w = b.holders(0) == "worker-2" ? 1 : 2;
      ASSERT_THAT(b.holders(0), ::testing::AnyOf("worker-2", "worker-3"));
      Result<format::Block> block = Fetch(c.worker_address(w), b.range());
      ASSERT_TRUE(block.ok()) << block.status();
      EXPECT_EQ(block->records(), b.records());
      ASSERT_TRUE(block
                      ->ForEach([&](std::string_view r) {
                        ASSERT_EQ(r.substr(0, 3), "id=");
                        ++seen[std::stoi(std::string(r.substr(3, r.find(';') - 3)))];
                      })
                      .ok());
    }
  }
  for (const auto& [id, times] : seen) ASSERT_EQ(times, 1) << "id " << id << " is in " << times << " blocks";
  EXPECT_EQ(static_cast<int64_t>(seen.size()) + lost_records, 32000);
  EXPECT_GT(lost_records, 0);  // worker-1 held some: they are not silently re-read into new blocks
}

// A TCP server that sends `lines` to the first connection and then holds it.
class LineServer {
 public:
  explicit LineServer(std::string payload) : payload_(std::move(payload)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(fd_, 8);
    thread_ = std::thread([this] { Run(); });
  }
  ~LineServer() {
    stop_ = true;
    thread_.join();
    for (int c : conns_) ::close(c);
    ::close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_; }

 private:
  void Run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      conns_.push_back(c);
      if (connections_++ == 0) {
        size_t sent = 0;
        while (sent < payload_.size()) {
          ssize_t n = ::send(c, payload_.data() + sent, payload_.size() - sent, MSG_NOSIGNAL);
          if (n <= 0) break;
          sent += n;
        }
      }
    }
  }

  const std::string payload_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::vector<int> conns_;
  std::thread thread_;
};

TEST(DataPathTest, SocketBlocksOutliveTheirReceiverThroughTheReplica) {
  constexpr int kLines = 20'000;
  std::string payload;
  for (int i = 0; i < kLines; ++i) {
    payload += fmt::format("line-{:06d} {}\n", i, std::string(40, 'x'));
    if (i == 777) payload += std::string(5000, 'z') + "\n";  // over the limit: a dead letter
  }
  LineServer server(payload);
  TempDir dir("data-path-socket");
  auto cluster = LocalCluster::Start({.dir = dir.path(), .drivers = 1, .workers = 2});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster& c = **cluster;

  proto::SourceSpec spec;
  spec.set_name("lines");
  spec.set_kind(proto::SOURCE_KIND_SOCKET);
  spec.set_max_event_bytes(1000);
  spec.mutable_socket()->add_addresses(server.address());
  Result<proto::SourceSpec> registered = Register(WaitForLeader(c), spec);
  ASSERT_TRUE(registered.ok()) << registered.status();
  EXPECT_EQ(registered->replication(), 2);  // not replayable: the receiver WAL

  // Acknowledged: every line is in a block the leader committed, two copies each.
  proto::SourceInfo s = WaitForRecords(c, "lines", kLines);
  ExpectContiguous(s, 0);
  const proto::PartitionInfo& p = s.partitions(0);
  EXPECT_EQ(p.next_offset(), kLines + 1);  // the dead letter has its offset
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        Result<proto::SourceInfo> got = List(Leader(c), "lines");
        return got.ok() && got->partitions(0).receiver().dead_letters() == 1;
      },
      milliseconds(5'000), milliseconds(100)));
  for (const proto::BlockInfo& b : p.block_list()) EXPECT_EQ(b.holders_size(), 2);
  const int receiving = p.worker() == "worker-1" ? 0 : 1;
  ASSERT_EQ(p.worker(), c.worker_id(receiving));

  c.KillWorker(receiving);
  const int other = 1 - receiving;
  std::vector<std::string> lines;
  for (const proto::BlockInfo& b : p.block_list()) {
    Result<format::Block> block = Fetch(c.worker_address(other), b.range());
    ASSERT_TRUE(block.ok()) << block.status();
    ASSERT_TRUE(block->ForEach([&](std::string_view r) { lines.emplace_back(r); }).ok());
  }
  ASSERT_EQ(lines.size(), static_cast<size_t>(kLines));
  for (int i = 0; i < kLines; ++i) ASSERT_EQ(lines[i].substr(0, 11), fmt::format("line-{:06d}", i));
  // The leader sees no block lost; the partition moved to the survivor, which
  // reconnects to the socket.
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        Result<proto::SourceInfo> got = List(Leader(c), "lines");
        return got.ok() && got->partitions(0).worker() == c.worker_id(other) &&
               got->partitions(0).lost_blocks() == 0;
      },
      milliseconds(20'000), milliseconds(200)));
  EXPECT_TRUE(testing::WaitUntil([&] { return server.connections() >= 2; }, milliseconds(10'000)));
}

int64_t RssBytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      int64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
  }
  return -1;
}

TEST(DataPathTest, AFullBlockStorePausesTheSourceWithMemoryBounded) {
  TempDir dir("data-path-backpressure");
  auto cluster = LocalCluster::Start({.dir = dir.path(),
                                      .drivers = 1,
                                      .workers = 1,
                                      .worker_flags = {"--block-memory-mb", "4", "--block-disk-mb", "4",
                                                       "--block-interval-ms", "50"}});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster& c = **cluster;
  proto::SourceSpec spec;
  spec.set_name("gen");
  spec.set_kind(proto::SOURCE_KIND_GENERATOR);
  spec.set_partitions(2);
  spec.set_max_rate_per_partition(40'000);  // 2,000 events (1.2 MB) per 50 ms block
  ASSERT_TRUE(Register(WaitForLeader(c), spec).ok());

  // Nothing consumes the blocks: the store fills and both receivers pause.
  proto::WorkerStatus st;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        Result<proto::WorkerStatus> got = testing::GetWorkerStatus(c.worker_address(0));
        if (!got.ok()) return false;
        st = *got;
        return st.receivers_size() == 2 && st.receivers(0).paused() && st.receivers(1).paused();
      },
      milliseconds(30'000), milliseconds(100)))
      << st.DebugString();
  const int64_t budget = 8 << 20;
  EXPECT_LE(st.store().memory_bytes(), st.store().memory_budget_bytes());
  EXPECT_LE(st.store().disk_bytes(), st.store().disk_budget_bytes());
  EXPECT_GT(st.store().memory_bytes() + st.store().disk_bytes(), budget / 2);
  const int64_t offsets = st.receivers(0).next_offset() + st.receivers(1).next_offset();
  std::this_thread::sleep_for(milliseconds(1500));
  Result<proto::WorkerStatus> later = testing::GetWorkerStatus(c.worker_address(0));
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->receivers(0).next_offset() + later->receivers(1).next_offset(), offsets)
      << "a paused source reads nothing";
  EXPECT_TRUE(later->receivers(0).paused() && later->receivers(1).paused());
  // Bounded: the budget, plus at most one held block per receiver, plus the
  // process's own footprint — far from the ~100 MB the generator would have
  // produced by now.
  const int64_t rss = RssBytes(c.worker(0)->pid());
  EXPECT_GT(rss, 0);
  EXPECT_LT(rss, 120 << 20) << "worker RSS " << rss;
  // Everything stored was reported and accepted: nothing dropped.
  proto::SourceInfo s = WaitForRecords(c, "gen", offsets);
  ExpectContiguous(s, 0);
  EXPECT_EQ(Records(s), offsets);
}

// The leader's side of the protocol, driven by hand as a worker would: the
// contiguity rule, retries, the epoch fence, and registration first.
TEST(DataPathTest, TheLeaderRefusesBlocksThatWouldSkipOrRepeatOffsets) {
  TempDir dir("data-path-protocol");
  auto cluster = LocalCluster::Start({.dir = dir.path(), .drivers = 1, .workers = 0});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster& c = **cluster;
  const std::string leader = WaitForLeader(c);
  proto::SourceSpec spec;
  spec.set_name("gen");
  spec.set_kind(proto::SOURCE_KIND_GENERATOR);
  spec.set_partitions(1);
  ASSERT_TRUE(Register(leader, spec).ok());
  // The same spec again is a retry; another spec under the name is refused.
  ASSERT_TRUE(Register(leader, spec).ok());
  proto::SourceSpec other = spec;
  other.set_partitions(3);
  EXPECT_EQ(Register(leader, other).status().code(), absl::StatusCode::kAlreadyExists);
  proto::SourceSpec bad = spec;
  bad.set_name("bad");
  bad.mutable_generator()->set_payload_bytes(10);
  Result<proto::SourceSpec> refused = Register(leader, bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), ::testing::HasSubstr("payload_bytes"));

  Result<proto::DriverStatus> ds = testing::GetDriverStatus(leader);
  ASSERT_TRUE(ds.ok());
  const int64_t epoch = ds->epoch();
  // The test plays a worker: a worker's certificate.
  rpc::ChannelCache as_worker(testing::TestRpcOptions("worker"));
  rpc::DriverClient driver(as_worker, leader);
  auto block = [](int64_t start, int64_t end) {
    proto::BlockInfo b;
    b.mutable_range()->set_source("gen");
    b.mutable_range()->set_partition(0);
    b.mutable_range()->set_start_offset(start);
    b.mutable_range()->set_end_offset(end);
    b.set_records(end - start);
    b.add_holders("fake");
    return b;
  };
  auto report = [&](int64_t e, std::vector<proto::BlockInfo> blocks, proto::ReportBlocksResponse* response) {
    proto::ReportBlocksRequest request;
    request.set_epoch(e);
    request.set_worker_id("fake");
    for (auto& b : blocks) *request.add_blocks() = b;
    return rpc::MoveInto(driver.ReportBlocks(request, milliseconds(5'000)), response);
  };
  proto::ReportBlocksResponse response;
  EXPECT_EQ(report(epoch, {block(0, 10)}, &response).code(), absl::StatusCode::kAborted)
      << "reports come after registration";
  {
    proto::RegisterWorkerRequest request;
    request.set_epoch(epoch);
    request.mutable_worker()->set_id("fake");
    ASSERT_TRUE(driver.RegisterWorker(request).ok());
  }
  response.Clear();
  ASSERT_TRUE(report(epoch, {block(0, 10), block(10, 25), block(30, 40), block(10, 25)}, &response).ok());
  EXPECT_THAT(response.verdicts(),
              ::testing::ElementsAre(proto::BLOCK_VERDICT_ACCEPTED, proto::BLOCK_VERDICT_ACCEPTED,
                                     proto::BLOCK_VERDICT_REJECTED,    // a gap: 25..30 never read
                                     proto::BLOCK_VERDICT_DUPLICATE));  // a retry of an accepted block
  EXPECT_THAT(response.reasons(2), ::testing::HasSubstr("next offset 25"));
  response.Clear();
  ASSERT_TRUE(report(epoch, {block(20, 30)}, &response).ok());
  EXPECT_THAT(response.verdicts(), ::testing::ElementsAre(proto::BLOCK_VERDICT_REJECTED))  // overlaps 10..25
      << "an offset in two blocks";
  EXPECT_EQ(report(epoch - 1, {block(25, 30)}, &response).code(), absl::StatusCode::kFailedPrecondition);

  Result<proto::SourceInfo> s = List(leader, "gen");
  ASSERT_TRUE(s.ok());
  ExpectContiguous(*s, 0);
  EXPECT_EQ(s->partitions(0).next_offset(), 25);
  EXPECT_EQ(Records(*s), 25);
  // The accepted blocks are in the WAL: a restarted leader still has them.
  c.StopDriver(0);
  ASSERT_TRUE(c.StartDriver(0).ok());
  s = List(WaitForLeader(c), "gen");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->partitions(0).next_offset(), 25);
  EXPECT_EQ(s->partitions(0).blocks(), 2);
}

}  // namespace
}  // namespace sluice
