// libFuzzer target: the block format (lib/format/block.h). The first 8
// bytes are the record count the block claims, the rest its buffer; any
// buffer must walk to its end or be DATA_LOSS, never be read past.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "lib/format/block.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  using namespace sluice::format;
  if (size < 8) return 0;
  int64_t records = 0;
  std::memcpy(&records, data, 8);
  Block block(BlockLineage{"s", 0, 0, records}, std::string(reinterpret_cast<const char*>(data) + 8, size - 8),
              records);
  size_t bytes = 0;
  int64_t n = 0;
  Status st = block.ForEach([&](std::string_view r) {
    bytes += r.size();
    ++n;
  });
  if (st.ok() && (n != records || bytes + 4 * static_cast<size_t>(n) != block.bytes())) __builtin_trap();
  if (!st.ok() && !absl::IsDataLoss(st)) __builtin_trap();
  return 0;
}
