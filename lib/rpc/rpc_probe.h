// RpcProbe: the gRPC server's metrics — calls started and handled, by
// method and status code, and how long each call took — counted by a server
// interceptor that every RpcServer made with RpcOptions::metrics installs.
//
// Module sluice::rpc owns it. A method's metrics are looked up once per call
// (one lock, one map lookup); the rest are atomic updates.
//
// Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "lib/common/status.h"
#include "lib/metrics/metrics.h"

namespace grpc::experimental {
class ServerInterceptorFactoryInterface;
}

namespace sluice::rpc {

class RpcProbe {
 public:
  [[nodiscard]] static Result<std::unique_ptr<RpcProbe>> Create(metrics::Registry* registry);

  // One method's series, made on its first call and kept.
  struct Method {
    std::string label;  // MethodLabel
    metrics::Counter* started = nullptr;
    metrics::Histogram* seconds = nullptr;
    std::array<std::atomic<metrics::Counter*>, 17> handled{};  // by grpc::StatusCode, made on first use
  };
  // `grpc_method`: gRPC's full name, "/sluice.proto.DriverService/GetStatus".
  Method* ForMethod(const std::string& grpc_method);
  // Counts a call's end with `code` (grpc::StatusCode) after `seconds`.
  void Handled(Method* m, int code, double seconds);

  // The interceptor factory for grpc::ServerBuilder; the probe must outlive
  // the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewInterceptorFactory();

 private:
  RpcProbe() = default;

  metrics::Family<metrics::Counter>* started_ = nullptr;
  metrics::Family<metrics::Counter>* handled_ = nullptr;
  metrics::Family<metrics::Histogram>* seconds_ = nullptr;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Method>> methods_;  // by gRPC name; guarded by mu_
};

// "/sluice.proto.DriverService/GetStatus" -> "DriverService.GetStatus", the
// `method` label (the same name auth.h's table uses).
std::string MethodLabel(const std::string& grpc_method);
// grpc::StatusCode -> "OK", "UNAVAILABLE", ...: the `code` label.
std::string CodeLabel(int code);

}  // namespace sluice::rpc
