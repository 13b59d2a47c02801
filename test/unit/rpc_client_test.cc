// lib/rpc's clients against fake services on loopback: channels cached per
// address, answers and error codes passed through, deadlines, streams in
// both directions (a producer's error cancels the call), the retry policy,
// the leader-finding call, and the WAL's adapter over WalPeerClient.
#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "lib/common/version.h"
#include "lib/rpc/auth.h"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/rpc.h"
#include "lib/rpc/wal_peer_client.h"
#include "lib/rpc/worker_client.h"
#include "lib/wal/wal_peer.h"
#include "proto/driver.grpc.pb.h"
#include "proto/wal.grpc.pb.h"
#include "proto/worker.grpc.pb.h"

namespace sluice::rpc {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

class FakeWorker final : public proto::WorkerService::Service {
 public:
  grpc::Status GetStatus(grpc::ServerContext*, const proto::GetWorkerStatusRequest*,
                         proto::WorkerStatus* response) override {
    if (unavailable_answers_.fetch_sub(1) > 0) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "not yet");
    response->set_slots(7);
    return grpc::Status::OK;
  }
  grpc::Status LeaderHeartbeat(grpc::ServerContext*, const proto::LeaderHeartbeatRequest* request,
                               proto::LeaderHeartbeatResponse* response) override {
    if (request->epoch() < 5) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "stale leader epoch");
    response->set_worker_id("w1");
    return grpc::Status::OK;
  }
  grpc::Status RunTask(grpc::ServerContext*, const proto::TaskRequest*, proto::TaskResult*) override {
    std::this_thread::sleep_for(milliseconds(300));
    return grpc::Status::OK;
  }
  grpc::Status FetchBlock(grpc::ServerContext*, const proto::BlockRef* ref,
                          grpc::ServerWriter<proto::BlockChunk>* writer) override {
    if (ref->source() != "s") return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such block");
    for (const char* part : {"a", "b", "c"}) {
      proto::BlockChunk chunk;
      chunk.set_data(part);
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }
  grpc::Status PushShuffle(grpc::ServerContext*, grpc::ServerReader<proto::ShuffleChunk>* reader,
                           proto::PushShuffleResponse* response) override {
    proto::ShuffleChunk chunk;
    int64_t bytes = 0;
    while (reader->Read(&chunk)) bytes += static_cast<int64_t>(chunk.rows().size());
    response->set_bytes(bytes);
    return grpc::Status::OK;
  }

  // A state stream of 6 chunks, 150 ms apart; with base_batch 1, it stalls
  // after the 2nd (until the client goes away).
  grpc::Status FetchState(grpc::ServerContext* ctx, const proto::FetchStateRequest* request,
                          grpc::ServerWriter<proto::StateChunk>* writer) override {
    for (int i = 0; i < 6; ++i) {
      if (request->base_batch() == 1 && i == 2) {
        while (!ctx->IsCancelled()) std::this_thread::sleep_for(milliseconds(20));
        return grpc::Status(grpc::StatusCode::CANCELLED, "gone");
      }
      proto::StateChunk chunk;
      chunk.set_last(i == 5);
      writer->Write(chunk);
      std::this_thread::sleep_for(milliseconds(150));
    }
    return grpc::Status::OK;
  }

  // Fails naming two peers it could not reach.
  grpc::Status DropBlocks(grpc::ServerContext*, const proto::DropBlocksRequest*, proto::DropBlocksResponse*) override {
    return ToGrpc(NamingUnreachable(absl::UnavailableError("could not push"), {"w2", "w3"}));
  }

  std::atomic<int> unavailable_answers_{0};
};

class FakeDriver final : public proto::DriverService::Service {
 public:
  explicit FakeDriver(bool serving) : serving_(serving) {}
  grpc::Status GetStatus(grpc::ServerContext*, const proto::GetDriverStatusRequest*,
                         proto::DriverStatus* response) override {
    response->set_role(serving_ ? proto::DRIVER_ROLE_LEADER : proto::DRIVER_ROLE_STANDBY);
    response->mutable_wal()->set_serving(serving_);
    return grpc::Status::OK;
  }
  grpc::Status ListJobs(grpc::ServerContext*, const proto::ListJobsRequest*, proto::ListJobsResponse* response) override {
    if (!serving_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "a standby");
    response->add_jobs()->set_job_id("j1");
    return grpc::Status::OK;
  }

 private:
  const bool serving_;
};

