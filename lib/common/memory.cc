#include "lib/common/memory.h"

#include <malloc.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace sluice {

int LimitMallocArenas() {
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr) return 0;
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.arena_max") != nullptr) return 0;
  // The CPUs this process may run on (a container's or taskset's), not the
  // machine's.
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const int cores = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 2;
  const int arenas = std::max(2, cores);
  mallopt(M_ARENA_MAX, arenas);
  return arenas;
}

}  // namespace sluice
