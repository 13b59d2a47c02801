#include "lib/rpc/rpc_probe.h"

#include <chrono>

#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_interceptor.h"

namespace sluice::rpc {
namespace {

using grpc::experimental::InterceptionHookPoints;

class CountingInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit CountingInterceptor(RpcProbe* probe, RpcProbe::Method* method)
      : probe_(probe), method_(method), start_(std::chrono::steady_clock::now()) {
    method_->started->Inc();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      probe_->Handled(method_, static_cast<int>(methods->GetSendStatus().error_code()), seconds);
    }
    methods->Proceed();
  }

 private:
  RpcProbe* const probe_;
  RpcProbe::Method* const method_;
  const std::chrono::steady_clock::time_point start_;
};

class CountingFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CountingFactory(RpcProbe* probe) : probe_(probe) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    const char* name = info->method();
    if (name == nullptr) return nullptr;  // unknown method: gRPC answers UNIMPLEMENTED itself
    return new CountingInterceptor(probe_, probe_->ForMethod(name));
  }

 private:
  RpcProbe* const probe_;
};

constexpr std::array<const char*, 17> kCodes = {
    "OK",        "CANCELLED",          "UNKNOWN",           "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};

}  // namespace

std::string MethodLabel(const std::string& grpc_method) {
  std::string m = grpc_method;
  if (!m.empty() && m[0] == '/') m.erase(0, 1);
  const size_t slash = m.find('/');
  if (slash == std::string::npos) return m;
  std::string service = m.substr(0, slash);
  const size_t dot = service.rfind('.');
  if (dot != std::string::npos) service.erase(0, dot + 1);
  return service + "." + m.substr(slash + 1);
}

std::string CodeLabel(int code) {
  if (code < 0 || code >= static_cast<int>(kCodes.size())) return std::to_string(code);
  return kCodes[code];
}

Result<std::unique_ptr<RpcProbe>> RpcProbe::Create(metrics::Registry* registry) {
  std::unique_ptr<RpcProbe> p(new RpcProbe());
  ASSIGN_OR_RETURN(p->started_, registry->AddCounter("sluice_rpc_server_started_total",
                                                     "gRPC calls this server started, by method", {"method"}));
  ASSIGN_OR_RETURN(p->handled_,
                   registry->AddCounter("sluice_rpc_server_handled_total",
                                        "gRPC calls this server completed, by method and status code (errors: "
                                        "code other than OK)",
                                        {"method", "code"}));
  ASSIGN_OR_RETURN(p->seconds_, registry->AddHistogram("sluice_rpc_server_handling_seconds",
                                                       "How long this server's gRPC calls took, by method "
                                                       "(streams: the whole stream)",
                                                       metrics::DelayBuckets(), {"method"}));
  return p;
}

RpcProbe::Method* RpcProbe::ForMethod(const std::string& grpc_method) {
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<Method>& m = methods_[grpc_method];
  if (m == nullptr) {
    m = std::make_unique<Method>();
    m->label = MethodLabel(grpc_method);
    m->started = &started_->With({m->label});
    m->seconds = &seconds_->With({m->label});
  }
  return m.get();
}

void RpcProbe::Handled(Method* m, int code, double seconds) {
  const size_t i = code >= 0 && code < static_cast<int>(m->handled.size()) ? code : 2;  // UNKNOWN
  metrics::Counter* c = m->handled[i].load(std::memory_order_acquire);
  if (c == nullptr) {
    c = &handled_->With({m->label, CodeLabel(static_cast<int>(i))});  // With() gives the same one every time
    m->handled[i].store(c, std::memory_order_release);
  }
  c->Inc();
  m->seconds->Observe(seconds);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcProbe::NewInterceptorFactory() {
  return std::make_unique<CountingFactory>(this);
}

}  // namespace sluice::rpc
