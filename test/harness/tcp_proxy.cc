#include "test/harness/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>
#include <vector>

#include "test/harness/util.h"

namespace sluice::testing {
namespace {

// One proxied connection: client side `a`, server side `b`, and the bytes read
// from one side that the other has not yet taken.
struct Conn {
  int a = -1;
  int b = -1;
  std::string a2b;
  std::string b2a;
  bool a_eof = false;  // a sent FIN; forwarded to b once a2b is empty
  bool b_eof = false;
  bool a_shut = false;  // SHUT_WR done on a
  bool b_shut = false;
  bool dead = false;

  void Close() {
    if (a >= 0) ::close(a);
    if (b >= 0) ::close(b);
    a = b = -1;
    dead = true;
  }
};

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Reads what `from` has into `buf`; false on a hard error.
bool Pump(int from, std::string& buf, bool& eof) {
  char tmp[65536];
  ssize_t n = ::read(from, tmp, sizeof(tmp));
  if (n > 0) {
    buf.append(tmp, n);
  } else if (n == 0) {
    eof = true;
  } else if (errno != EAGAIN && errno != EINTR) {
    return false;
  }
  return true;
}

// Writes as much of `buf` to `to` as it takes; false on a hard error.
bool Drain(int to, std::string& buf) {
  ssize_t n = ::send(to, buf.data(), buf.size(), MSG_NOSIGNAL);
  if (n > 0) {
    buf.erase(0, n);
  } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
    return false;
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<TcpProxy>> TcpProxy::Start(const std::string& target_host, int target_port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 128) != 0) {
    ::close(fd);
    return absl::UnavailableError(fmt::format("TcpProxy: cannot listen: {}", std::strerror(errno)));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  SetNonBlocking(fd);
  std::unique_ptr<TcpProxy> proxy(new TcpProxy(fd, ntohs(addr.sin_port), target_host, target_port));
  return proxy;
}

TcpProxy::TcpProxy(int listen_fd, int port, std::string host, int target_port)
    : listen_fd_(listen_fd), port_(port), target_host_(std::move(host)), target_port_(target_port) {
  if (::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) std::abort();
  thread_ = std::thread([this] { Run(); });
}

TcpProxy::~TcpProxy() {
  stop_ = true;
  SetMode(mode_.load());
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
}

void TcpProxy::Stall() { SetMode(Mode::kStalled); }
void TcpProxy::Cut() { SetMode(Mode::kCut); }
void TcpProxy::Restore() { SetMode(Mode::kForwarding); }

void TcpProxy::SetMode(Mode m) {
  mode_ = m;
  char c = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_pipe_[1], &c, 1);
}

void TcpProxy::Run() {
  std::list<Conn> conns;
  std::vector<pollfd> fds;
  std::vector<Conn*> owners;  // owners[i]: the connection of fds[i] (nullptr: listen/pipe)
  while (!stop_) {
    const Mode mode = mode_.load();
    if (mode == Mode::kCut) {
      for (Conn& c : conns) c.Close();
      conns.clear();
    }
    fds.clear();
    owners.clear();
    fds.push_back({wake_pipe_[0], POLLIN, 0});
    owners.push_back(nullptr);
    if (mode != Mode::kStalled) {
      fds.push_back({listen_fd_, POLLIN, 0});
      owners.push_back(nullptr);
    }
    if (mode == Mode::kForwarding) {
      for (Conn& c : conns) {
        short ea = 0, eb = 0;
        if (c.a2b.empty() && !c.a_eof) ea |= POLLIN;
        if (!c.b2a.empty()) ea |= POLLOUT;
        if (c.b2a.empty() && !c.b_eof) eb |= POLLIN;
        if (!c.a2b.empty()) eb |= POLLOUT;
        fds.push_back({c.a, ea, 0});
        owners.push_back(&c);
        fds.push_back({c.b, eb, 0});
        owners.push_back(&c);
      }
    }
    if (::poll(fds.data(), fds.size(), 100) < 0) continue;
    char drain[64];
    while (::read(wake_pipe_[0], drain, sizeof(drain)) > 0) {
    }
    if (stop_ || mode_.load() != mode) continue;  // re-evaluate in the new mode
    for (size_t i = 1; i < fds.size(); ++i) {
      const pollfd& p = fds[i];
      if (p.revents == 0) continue;
      Conn* c = owners[i];
      if (c == nullptr) {  // the listening socket
        int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        if (mode == Mode::kCut) {
          ::close(client);
          continue;
        }
        int server = ConnectTcp(target_host_, target_port_);
        if (server < 0) {
          ::close(client);
          continue;
        }
        SetNonBlocking(client);
        SetNonBlocking(server);
        conns.push_back(Conn{.a = client, .b = server});
        continue;
      }
      if (c->dead) continue;
      const bool is_a = p.fd == c->a;
      std::string& in_buf = is_a ? c->a2b : c->b2a;
      std::string& out_buf = is_a ? c->b2a : c->a2b;
      bool& eof = is_a ? c->a_eof : c->b_eof;
      bool ok = true;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) ok = Pump(p.fd, in_buf, eof);
      if (ok && (p.revents & POLLOUT)) ok = Drain(p.fd, out_buf);
      if (!ok) c->Close();
    }
    // Forward half-closes once the buffered bytes are through; drop finished ones.
    for (auto it = conns.begin(); it != conns.end();) {
      Conn& c = *it;
      if (!c.dead) {
        if (c.a_eof && c.a2b.empty() && !c.b_shut) {
          ::shutdown(c.b, SHUT_WR);
          c.b_shut = true;
        }
        if (c.b_eof && c.b2a.empty() && !c.a_shut) {
          ::shutdown(c.a, SHUT_WR);
          c.a_shut = true;
        }
        if (c.a_shut && c.b_shut) c.Close();
      }
      it = c.dead ? conns.erase(it) : std::next(it);
    }
  }
  for (Conn& c : conns) c.Close();
}

}  // namespace sluice::testing
