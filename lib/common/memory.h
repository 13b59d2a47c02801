// LimitMallocArenas: how many heaps glibc's malloc keeps, set once at a
// daemon's start.
//
// Module sluice::common owns it. glibc gives threads that contend for the
// heap arenas of their own, up to 8 per core, and keeps each arena's freed
// memory for later. A daemon's threads (gRPC's, receivers', tasks') allocate
// megabyte blocks in turn, so each arena grows to its own peak: a quiet
// worker's resident memory rose ~0.5 MB a minute for the 40 minutes measured
// (docs/coordination.md, "Under repeated faults") while its live heap stayed
// near 11 MB. With as many arenas as cores, the same worker grew ~0.1 MB a
// minute. Call before starting any thread; not thread-safe.
#pragma once

namespace sluice {

// At most max(2, cores) malloc arenas, unless the environment names a number
// (MALLOC_ARENA_MAX or GLIBC_TUNABLES' glibc.malloc.arena_max), which wins.
// Returns the limit set, or 0 when the environment's stands.
int LimitMallocArenas();

}  // namespace sluice
