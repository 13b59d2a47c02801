// The versions of this build: the software version string, and one integer
// per persisted format and for the RPC protocol. docs/upgrade.md states the
// policy; this is the one place that names the numbers.
//
// Module sluice::version (lib/common) owns it; its own small library, so a
// build with every number one higher (driverd_next/workerd_next, compiled
// with SLUICE_VERSION_BUMP=1, for test/integration/upgrade_test.cc) is a
// relink. Thread-safe (constants).
//
// The rule: a build whose format is N writes N and reads N-1 and N; anything
// else is refused with FAILED_PRECONDITION naming both numbers, never
// guessed at. A format with no version written (what the first builds wrote)
// is V1. A daemon of protocol N talks to peers of N-1, N and N+1.
#pragma once

#include <string_view>

#include "lib/common/status.h"

namespace sluice {

// "0.1.0" (the project's version; "0.1.0+next" in the bumped build).
extern const char kVersion[];

namespace version {

// Each format's number, as this build writes it.
extern const int kWalFormat;           // lib/wal: WalRecord (with its payload) and WalSnapshot
extern const int kClusterStateFormat;  // lib/driver: ClusterSnapshot, in the WAL's snapshot
extern const int kStateStoreFormat;    // lib/state: the keyed state's RocksDB (meta, snapshots, deltas)
extern const int kBlockLogFormat;      // lib/worker: the durable block log (receiver WAL)
extern const int kProtocol;            // every RPC: gRPC metadata kProtocolHeader, ProcessInfo

// The gRPC metadata key carrying the caller's kProtocol.
inline constexpr std::string_view kProtocolHeader = "sluice-protocol";

// OK if this build reads format `found` of `what` ("the WAL at /x, record
// 12"): current-1 <= found <= current. Otherwise FAILED_PRECONDITION, e.g.
// "the WAL at /x, record 12 has format 3; this build (0.1.0) reads formats 1
// to 2". `current` is the kXxxFormat above.
[[nodiscard]] Status CheckReadable(std::string_view what, int found, int current);

// A format stored as decimal text (a store's format key); -1 if malformed.
int ParseFormat(std::string_view text);

// OK if a peer of protocol `peer` may talk to this build: |peer - kProtocol|
// <= 1. Otherwise FAILED_PRECONDITION naming both.
[[nodiscard]] Status CheckPeerProtocol(std::string_view who, int peer);

}  // namespace version
}  // namespace sluice
