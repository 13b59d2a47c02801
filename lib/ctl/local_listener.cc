#include "lib/ctl/local_listener.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace sluice::ctl {
namespace {

namespace fs = std::filesystem;

struct Address {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // the first 4 for IPv4
  std::string text;
};

template <typename T>
bool Hex(std::string_view s, T* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, 16);
  return ec == std::errc() && p == s.data() + s.size();
}

bool IsLoopback(const Address& a) {
  if (!a.v6) return a.bytes[0] == 127;
  static constexpr std::array<uint8_t, 16> kLoopback6 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return a.bytes == kLoopback6;
}

Address FromSockaddr(const struct sockaddr* sa) {
  Address a;
  char text[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const struct sockaddr_in*>(sa);
    std::memcpy(a.bytes.data(), &in->sin_addr, 4);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
  } else {
    const auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(sa);
    a.v6 = true;
    std::memcpy(a.bytes.data(), &in6->sin6_addr, 16);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
  }
  a.text = text;
  return a;
}

// Whether `a` is one of this host's addresses (loopback, or an interface's).
bool IsOwnAddress(const Address& a) {
  if (IsLoopback(a)) return true;
  struct ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return false;
  bool own = false;
  for (struct ifaddrs* i = list; i != nullptr && !own; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) continue;
    const Address mine = FromSockaddr(i->ifa_addr);
    own = mine.v6 == a.v6 && mine.bytes == a.bytes;
  }
  ::freeifaddrs(list);
  return own;
}

// Whether a socket bound to `s` takes connections to `a` (the same address,
// or a wildcard of the family; an IPv6 wildcard takes IPv4 too, as
// dual-stack Java servers listen).
bool Accepts(const ProcNetSocket& s, const Address& a) {
  static constexpr std::array<uint8_t, 16> kAny{};
  if (s.address == kAny) return true;
  if (!a.v6) {
    if (!s.v6) return std::equal(a.bytes.begin(), a.bytes.begin() + 4, s.address.begin());
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::equal(kMapped, kMapped + 12, s.address.begin()) &&
           std::equal(a.bytes.begin(), a.bytes.begin() + 4, s.address.begin() + 12);
  }
  return s.v6 && s.address == a.bytes;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::vector<ProcNetSocket> ParseProcNetTcp(std::string_view table, bool v6) {
  std::vector<ProcNetSocket> sockets;
  const size_t addr_hex = v6 ? 32 : 8;
  std::istringstream in{std::string(table)};
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    std::istringstream fields(line);
    std::string sl, local, remote, st, queues, timer, retransmits, uid, timeout, inode;
    if (!(fields >> sl >> local >> remote >> st >> queues >> timer >> retransmits >> uid >> timeout >> inode)) continue;
    ProcNetSocket s;
    s.v6 = v6;
    const size_t colon = local.find(':');
    if (colon != addr_hex) continue;
    // The kernel prints each 32-bit word of the address as a native integer.
    bool ok = true;
    for (size_t w = 0; w < addr_hex / 8 && ok; ++w) {
      uint32_t word = 0;
      ok = Hex(std::string_view(local).substr(w * 8, 8), &word);
      std::memcpy(s.address.data() + w * 4, &word, 4);
    }
    if (!ok || !Hex(std::string_view(local).substr(colon + 1), &s.port) || !Hex(st, &s.state)) continue;
    auto [p, ec] = std::from_chars(inode.data(), inode.data() + inode.size(), s.inode);
    if (ec != std::errc()) continue;
    sockets.push_back(s);
  }
  return sockets;
}

Result<LocalListener> FindLocalListener(const std::string& host_port) {
  std::string host, port_text;
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string::npos || host_port.compare(close + 1, 1, ":") != 0) {
      return absl::InvalidArgumentError("'" + host_port + "' is not HOST:PORT");
    }
    host = host_port.substr(1, close - 1);
    port_text = host_port.substr(close + 2);
  } else {
    const size_t colon = host_port.rfind(':');
    if (colon == std::string::npos) return absl::InvalidArgumentError("'" + host_port + "' is not HOST:PORT");
    host = host_port.substr(0, colon);
    port_text = host_port.substr(colon + 1);
  }
  uint16_t port = 0;
  auto [pe, pec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (host.empty() || pec != std::errc() || pe != port_text.data() + port_text.size() || port == 0) {
    return absl::InvalidArgumentError("'" + host_port + "' is not HOST:PORT");
  }

  // Which of the host's addresses are this machine's.
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0) {
    return absl::NotFoundError(fmt::format("{} does not resolve here: {}", host, ::gai_strerror(rc)));
  }
  std::vector<Address> own;
  for (struct addrinfo* i = found; i != nullptr; i = i->ai_next) {
    if (i->ai_family != AF_INET && i->ai_family != AF_INET6) continue;
    Address a = FromSockaddr(i->ai_addr);
    if (IsOwnAddress(a)) own.push_back(std::move(a));
  }
  ::freeaddrinfo(found);
  if (own.empty()) return absl::NotFoundError(fmt::format("{} is not an address of this host", host));

  std::set<uint64_t> inodes;
  for (const bool v6 : {false, true}) {
    for (const ProcNetSocket& s : ParseProcNetTcp(ReadAll(v6 ? "/proc/net/tcp6" : "/proc/net/tcp"), v6)) {
      if (s.state != kTcpListen || s.port != port || s.inode == 0) continue;
      for (const Address& a : own) {
        if (Accepts(s, a)) inodes.insert(s.inode);
      }
    }
  }
  if (inodes.empty()) return absl::NotFoundError(fmt::format("nothing listens on {} on this host", host_port));

  int unreadable = 0;
  std::error_code ec;
  for (const fs::directory_entry& proc : fs::directory_iterator("/proc", ec)) {
    const std::string name = proc.path().filename().string();
    int pid = 0;
    auto [p, pidec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (pidec != std::errc() || p != name.data() + name.size()) continue;
    std::error_code fd_ec;
    fs::directory_iterator fds(proc.path() / "fd", fd_ec);
    if (fd_ec) {
      ++unreadable;
      continue;
    }
    for (const fs::directory_entry& fd : fds) {
      std::error_code link_ec;
      const std::string target = fs::read_symlink(fd.path(), link_ec).string();
      if (link_ec || target.rfind("socket:[", 0) != 0) continue;
      uint64_t inode = 0;
      std::from_chars(target.data() + 8, target.data() + target.size() - 1, inode);
      if (inodes.count(inode) == 0) continue;
      LocalListener l{.pid = pid, .address = own.front().v6 ? "[" + own.front().text + "]:" + port_text
                                                           : own.front().text + ":" + port_text};
      l.cmdline = ReadAll("/proc/" + name + "/cmdline");
      std::replace(l.cmdline.begin(), l.cmdline.end(), '\0', ' ');
      while (!l.cmdline.empty() && l.cmdline.back() == ' ') l.cmdline.pop_back();
      return l;
    }
  }
  return absl::PermissionDeniedError(fmt::format(
      "a socket listens on {} here, but no process of ours holds it ({} processes' descriptors unreadable: "
      "another user's? run the drill as that user or root)",
      host_port, unreadable));
}

}  // namespace sluice::ctl
