// ZkServerMode: asks a ZooKeeper server what it is in its ensemble, through
// its `srvr` four-letter command on the client port — how sluicectl drill
// tells whether the server it pauses (zk-server-loss) leads the ensemble.
//
// Module sluice::ctl owns it. Thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "lib/common/status.h"

namespace sluice::ctl {

// "leader", "follower", "observer" or "standalone", from the "Mode: " line of
// the server's answer to `srvr` at `host_port` ("HOST:PORT", "[v6]:PORT").
// UNAVAILABLE if it cannot be reached within `timeout`; FAILED_PRECONDITION
// if it answers without a mode (e.g. srvr is not in its
// 4lw.commands.whitelist).
[[nodiscard]] Result<std::string> ZkServerMode(const std::string& host_port, std::chrono::milliseconds timeout);

// The mode in a `srvr` answer; "" if there is none.
std::string ParseZkMode(std::string_view srvr_answer);

}  // namespace sluice::ctl
