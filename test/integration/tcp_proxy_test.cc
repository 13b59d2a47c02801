// The TcpProxy of the harness: forwards, stalls (bytes held, connection open),
// cuts (connection closed), and forwards again after Restore.
#include "test/harness/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace sluice::testing {
namespace {

// An echo server on a loopback port, one thread per connection.
class EchoServer {
 public:
  EchoServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 16);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::thread([c] {
          char buf[4096];
          ssize_t n;
          while ((n = ::read(c, buf, sizeof(buf))) > 0) ::send(c, buf, n, MSG_NOSIGNAL);
          ::close(c);
        }).detach();
      }
    });
  }
  ~EchoServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  int fd_;
  int port_;
  std::thread thread_;
};

int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads up to `want` bytes within `timeout_ms`; returns what came ("" on EOF or
// nothing), and sets *eof if the peer closed.
std::string ReadSome(int fd, size_t want, int timeout_ms, bool* eof = nullptr) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (out.size() < want) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, left) <= 0) break;
    char buf[4096];
    ssize_t n = ::read(fd, buf, std::min(sizeof(buf), want - out.size()));
    if (n <= 0) {
      if (eof) *eof = true;
      break;
    }
    out.append(buf, n);
  }
  return out;
}

TEST(TcpProxy, ForwardsStallsCutsAndRestores) {
  EchoServer echo;
  auto proxy = TcpProxy::Start("127.0.0.1", echo.port());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  int fd = Connect((*proxy)->port());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, "ping", 4, MSG_NOSIGNAL), 4);
  EXPECT_EQ(ReadSome(fd, 4, 2000), "ping");

  (*proxy)->Stall();
  ASSERT_EQ(::send(fd, "held", 4, MSG_NOSIGNAL), 4);
  bool eof = false;
  EXPECT_EQ(ReadSome(fd, 4, 300, &eof), "");  // nothing moves, connection open
  EXPECT_FALSE(eof);
  (*proxy)->Restore();
  EXPECT_EQ(ReadSome(fd, 4, 2000), "held");  // nothing was lost while stalled

  (*proxy)->Cut();
  eof = false;
  ReadSome(fd, 1, 2000, &eof);
  EXPECT_TRUE(eof);
  ::close(fd);
  // While cut, a new connection is closed at once.
  int fd2 = Connect((*proxy)->port());
  if (fd2 >= 0) {
    eof = false;
    ::send(fd2, "x", 1, MSG_NOSIGNAL);
    ReadSome(fd2, 1, 2000, &eof);
    EXPECT_TRUE(eof);
    ::close(fd2);
  }
  (*proxy)->Restore();
  int fd3 = Connect((*proxy)->port());
  ASSERT_GE(fd3, 0);
  ASSERT_EQ(::send(fd3, "back", 4, MSG_NOSIGNAL), 4);
  EXPECT_EQ(ReadSome(fd3, 4, 2000), "back");
  ::close(fd3);
}

}  // namespace
}  // namespace sluice::testing
