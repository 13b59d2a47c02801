// gRPC servers and channels of Sluice, created in this one place.
//
// Module sluice::rpc owns it. Every daemon's server is an RpcServer and every
// outbound connection a channel of a ChannelCache (channel_cache.h), both
// configured by RpcOptions, so that transport security, keepalives and
// interceptors are a matter of configuration here and nowhere else. It also
// maps grpc::Status to and from sluice::Status (the codes are the same
// canonical codes).
//
// Thread-safety: RpcServer is thread-compatible (Start/Shutdown from one
// thread); the rest is thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lib/common/status.h"

namespace grpc {
class ChannelCredentials;
class Server;
class ServerCredentials;
class Service;
class Status;
}  // namespace grpc

namespace sluice::rpc {

class RpcProbe;
class TlsIdentity;

// Transport settings shared by servers and channels.
struct RpcOptions {
  int max_message_bytes = 64 << 20;
  int keepalive_time_ms = 10'000;
  // Channels share no connection (nor its reconnect backoff) with channels
  // made elsewhere in the process: for a probe of a peer that may be down.
  bool own_connections = false;
  // Mutual TLS with this identity (tls.h); null: plaintext (`tls = off`).
  std::shared_ptr<TlsIdentity> tls;
  // Servers count their calls here (RpcProbe); null: no metrics. Must
  // outlive the servers.
  RpcProbe* probe = nullptr;
};

class RpcServer {
 public:
  // Binds `address` ("host:port"; port 0 picks a free one) and serves
  // `services` (not owned; they must outlive the server). UNAVAILABLE if the
  // address cannot be bound.
  [[nodiscard]] static Result<std::unique_ptr<RpcServer>> Start(
      const std::string& address, const std::vector<grpc::Service*>& services,
      const RpcOptions& options = {});
  ~RpcServer();

  // "host:port" with the port actually bound.
  const std::string& address() const { return address_; }
  int port() const { return port_; }

  // Stops accepting calls and cancels those still running after `grace_ms`.
  void Shutdown(int grace_ms = 1000);

 private:
  RpcServer(std::unique_ptr<grpc::Server> server, std::string address, int port);

  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_;
  bool shut_down_ = false;
};

// The transport security of every channel and every server, from `options`:
// mutual TLS with options.tls, else plaintext.
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const RpcOptions& options);
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const RpcOptions& options);

// Whether this process has started a server with TLS: then a call that did
// not come over TLS is refused (auth.h), whatever gRPC reports.
bool ServesTls();

// An error's payloads (Status::SetPayload) cross the wire with it, in the
// gRPC status details.
Status FromGrpc(const grpc::Status& status);
grpc::Status ToGrpc(const Status& status);

// A server's error may name the peers (by id) that it could not reach while
// serving the call: e.g. a worker's task that could not push its output to
// another worker. The caller then knows who to avoid, not only that the
// call failed.
[[nodiscard]] Status NamingUnreachable(Status status, const std::vector<std::string>& peers);
std::vector<std::string> UnreachablePeers(const Status& status);
// Whether an error of a call to a peer says the peer could not be reached
// in time (UNAVAILABLE, DEADLINE_EXCEEDED) rather than refused the call.
bool IsUnreachable(const Status& status);

}  // namespace sluice::rpc
