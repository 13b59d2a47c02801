#include "lib/common/memory.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace sluice {

int LimitMallocArenas() {
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr) return 0;
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.arena_max") != nullptr) return 0;
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const int arenas = static_cast<int>(std::max(2L, cores));
  mallopt(M_ARENA_MAX, arenas);
  return arenas;
}

}  // namespace sluice
