#include "lib/http/http_server.h"

#include <httplib.h>

#include <cstring>

#include "lib/metrics/metrics.h"
#include "spdlog/spdlog.h"

namespace sluice::http {
namespace {

// Scrapes, health checks and the status page's polls. A thread stays with an
// idle keep-alive connection until it times out, and a browser opens several
// connections to load the page: enough threads that probes never queue
// behind them, and a short keep-alive.
constexpr size_t kThreads = 8;
constexpr time_t kKeepAliveSeconds = 1;

// cpp-httplib matches routes as regular expressions: a path matches itself only.
std::string ExactPattern(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (std::strchr(".^$|()[]{}*+?\\", c) != nullptr) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

HttpServer::HttpServer() : server_(std::make_unique<httplib::Server>()) {
  server_->new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  server_->set_read_timeout(5, 0);
  server_->set_write_timeout(5, 0);
  server_->set_keep_alive_timeout(kKeepAliveSeconds);
  server_->set_keep_alive_max_count(100);
  // cpp-httplib's default also sets SO_REUSEPORT, which would let a second
  // daemon bind the same port and share its requests: address reuse only.
  server_->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Get(const std::string& path, Handler handler) {
  server_->Get(ExactPattern(path),
               [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
                 Request request{.path = req.path, .params = {}};
                 for (const auto& [k, v] : req.params) request.params.emplace(k, v);
                 Response response = handler(request);
                 res.status = response.status;
                 for (const auto& [k, v] : response.headers) res.set_header(k, v);
                 res.set_content(std::move(response.body), response.content_type);
               });
}

void HttpServer::AddStandardRoutes(metrics::Registry* registry, std::function<Check()> healthy,
                                   std::function<Check()> ready) {
  Get("/metrics", [registry](const Request&) {
    return Response{.status = 200, .content_type = "text/plain; version=0.0.4; charset=utf-8",
                    .body = registry->Expose(), .headers = {}};
  });
  auto check = [](const std::function<Check()>& fn) {
    return [fn](const Request&) {
      const Check c = fn();
      return Response{.status = c.ok ? 200 : 503, .content_type = "text/plain; charset=utf-8",
                      .body = (c.ok ? "ok: " : "not ok: ") + c.detail + "\n", .headers = {}};
    };
  };
  Get("/healthz", check(std::move(healthy)));
  Get("/readyz", check(std::move(ready)));
}

Status HttpServer::Start(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    return absl::InvalidArgumentError(fmt::format("http-address: '{}' is not host:port", address));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = -1;
  try {
    size_t used = 0;
    port = std::stoi(address.substr(colon + 1), &used);
    if (used != address.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(fmt::format("http-address: '{}': the port must be 0 to 65535", address));
  }
  if (host.empty()) host = "0.0.0.0";
  if (port == 0) {
    port = server_->bind_to_any_port(host);
    if (port <= 0) return absl::UnavailableError(fmt::format("http-address: cannot bind {}", address));
  } else if (!server_->bind_to_port(host, port)) {
    return absl::UnavailableError(fmt::format("http-address: cannot bind {} (in use, or not this host's)", address));
  }
  const bool v6 = host.find(':') != std::string::npos;
  address_ = (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  started_ = true;
  listen_done_ = false;
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_done_ = true;
  });
  return absl::OkStatus();
}

void HttpServer::Stop() {
  if (!started_) return;
  started_ = false;
  // cpp-httplib's stop() does nothing until the listening thread has
  // started listening, which would then go on for ever: wait for that.
  while (!listen_done_.load() && !server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace sluice::http
