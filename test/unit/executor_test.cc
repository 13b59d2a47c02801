// Unit tests of the executor's blocks (lib/worker/executor.h) for a map task
// of a job without key_by: blocks held nowhere are recomputed from their
// source, each contiguous run in one read, and the output is byte-identical
// to that of the same task over blocks all held; a source that is not
// replayable is DATA_LOSS. A keyed map task names the reduce workers it
// could not push to.
#include "lib/worker/executor.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/engine/job_file.h"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/rpc.h"
#include "lib/source/generator_source.h"
#include "lib/source/source_connector.h"

namespace sluice::worker {
namespace {

using ::testing::HasSubstr;

constexpr int kBlocks = 6;
constexpr int64_t kPerBlock = 100;

class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/sluice-executor-XXXXXX";
    dir_ = ::mkdtemp(templ);
    ASSERT_TRUE(fence_.Accept(1).ok());
    source_.set_name("gen");
    source_.set_kind(proto::SOURCE_KIND_GENERATOR);
    source_.set_partitions(2);
    source_.mutable_generator()->set_payload_bytes(150);
    ASSERT_TRUE(source::NormalizeSourceSpec(&source_).ok());
    source::StampSourceSpec(&source_, clock_.UnixMillis());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<BlockStore> Store(const std::string& name) {
    auto s = BlockStore::Open({.spill_path = dir_ + "/" + name + "-spill"});
    EXPECT_TRUE(s.ok()) << s.status();
    return std::move(*s);
  }
  // Block i of partition 1, as its receiver cut it.
  format::Block Block(int i) {
    source::GeneratorSource g({.name = "gen", .seed = source_.generator().seed(), .partitions = 2,
                               .num_keys = source_.generator().num_keys(), .payload_size = 150},
                              &clock_);
    format::BlockBuilder b("gen", 1, i * kPerBlock);
    g.ReadInto(1, (i + 1) * kPerBlock, kPerBlock, &b);
    return b.Cut();
  }
  // The task over blocks 0..kBlocks-1 of partition 1, writing to <dir>/<out>.
  proto::TaskRequest Task(const std::string& out) {
    proto::TaskRequest t;
    t.set_epoch(1);
    t.set_job_id("j");
    t.set_batch_id(7);
    t.mutable_spec()->set_name("j");
    t.mutable_spec()->mutable_sink()->mutable_file()->set_path(dir_ + "/" + out);
    t.mutable_spec()->mutable_sink()->mutable_file()->set_format("jsonl");
    *t.mutable_source() = source_;
    t.mutable_range()->set_source("gen");
    t.mutable_range()->set_partition(1);
    t.mutable_range()->set_start_offset(0);
    t.mutable_range()->set_end_offset(kBlocks * kPerBlock);
    for (int i = 0; i < kBlocks; ++i) {
      proto::BlockInfo* b = t.add_blocks();
      b->mutable_range()->set_source("gen");
      b->mutable_range()->set_partition(1);
      b->mutable_range()->set_start_offset(i * kPerBlock);
      b->mutable_range()->set_end_offset((i + 1) * kPerBlock);
      b->set_records(kPerBlock);
      b->set_bytes(static_cast<int64_t>(Block(i).bytes()));
      b->add_holders("a-worker-long-gone");
    }
    return t;
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string dir_;
  engine::PathPolicy paths_{.output_dirs = {"/tmp"}};  // dir_ is under it
  FakeClock clock_;
  EpochFence fence_;
  ShuffleStore shuffle_;
  proto::SourceSpec source_;
};

TEST_F(ExecutorTest, BlocksHeldNowhereAreRecomputedARunAtATimeWithTheSameOutput) {
  // Every block held here.
  auto all = Store("all");
  for (int i = 0; i < kBlocks; ++i) {
    format::Block b = Block(i);
    ASSERT_TRUE(all->Put(&b).ok());
  }
  Executor held("w1", all.get(), &shuffle_, /*state=*/nullptr, &fence_, /*channels=*/nullptr, &paths_, &clock_);
  auto a = held.Run(Task("held"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->input(), kBlocks * kPerBlock);
  EXPECT_EQ(a->blocks_recomputed(), 0);

  // Only blocks 2 and 3 held: 0..1 and 4..5 are two runs, each read again
  // in one read and cut back into the blocks reported.
  auto some = Store("some");
  for (int i : {2, 3}) {
    format::Block b = Block(i);
    ASSERT_TRUE(some->Put(&b).ok());
  }
  Executor lost("w2", some.get(), &shuffle_, /*state=*/nullptr, &fence_, /*channels=*/nullptr, &paths_, &clock_);
  auto b = lost.Run(Task("lost"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->input(), kBlocks * kPerBlock);
  EXPECT_EQ(b->blocks_recomputed(), 4);
  EXPECT_EQ(b->blocks_fetched(), 0);
  ASSERT_FALSE(a->output_name().empty());
  const std::string held_out = Read(a->output_name());
  EXPECT_FALSE(held_out.empty());
  EXPECT_TRUE(held_out == Read(b->output_name())) << "recomputed blocks gave another output";

  // Nothing held at all, again (through the connector the executor kept).
  auto none = Store("none");
  proto::TaskRequest again = Task("none");
  again.set_batch_id(8);
  auto c = lost.Run(again);  // `lost` keeps its connector; store `some` still holds 2 and 3
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->blocks_recomputed(), 4);
  Executor empty("w3", none.get(), &shuffle_, /*state=*/nullptr, &fence_, /*channels=*/nullptr, &paths_, &clock_);
  auto d = empty.Run(Task("none"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->blocks_recomputed(), kBlocks);
  EXPECT_TRUE(held_out == Read(d->output_name()));
}

TEST_F(ExecutorTest, ABlockOfASourceNotReplayableHeldNowhereIsDataLoss) {
  proto::SourceSpec socket;
  socket.set_name("gen");  // the task's ranges name it
  socket.set_kind(proto::SOURCE_KIND_SOCKET);
  socket.mutable_socket()->add_addresses("127.0.0.1:1");
  socket.mutable_socket()->add_addresses("127.0.0.1:2");
  ASSERT_TRUE(source::NormalizeSourceSpec(&socket).ok());
  auto none = Store("none");
  Executor executor("w", none.get(), &shuffle_, /*state=*/nullptr, &fence_, /*channels=*/nullptr, &paths_, &clock_);
  proto::TaskRequest t = Task("out");
  *t.mutable_source() = socket;
  auto r = executor.Run(t);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("gen[1] 0..600 held by no live worker cannot be recomputed"));
}

// A keyed map task pushes to every reduce worker; one it cannot reach is
// named in its error (the leader then stops placing work there), and the
// output for this worker itself is kept.
TEST_F(ExecutorTest, AKeyedMapTaskNamesTheReduceWorkersItCouldNotReach) {
  Result<proto::JobSpec> spec = engine::ParseJobFile(
      "name: j\nbatch_interval: 1s\nsources: [gen]\nreduce_partitions: 3\noperators:\n  - parse: {format: json}\n"
      "  - key_by: key\n  - aggregate: [{fn: count}]\nsink: {stdout: {}}\n",
      "j.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto none = Store("none");
  rpc::ChannelCache channels;
  Executor executor("w", none.get(), &shuffle_, /*state=*/nullptr, &fence_, &channels, &paths_, &clock_);
  proto::TaskRequest t = Task("out");
  *t.mutable_spec() = *spec;
  t.set_stage(proto::TASK_STAGE_MAP);
  t.set_task(0);
  for (const auto& [id, address] : {std::pair{"w", "127.0.0.1:1"}, {"w2", "127.0.0.1:1"}, {"w3", "127.0.0.1:2"}}) {
    proto::MemberInfo* m = t.add_reduce_workers();
    m->set_id(id);
    m->set_rpc_address(address);
  }
  const auto started = std::chrono::steady_clock::now();
  auto r = executor.Run(t);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(rpc::UnreachablePeers(r.status()), ::testing::UnorderedElementsAre("w2", "w3"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, TransferDeadline(0));
  EXPECT_TRUE(shuffle_.Get("j", 7, 0, 0).has_value()) << "the output for this worker itself is kept";
}

TEST(TransferDeadline, AFewSecondsAndTheBytesAt20MBPerSecond) {
  EXPECT_EQ(TransferDeadline(0), std::chrono::milliseconds(3000));
  EXPECT_EQ(TransferDeadline(20'000'000), std::chrono::milliseconds(4000));
  EXPECT_EQ(FetchDeadline(200'000'000), std::chrono::milliseconds(13'000));
}

}  // namespace
}  // namespace sluice::worker
