// A plugin built for an API version no worker supports (plugin_test's
// "version mismatch" case). Its create() must never be called.
#include <cstdlib>

#include "lib/engine/plugin_api.h"

extern "C" int sluice_plugin_api_version(void) { return 999; }

extern "C" sluice::plugin::Operator* sluice_plugin_v1_create(const sluice::plugin::Config*, char*, size_t) {
  std::abort();  // the loader refuses the version first
}
