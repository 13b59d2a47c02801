// HttpGet: one HTTP GET against a daemon's endpoint (--http-address), for
// tests of /metrics, /healthz, /readyz and the status page's API.
//
// Part of sluice::test_harness. Thread-safe.
#pragma once

#include <chrono>
#include <string>

#include "lib/common/status.h"

namespace sluice::testing {

struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string body;
};

// GET http://`address``path` ("host:port", "/metrics"). UNAVAILABLE if no
// answer came within `timeout`; any HTTP status is an answer.
[[nodiscard]] Result<HttpReply> HttpGet(const std::string& address, const std::string& path,
                                        std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace sluice::testing
