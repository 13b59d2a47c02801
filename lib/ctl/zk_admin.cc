#include "lib/ctl/zk_admin.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sluice::ctl {

std::string ParseZkMode(std::string_view answer) {
  constexpr std::string_view kMode = "Mode: ";
  const size_t at = answer.find(kMode);
  if (at == std::string_view::npos) return "";
  const size_t start = at + kMode.size();
  size_t end = start;
  while (end < answer.size() && answer[end] != '\n' && answer[end] != '\r') ++end;
  return std::string(answer.substr(start, end - start));
}

Result<std::string> ZkServerMode(const std::string& host_port, std::chrono::milliseconds timeout) {
  std::string host, port;
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("'" + host_port + "' is not HOST:PORT");
  host = host_port.substr(0, colon);
  port = host_port.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(fmt::format("{}: {}", host_port, ::gai_strerror(rc)));
  }
  const int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(found);
    return absl::UnavailableError(fmt::format("{}: socket: {}", host_port, std::strerror(errno)));
  }
  const int rc = ::connect(fd, found->ai_addr, found->ai_addrlen);
  ::freeaddrinfo(found);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Waits for `events` until the deadline; false on timeout or error.
  auto wait = [&](short events) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    struct pollfd p = {fd, events, 0};
    return ::poll(&p, 1, static_cast<int>(left.count())) == 1 && (p.revents & (events | POLLHUP)) != 0;
  };
  std::string answer;
  Status st = absl::OkStatus();
  if (rc != 0 && errno != EINPROGRESS) {
    st = absl::UnavailableError(fmt::format("{}: connect: {}", host_port, std::strerror(errno)));
  } else if (!wait(POLLOUT) || ::send(fd, "srvr", 4, MSG_NOSIGNAL) != 4) {
    st = absl::UnavailableError(fmt::format("{}: no answer to srvr within {} ms", host_port, timeout.count()));
  } else {
    char buf[4096];
    while (wait(POLLIN)) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      answer.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  RETURN_IF_ERROR(st);
  std::string mode = ParseZkMode(answer);
  if (mode.empty()) {
    return absl::FailedPreconditionError(fmt::format(
        "{} answered srvr without a mode: {}", host_port, answer.empty() ? "(nothing)" : answer.substr(0, 100)));
  }
  return mode;
}

}  // namespace sluice::ctl
