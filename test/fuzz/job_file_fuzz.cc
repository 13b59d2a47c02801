// libFuzzer target: job files (lib/engine/job_file.h), YAML or JSON, through
// the same checks the leader runs at submit. Any input must end in a spec or
// INVALID_ARGUMENT.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lib/engine/job_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  using namespace sluice::engine;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<sluice::proto::JobSpec> spec = ParseJobFile(text, "fuzz.yaml");
  if (!spec.ok()) {
    if (!absl::IsInvalidArgument(spec.status())) __builtin_trap();
    return 0;
  }
  // What the leader runs on a submitted spec.
  if (!ValidateJobSpec(*spec).ok()) __builtin_trap();  // ParseJobFile validated it
  (void)CheckRunnable(*spec);
  return 0;
}
