// FindLocalListener: which process of this host listens on a TCP address —
// how sluicectl drill finds a ZooKeeper server to pause (zk-server-loss,
// docs/drills.md) from nothing but the address its clients connect to.
//
// Module sluice::ctl owns it. It reads /proc/net/tcp and /proc/net/tcp6 for
// the listening socket's inode, then /proc/PID/fd/* for the process holding
// socket:[inode]. ParseProcNetTcp is the pure part, for the unit test.
//
// Thread-safe (reads /proc only).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/common/status.h"

namespace sluice::ctl {

// One line of /proc/net/tcp or /proc/net/tcp6.
struct ProcNetSocket {
  bool v6 = false;
  std::array<uint8_t, 16> address{};  // network order; the first 4 bytes for IPv4
  uint16_t port = 0;
  int state = 0;  // 0x0A: LISTEN
  uint64_t inode = 0;
};
inline constexpr int kTcpListen = 0x0A;

// The sockets of one /proc/net/tcp{,6} table (`v6` for tcp6); malformed lines
// are skipped.
std::vector<ProcNetSocket> ParseProcNetTcp(std::string_view table, bool v6);

struct LocalListener {
  int pid = 0;
  std::string address;  // as asked, resolved: "127.0.0.1:2181"
  std::string cmdline;  // /proc/PID/cmdline, NULs as spaces
};

// The process listening on `host_port` ("HOST:PORT", "[v6]:PORT") here.
// NOT_FOUND when the address is not one of this host's or nothing listens on
// it here (the server runs elsewhere); PERMISSION_DENIED when a socket listens
// but its process is not ours to see (another user's, without root);
// INVALID_ARGUMENT for a malformed address.
[[nodiscard]] Result<LocalListener> FindLocalListener(const std::string& host_port);

}  // namespace sluice::ctl
