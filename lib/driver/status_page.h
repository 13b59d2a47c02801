// StatusPage: the driver's status page, served by every driver at / on its
// HTTP endpoint (--http-address), and the JSON it polls.
//
//   /                     the page (HTML; a standby's names the leader and links to its page)
//   /static/...           its script, style sheet and dygraphs, embedded at build time
//   /api/status           the cluster: drivers, workers, jobs (figures, no series), leader terms
//   /api/job?id=J&since=N&limit=M
//                         job J's committed batches after batch N (the charts poll this)
//
// Module sluice::driver owns it. It reads the driver's GetStatus, the log's
// state (ClusterState: jobs, leader terms) and its BatchHistory; it changes
// nothing. Worker details (memory, receivers) come from the workers'
// GetStatus, asked by one background thread of its own, on the leader only,
// every few seconds and only while someone looks at the page; requests read
// the cache and never call a worker. docs/operations.md describes the page.
//
// Thread-safe: handlers run on the HTTP server's threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "lib/common/clock.h"
#include "lib/common/status.h"
#include "lib/http/http_server.h"
#include "proto/driver.pb.h"
#include "proto/worker.pb.h"

namespace sluice::driver {

class ClusterState;

struct StatusPageOptions {
  // How old the cached worker details may get while the page is watched.
  std::chrono::milliseconds worker_refresh{3000};
  // The cache is refreshed only while a page or API request came this recently.
  std::chrono::milliseconds watched_for{60'000};
  std::chrono::milliseconds worker_deadline{500};
};

class StatusPage {
 public:
  using StatusFn = std::function<proto::DriverStatus()>;
  using WorkerStatusFn = std::function<Result<proto::WorkerStatus>(const std::string& address)>;

  // `state` must outlive this; `status` and `worker_status` are called from
  // the page's threads until Stop.
  StatusPage(StatusFn status, const ClusterState* state, WorkerStatusFn worker_status, Clock* clock,
             StatusPageOptions options = {});
  ~StatusPage();  // Stop()
  StatusPage(const StatusPage&) = delete;
  StatusPage& operator=(const StatusPage&) = delete;

  // Adds the routes above to `server` (before it starts) and starts the
  // worker-details thread.
  void Register(http::HttpServer* server);
  // Idempotent; returns once the worker-details thread has ended.
  void Stop();

  // What the routes answer (public for tests and the benchmark).
  http::Response Index();
  http::Response StatusJson();
  http::Response JobJson(const http::Request& request);
  // Asks every live worker for its status once, now (tests).
  void RefreshWorkers();

 private:
  struct WorkerDetails {
    proto::WorkerStatus status;
    std::string error;  // the last call's, "" if it answered
    int64_t as_of_unix_ms = 0;
  };

  void Watched();
  void WorkerLoop();
  std::string RenderStatus(const proto::DriverStatus& status);

  const StatusFn status_;
  const ClusterState* const state_;
  const WorkerStatusFn worker_status_;
  Clock* const clock_;
  const StatusPageOptions options_;

  std::mutex mu_;
  std::map<std::string, WorkerDetails> workers_;  // by worker id; guarded by mu_
  Clock::TimePoint last_request_{};               // guarded by mu_
  bool stopping_ = false;                         // guarded by mu_
  std::condition_variable cv_;
  std::thread thread_;
};

// Escaping, for every string the page shows: HTML text and attributes, and
// JSON strings (quoted, with <, > and & as \u escapes too).
std::string HtmlEscape(std::string_view text);
std::string JsonString(std::string_view text);

// The security headers every answer of the page carries.
std::map<std::string, std::string> StatusPageHeaders();

}  // namespace sluice::driver
