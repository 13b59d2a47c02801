// ChannelCache: the gRPC channels of one process, one per peer address, made
// on first use and reused by every client after.
//
// Module sluice::rpc owns it; a daemon (or sluicectl, or a test) owns one and
// hands it to the clients it makes. Channels are configured by RpcOptions —
// message size, keepalives, fast reconnects and the credentials hook
// (rpc.h ChannelCredentials) — here and nowhere else. A channel connects
// lazily and reconnects by itself, so a cached channel stays usable across a
// peer's restart; calls fail with UNAVAILABLE while the peer is unreachable.
//
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "lib/rpc/rpc.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace sluice::rpc {

class ChannelCache {
 public:
  explicit ChannelCache(RpcOptions options = {}) : options_(options) {}
  ChannelCache(const ChannelCache&) = delete;
  ChannelCache& operator=(const ChannelCache&) = delete;

  // The channel to `address` ("host:port").
  std::shared_ptr<grpc::Channel> Get(const std::string& address);

  // Addresses with a channel.
  size_t size() const;
  const RpcOptions& options() const { return options_; }

 private:
  const RpcOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;  // guarded by mu_
};

}  // namespace sluice::rpc
