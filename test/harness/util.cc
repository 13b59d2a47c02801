#include "test/harness/util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

namespace sluice::testing {

namespace {

// The ports the kernel hands to outgoing connections (and to bind(0)):
// /proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default.
std::pair<int, int> EphemeralRange() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 32768, hi = 60999;
  if (!(in >> lo >> hi)) return {32768, 60999};
  return {lo, hi};
}

bool CanBind(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

int FreePort() {
  // A port from bind(0) lies in the ephemeral range, where any outgoing
  // connection of a test running in parallel (gRPC, ZooKeeper, a browser) may
  // take it before our daemon binds it: CI saw exactly that. So ports come
  // from below the ephemeral range, and each is claimed across processes by
  // an flock on /tmp/sluice-test-ports/PORT, held until this process exits
  // (the kernel drops it then, even on a crash). The bind check skips ports
  // something else listens on.
  static std::mutex mu;
  static std::set<int> handed_out;
  std::lock_guard<std::mutex> lock(mu);
  auto [eph_lo, eph_hi] = EphemeralRange();
  int lo = 12000, hi = eph_lo - 1;
  if (hi - lo < 2000) {  // an unusual range: use the ports above it instead
    lo = eph_hi + 1;
    hi = 65535;
  }
  const std::string dir = "/tmp/sluice-test-ports";
  ::mkdir(dir.c_str(), 0777);
  ::chmod(dir.c_str(), 01777);
  static unsigned next = static_cast<unsigned>(::getpid()) * 7919u;
  const int span = hi - lo + 1;
  for (int attempt = 0; attempt < span; ++attempt) {
    int port = lo + static_cast<int>(next++ % static_cast<unsigned>(span));
    if (handed_out.count(port) != 0) continue;
    std::string path = dir + "/" + std::to_string(port);
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      continue;
    }
    if (!CanBind(port)) {
      ::close(fd);
      continue;
    }
    handed_out.insert(port);
    return port;  // fd stays open: the claim lasts as long as this process
  }
  std::cerr << "FreePort: no free port in " << lo << "-" << hi << std::endl;
  std::abort();
}

TempDir::TempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    std::cerr << "mkdtemp " << templ << ": " << std::strerror(errno) << std::endl;
    std::abort();
  }
  path_ = templ;
}

TempDir::~TempDir() {
  if (std::getenv("SLUICE_KEEP_TEST_DIRS") != nullptr) {
    std::cerr << "kept test directory " << path_ << std::endl;
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
               std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

int ConnectTcp(const std::string& host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

Result<std::string> TcpExchange(const std::string& host, int port, const std::string& request,
                                std::chrono::milliseconds timeout) {
  int fd = ConnectTcp(host, port);
  if (fd < 0) {
    return absl::UnavailableError(fmt::format("connect {}:{}: {}", host, port, std::strerror(errno)));
  }
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) < 0) {
    ::close(fd);
    return absl::UnavailableError(fmt::format("send to {}:{} failed", host, port));
  }
  ::shutdown(fd, SHUT_WR);
  std::string response;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, n);
  }
  ::close(fd);
  return response;
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("cannot read {}", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) return absl::InternalError(fmt::format("cannot write {}", path));
  return absl::OkStatus();
}

}  // namespace sluice::testing