// A driver whose handlers check as the real ones do (SLUICE_AUTHORIZE).
class CheckingDriver final : public proto::DriverService::Service {
 public:
  grpc::Status GetStatus(grpc::ServerContext* context, const proto::GetDriverStatusRequest*,
                         proto::DriverStatus*) override {
    SLUICE_AUTHORIZE(context, "DriverService.GetStatus");
    return grpc::Status::OK;
  }
  grpc::Status ListJobs(grpc::ServerContext* context, const proto::ListJobsRequest*,
                        proto::ListJobsResponse*) override {
    SLUICE_AUTHORIZE(context, "DriverService.ListJobs");
    return grpc::Status::OK;
  }
};

class FakeWal final : public proto::WalService::Service {
 public:
  grpc::Status Append(grpc::ServerContext*, const proto::WalAppendRequest* request,
                      proto::WalAppendResponse* response) override {
    last_append_ = request->SerializeAsString();
    return grpc::Status::OK;
  }
  std::string last_append_;
};

template <typename Service>
std::unique_ptr<RpcServer> Serve(Service* service) {
  auto server = RpcServer::Start("127.0.0.1:0", {service});
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(ChannelCache, OneChannelPerAddressReused) {
  ChannelCache channels;
  auto a = channels.Get("127.0.0.1:1");
  EXPECT_EQ(channels.Get("127.0.0.1:1"), a);
  EXPECT_NE(channels.Get("127.0.0.1:2"), a);
  EXPECT_EQ(channels.size(), 2u);
  // Clients share the cached channel rather than making their own.
  WorkerClient w(channels, "127.0.0.1:1");
  DriverClient d(channels, "127.0.0.1:2");
  EXPECT_EQ(channels.size(), 2u);
}

// A cached channel polled while nothing listens (a daemon starting, or
// restarting on its old port) reaches the server soon after it is up.
TEST(ChannelCache, ReachesAPeerThatComesUpLater) {
  FakeWorker fake;
  std::string address;
  {
    auto first = Serve(&fake);
    ASSERT_NE(first, nullptr);
    address = first->address();
  }
  ChannelCache channels;
  WorkerClient worker(channels, address);
  const auto until = std::chrono::steady_clock::now() + milliseconds(3000);
  while (std::chrono::steady_clock::now() < until) {
    EXPECT_FALSE(worker.GetStatus(milliseconds(500)).ok());
    std::this_thread::sleep_for(milliseconds(50));
  }
  auto again = RpcServer::Start(address, {&fake});
  ASSERT_TRUE(again.ok()) << again.status();
  const auto up = std::chrono::steady_clock::now();
  Status st;
  while (!(st = worker.GetStatus(milliseconds(500)).status()).ok() &&
         std::chrono::steady_clock::now() - up < milliseconds(15'000)) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_LT(std::chrono::steady_clock::now() - up, milliseconds(2500));
}

TEST(WorkerClient, AnswersErrorsAndDeadlines) {
  FakeWorker fake;
  auto server = Serve(&fake);
  ASSERT_NE(server, nullptr);
  ChannelCache channels;
  WorkerClient worker(channels, server->address());

  proto::LeaderHeartbeatRequest beat;
  beat.set_epoch(5);
  Result<proto::LeaderHeartbeatResponse> ok = worker.LeaderHeartbeat(beat);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->worker_id(), "w1");
  beat.set_epoch(4);
  Status stale = worker.LeaderHeartbeat(beat).status();
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(stale.message()), HasSubstr("stale leader epoch"));

  EXPECT_EQ(worker.RunTask(proto::TaskRequest(), milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(worker.RunTask(proto::TaskRequest()).ok());

  // Nobody listens there: UNAVAILABLE, not a hang.
  Status down = WorkerClient(channels, "127.0.0.1:1").GetStatus(milliseconds(2000)).status();
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable) << down;
}

// The peers a server names in its error reach the caller with the error.
TEST(WorkerClient, ErrorsNameUnreachablePeersAcrossTheWire) {
  Status named = NamingUnreachable(NamingUnreachable(absl::DeadlineExceededError("slow"), {"w2"}), {"w3", "w2"});
  EXPECT_THAT(UnreachablePeers(named), ::testing::ElementsAre("w2", "w3"));
  EXPECT_THAT(UnreachablePeers(FromGrpc(ToGrpc(named))), ::testing::ElementsAre("w2", "w3"));
  EXPECT_EQ(FromGrpc(ToGrpc(named)).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(UnreachablePeers(absl::UnavailableError("plain")).empty());
  EXPECT_TRUE(NamingUnreachable(absl::OkStatus(), {"w2"}).ok());
  EXPECT_TRUE(IsUnreachable(absl::UnavailableError("")) && IsUnreachable(absl::DeadlineExceededError("")));
  EXPECT_FALSE(IsUnreachable(absl::FailedPreconditionError("")));

  FakeWorker fake;
  auto server = Serve(&fake);
  ASSERT_NE(server, nullptr);
  ChannelCache channels;
  Status st = WorkerClient(channels, server->address()).DropBlocks(proto::DropBlocksRequest()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_THAT(UnreachablePeers(st), ::testing::ElementsAre("w2", "w3"));
}

TEST(WorkerClient, Streams) {
  FakeWorker fake;
  auto server = Serve(&fake);
  ASSERT_NE(server, nullptr);
  ChannelCache channels;
  WorkerClient worker(channels, server->address());

  proto::BlockRef ref;
  ref.set_source("s");
  std::string data;
  ASSERT_TRUE(worker.FetchBlock(ref, [&](proto::BlockChunk&& c) { data += c.data(); }).ok());
  EXPECT_EQ(data, "abc");
  ref.set_source("t");
  EXPECT_EQ(worker.FetchBlock(ref, [](proto::BlockChunk&&) {}).code(), absl::StatusCode::kNotFound);

  Result<proto::PushShuffleResponse> pushed = worker.PushShuffle([](const ChunkWriter<proto::ShuffleChunk>& write) {
    for (int i = 0; i < 3; ++i) {
      proto::ShuffleChunk chunk;
      chunk.set_rows("rows");
      if (!write(chunk)) break;
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->bytes(), 12);

  // A producer that fails cancels the call: its error is the answer.
  Status failed = worker
                      .PushShuffle([](const ChunkWriter<proto::ShuffleChunk>& write) -> Status {
                        proto::ShuffleChunk chunk;
                        chunk.set_rows("partial");
                        write(chunk);
                        return absl::DataLossError("cannot read the state");
                      })
                      .status();
  EXPECT_EQ(failed.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(failed.message(), "cannot read the state");
}

// A copy is bounded by its progress: a stream longer than the idle limit
// that keeps sending goes to its end; one that stops sending ends after the
// idle limit, saying so, well before its overall deadline; and one whose
// caller stops ends then (CANCELLED).
TEST(WorkerClient, AStreamWithAnIdleLimitEndsWhenItStopsSendingNotWhenItIsLong) {
  FakeWorker fake;
  auto server = Serve(&fake);
  ASSERT_NE(server, nullptr);
  ChannelCache channels;
  WorkerClient worker(channels, server->address());
  const StreamIdle idle{.first = milliseconds(1'000), .between = milliseconds(600)};
  proto::FetchStateRequest request;
  int chunks = 0;
  Status st = worker.FetchState(request, [&](proto::StateChunk&&) { ++chunks; }, milliseconds(20'000), idle);
  EXPECT_TRUE(st.ok()) << st;  // ~900 ms in all, never 600 ms without a chunk
  EXPECT_EQ(chunks, 6);

  request.set_base_batch(1);  // stalls after 2 chunks
  chunks = 0;
  auto started = std::chrono::steady_clock::now();
  st = worker.FetchState(request, [&](proto::StateChunk&&) { ++chunks; }, milliseconds(20'000), idle);
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_NE(st.message().find("no chunk of the stream for 600 ms"), std::string::npos) << st;
  EXPECT_EQ(chunks, 2);
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(5'000));

  std::atomic<bool> stop{false};
  chunks = 0;
  started = std::chrono::steady_clock::now();
  st = worker.FetchState(
      request,
      [&](proto::StateChunk&&) {
        if (++chunks == 2) stop = true;
      },
      milliseconds(20'000), StreamIdle{.stopped = [&] { return stop.load(); }});
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled) << st;
  EXPECT_NE(st.message().find("its caller stopped"), std::string::npos) << st;
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(5'000));
}

TEST(WorkerClient, RetriesUnavailableOnlyWhenAsked) {
  FakeWorker fake;
  auto server = Serve(&fake);
  ASSERT_NE(server, nullptr);
  ChannelCache channels;
  fake.unavailable_answers_ = 2;
  EXPECT_EQ(WorkerClient(channels, server->address()).GetStatus().status().code(), absl::StatusCode::kUnavailable);
  WorkerClient patient(channels, server->address(), RetryPolicy{.max_attempts = 3, .initial_backoff = milliseconds(10)});
  Result<proto::WorkerStatus> st = patient.GetStatus(milliseconds(2000));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->slots(), 7);
}

TEST(DriverClient, CallLeaderFindsTheServingLeader) {
  FakeDriver standby(false), leader(true);
  auto s = Serve(&standby);
  auto l = Serve(&leader);
  ASSERT_NE(s, nullptr);
  ASSERT_NE(l, nullptr);
  ChannelCache channels;
  const std::vector<std::string> drivers = {s->address(), l->address()};
  Result<std::string> found = FindServingLeader(channels, drivers, milliseconds(1000));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, l->address());

  Result<proto::ListJobsResponse> jobs = CallLeader(
      channels, drivers, milliseconds(1000), [](DriverClient& d) { return d.ListJobs(proto::ListJobsRequest()); });
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->jobs(0).job_id(), "j1");

  Status none = CallLeader(channels, {s->address()}, milliseconds(1000),
                           [](DriverClient& d) { return d.ListJobs(proto::ListJobsRequest()); })
                    .status();
  EXPECT_EQ(none.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(none.message(), "no serving leader among 1 driver(s)");
}

// Messages over RpcOptions::max_message_bytes are refused by gRPC before
// they are parsed, on the server's receiving side and the channel's sending
// side, as RESOURCE_EXHAUSTED; the server goes on serving.
// Every call carries the caller's protocol; a server refuses one outside
// N-1..N+1 with FAILED_PRECONDITION naming both, but answers GetStatus to all.
TEST(RpcServer, ACallerOfAProtocolTooFarApartIsRefusedNamingBoth) {
  CheckingDriver driver;
  auto server = Serve(&driver);
  ASSERT_NE(server, nullptr);
  ChannelCache channels;
  EXPECT_TRUE(DriverClient(channels, server->address()).ListJobs({}).ok());
  auto stub = proto::DriverService::NewStub(channels.Get(server->address()));
  auto call = [&](std::optional<int> protocol, bool status) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(3000));
    if (protocol) ctx.AddMetadata(std::string(version::kProtocolHeader), std::to_string(*protocol));
    if (status) {
      proto::DriverStatus response;
      return stub->GetStatus(&ctx, {}, &response);
    }
    proto::ListJobsResponse response;
    return stub->ListJobs(&ctx, {}, &response);
  };
  const int n = version::kProtocol;
  EXPECT_TRUE(call(std::nullopt, false).ok()) << "a caller from before the header: protocol 1";
  EXPECT_TRUE(call(n + 1, false).ok());
  grpc::Status far = call(n + 2, false);
  EXPECT_EQ(far.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(far.error_message(), HasSubstr(fmt::format("speaks protocol {}; this build ({}) speaks protocol {}",
                                                         n + 2, kVersion, n)));
  EXPECT_EQ(call(-3, false).error_code(), grpc::StatusCode::FAILED_PRECONDITION) << "malformed";
  EXPECT_TRUE(call(n + 2, true).ok()) << "GetStatus is answered to any protocol";
}

TEST(RpcServer, AMessageOverTheLimitIsRefusedAndTheServerGoesOn) {
  FakeDriver leader(true);
  auto server = RpcServer::Start("127.0.0.1:0", {&leader}, {.max_message_bytes = 1 << 20});
  ASSERT_TRUE(server.ok()) << server.status();
  proto::SubmitJobRequest big;
  big.mutable_spec()->set_name(std::string(2 << 20, 'x'));

  ChannelCache unlimited;  // sends up to the default 64 MiB
  Status st = DriverClient(unlimited, (*server)->address()).SubmitJob(big).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  // Still serving: a small call is answered (FakeDriver has no SubmitJob).
  EXPECT_TRUE(DriverClient(unlimited, (*server)->address()).ListJobs(proto::ListJobsRequest()).ok());
  EXPECT_EQ(DriverClient(unlimited, (*server)->address()).SubmitJob(proto::SubmitJobRequest()).status().code(),
            absl::StatusCode::kUnimplemented);

  ChannelCache limited({.max_message_bytes = 1 << 20});
  st = DriverClient(limited, (*server)->address()).SubmitJob(big).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
}

TEST(WalPeer, GrpcPeerPassesMessagesThrough) {
  FakeWal fake;
  auto server = Serve(&fake);
  ASSERT_NE(server, nullptr);
  ChannelCache channels;
  std::unique_ptr<wal::WalPeer> peer = wal::GrpcWalPeerFactory(&channels, milliseconds(1000))(server->address());
  proto::WalAppendRequest request;
  request.set_epoch(3);
  proto::WalAppendResponse response;
  ASSERT_TRUE(peer->Append(request, &response).ok());
  EXPECT_EQ(fake.last_append_, request.SerializeAsString());
  EXPECT_EQ(channels.size(), 1u);
}

}  // namespace
}  // namespace sluice::rpc
