#include "lib/rpc/rpc.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "grpcpp/grpcpp.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "lib/common/config.h"
#include "lib/rpc/rpc_probe.h"
#include "lib/rpc/tls.h"
#include "proto/common.pb.h"

namespace sluice::rpc {

namespace {

std::atomic<bool> serves_tls{false};

}  // namespace

bool ServesTls() { return serves_tls.load(); }

Result<std::unique_ptr<RpcServer>> RpcServer::Start(const std::string& address,
                                                    const std::vector<grpc::Service*>& services,
                                                    const RpcOptions& options) {
  ASSIGN_OR_RETURN(HostPort hp, ParseHostPort(address, "rpc-address"));
  if (options.tls != nullptr) serves_tls = true;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, ServerCredentials(options), &port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_time_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  // Two daemons must never share a port silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  for (grpc::Service* s : services) builder.RegisterService(s);
  if (options.probe != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
    interceptors.push_back(options.probe->NewInterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(fmt::format("cannot listen on {} (address in use or not local?)", address));
  }
  std::string bound = fmt::format("{}:{}", hp.host.find(':') != std::string::npos ? "[" + hp.host + "]" : hp.host, port);
  return std::unique_ptr<RpcServer>(new RpcServer(std::move(server), std::move(bound), port));
}

RpcServer::RpcServer(std::unique_ptr<grpc::Server> server, std::string address, int port)
    : server_(std::move(server)), address_(std::move(address)), port_(port) {}

RpcServer::~RpcServer() { Shutdown(0); }

void RpcServer::Shutdown(int grace_ms) {
  if (shut_down_) return;
  shut_down_ = true;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms));
  server_->Wait();
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const RpcOptions& options) {
  return options.tls ? options.tls->ChannelCredentials() : grpc::InsecureChannelCredentials();
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const RpcOptions& options) {
  return options.tls ? options.tls->ServerCredentials() : grpc::InsecureServerCredentials();
}

namespace {

constexpr char kUnreachablePeers[] = "type.sluice.dev/unreachable-peers";

}  // namespace

Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  Status out(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  proto::StatusPayloads payloads;
  if (!status.error_details().empty() && payloads.ParseFromString(status.error_details())) {
    for (const proto::StatusPayload& p : payloads.payloads()) out.SetPayload(p.type_url(), absl::Cord(p.value()));
  }
  return out;
}

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  proto::StatusPayloads payloads;
  status.ForEachPayload([&](absl::string_view type_url, const absl::Cord& value) {
    proto::StatusPayload* p = payloads.add_payloads();
    p->set_type_url(std::string(type_url));
    p->set_value(std::string(value));
  });
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      payloads.payloads().empty() ? std::string() : payloads.SerializeAsString());
}

Status NamingUnreachable(Status status, const std::vector<std::string>& peers) {
  if (status.ok() || peers.empty()) return status;
  std::vector<std::string> all = UnreachablePeers(status);
  for (const std::string& p : peers) {
    if (std::find(all.begin(), all.end(), p) == all.end()) all.push_back(p);
  }
  status.SetPayload(kUnreachablePeers, absl::Cord(absl::StrJoin(all, "\n")));
  return status;
}

std::vector<std::string> UnreachablePeers(const Status& status) {
  auto value = status.GetPayload(kUnreachablePeers);
  if (!value) return {};
  return absl::StrSplit(std::string(*value), '\n', absl::SkipEmpty());
}

bool IsUnreachable(const Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

}  // namespace sluice::rpc
