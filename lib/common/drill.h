// ObeyDrill: how a daemon takes a failover drill's fault on itself when
// sluicectl drill asks it to over RPC (docs/drills.md) — the fault a remote
// operator could otherwise only deliver with kill(1) on the daemon's host.
//
// Module sluice::common owns it, so driverd and workerd obey the same way;
// each daemon's Drill RPC handler translates its request and calls it.
// Thread-safe.
#pragma once

#include <chrono>
#include <string_view>

#include "lib/common/status.h"

namespace sluice {

// The numbers of proto::DrillFault (proto/common.proto), so a handler casts.
enum class DrillFault { kUnspecified = 0, kKill = 1, kTerm = 2, kPause = 3 };

// FAILED_PRECONDITION "drills are off on this daemon: set allow-drills = true
// in its config" unless `allowed`. Otherwise logs a warning naming `daemon`
// and the fault, and returns at once: the fault lands about 50 ms later, so
// the caller's answer is on its way first. Kill and term signal the whole
// process (kill(getpid())), so a daemon waiting for SIGTERM on one thread
// (BlockTerminationSignals) shuts down cleanly. Pause forks a helper process
// that stops this one and continues it after `pause`. INVALID_ARGUMENT for
// an unknown fault or a pause outside 1 ms..10 min.
[[nodiscard]] Status ObeyDrill(DrillFault fault, std::chrono::milliseconds pause, bool allowed,
                               std::string_view daemon);

// Pauses process `pid` for `pause`, starting `after` from now, through a
// helper process of its own: SIGSTOP, then SIGCONT once the pause is over,
// even if the caller exits, is stopped or is killed with its process group
// or session (Ctrl-C, a lost terminal) meanwhile (sluicectl drill pausing a
// local daemon; ObeyDrill pausing itself). INTERNAL if the helper cannot be
// forked; a pid that cannot be signalled is the caller's to check first.
[[nodiscard]] Status PauseProcess(int pid, std::chrono::milliseconds after, std::chrono::milliseconds pause);

}  // namespace sluice
