// Small helpers of the test harness: free loopback ports, temporary
// directories, polling with a deadline, raw TCP exchanges, reading files.
//
// Part of sluice::test_harness. Thread-safe (no shared state).
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "lib/common/status.h"

namespace sluice::testing {

// A port on 127.0.0.1 that was free a moment ago, below the kernel's
// ephemeral range (so no outgoing connection takes it before a daemon binds
// it) and claimed by this process until it exits (an flock under
// /tmp/sluice-test-ports), so tests running in parallel never share one.
int FreePort();

// A fresh directory under $TMPDIR (or /tmp). Removed by the destructor unless
// SLUICE_KEEP_TEST_DIRS is set in the environment, so a failed test's logs can
// be read; its path is printed when kept.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "sluice-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Polls `pred` every `interval` until it is true (returns true) or `timeout`
// passes (returns false).
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
               std::chrono::milliseconds interval = std::chrono::milliseconds(20));

// A connected TCP socket to an IPv4 host:port, or -1 (errno set).
int ConnectTcp(const std::string& host, int port);

// Connects to host:port, writes `request`, half-closes and reads until EOF or
// `timeout`. UNAVAILABLE if the connection fails.
[[nodiscard]] Result<std::string> TcpExchange(const std::string& host, int port,
                                              const std::string& request,
                                              std::chrono::milliseconds timeout);

[[nodiscard]] Result<std::string> ReadFile(const std::string& path);
[[nodiscard]] Status WriteFile(const std::string& path, const std::string& contents);

}  // namespace sluice::testing
