// HttpServer: a daemon's HTTP endpoint (--http-address): Prometheus metrics
// at /metrics, /healthz and /readyz, and whatever pages the daemon adds (the
// driver's status page). Plain HTTP and read-only: it changes nothing in the
// cluster, so it carries no credentials; bind it to an address only the
// operators' network reaches (docs/operations.md).
//
// Module sluice::http owns it, on cpp-httplib (Debian's libcpp-httplib-dev).
// Routes are added before Start; handlers run on the server's own small pool
// of threads and must be thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lib/common/status.h"

namespace httplib {
class Server;
}

namespace sluice::metrics {
class Registry;
}

namespace sluice::http {

struct Request {
  std::string path;
  std::map<std::string, std::string> params;  // the query string's, decoded
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Extra headers (Cache-Control for embedded files, say).
  std::map<std::string, std::string> headers;
};

using Handler = std::function<Response(const Request&)>;

// What /healthz and /readyz answer: ok (200) or not (503), with a line.
struct Check {
  bool ok = false;
  std::string detail;
};

class HttpServer {
 public:
  HttpServer();
  ~HttpServer();  // stops the server
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // GET `path` (exact match). Before Start.
  void Get(const std::string& path, Handler handler);
  // The standard routes: /metrics (the registry's exposition), /healthz
  // (the process's loops are moving) and /readyz (the daemon serves; see
  // docs/operations.md). Before Start.
  void AddStandardRoutes(metrics::Registry* registry, std::function<Check()> healthy,
                         std::function<Check()> ready);

  // Binds "host:port" (port 0: any free port) and serves on a thread of
  // its own. INVALID_ARGUMENT for an address that is not host:port,
  // UNAVAILABLE if it cannot be bound.
  [[nodiscard]] Status Start(const std::string& address);
  // The bound "host:port" (after Start).
  std::string address() const { return address_; }
  // Idempotent; returns once no handler runs.
  void Stop();

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_done_{false};  // the listening thread has returned
  std::string address_;
  bool started_ = false;
};

}  // namespace sluice::http
