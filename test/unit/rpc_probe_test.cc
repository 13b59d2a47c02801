// Unit tests of RpcProbe (lib/rpc/rpc_probe.h): a server made with the
// probe counts each call by method and status code, errors included, and
// the labels name methods as auth.h's table does.
#include "lib/rpc/rpc_probe.h"

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "lib/metrics/metrics.h"
#include "lib/rpc/channel_cache.h"
#include "lib/rpc/driver_client.h"
#include "lib/rpc/rpc.h"
#include "proto/driver.grpc.pb.h"

namespace sluice::rpc {
namespace {

using ::testing::HasSubstr;

class FakeDriver final : public proto::DriverService::Service {
 public:
  grpc::Status GetStatus(grpc::ServerContext*, const proto::GetDriverStatusRequest*,
                         proto::DriverStatus* response) override {
    return grpc::Status::OK;
  }
  grpc::Status ListJobs(grpc::ServerContext*, const proto::ListJobsRequest*, proto::ListJobsResponse*) override {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "a standby");
  }
};

TEST(RpcProbe, LabelsNameTheServiceAndMethodAndTheCode) {
  EXPECT_EQ(MethodLabel("/sluice.proto.DriverService/GetStatus"), "DriverService.GetStatus");
  EXPECT_EQ(MethodLabel("/Plain/Call"), "Plain.Call");
  EXPECT_EQ(CodeLabel(0), "OK");
  EXPECT_EQ(CodeLabel(14), "UNAVAILABLE");
  EXPECT_EQ(CodeLabel(16), "UNAUTHENTICATED");
  EXPECT_EQ(CodeLabel(99), "99");
}

TEST(RpcProbe, TheServerCountsCallsByMethodAndCode) {
  metrics::Registry registry;
  auto probe = RpcProbe::Create(&registry);
  ASSERT_TRUE(probe.ok()) << probe.status();
  FakeDriver fake;
  auto server = RpcServer::Start("127.0.0.1:0", {&fake}, {.probe = probe->get()});
  ASSERT_TRUE(server.ok()) << server.status();
  ChannelCache channels;
  DriverClient client(channels, (*server)->address());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(client.GetStatus().ok());
  EXPECT_EQ(client.ListJobs({}).status().code(), absl::StatusCode::kUnavailable);
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("sluice_rpc_server_started_total{method=\"DriverService.GetStatus\"} 3\n"));
  EXPECT_THAT(text,
              HasSubstr("sluice_rpc_server_handled_total{method=\"DriverService.GetStatus\",code=\"OK\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("sluice_rpc_server_handled_total{method=\"DriverService.ListJobs\",code=\"UNAVAILABLE\"} "
                              "1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_rpc_server_handling_seconds_count{method=\"DriverService.ListJobs\"} 1\n"));
  (*server)->Shutdown(0);
}

}  // namespace
}  // namespace sluice::rpc
