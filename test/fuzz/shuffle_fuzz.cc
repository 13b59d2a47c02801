// libFuzzer target: the shuffle row reader (lib/engine/combiner.h): one map
// task's buffer for a reduce partition, merged with every built-in
// aggregation's Merge and rendered. Any buffer must merge or be DATA_LOSS
// (RESOURCE_EXHAUSTED at an aggregation's limit), never be read past.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "lib/engine/combiner.h"

namespace {

sluice::proto::AggregateOp Op() {
  sluice::proto::AggregateOp op;
  for (const char* fn : {"count", "sum", "avg", "min", "max", "count_distinct", "approx_distinct", "top_k"}) {
    sluice::proto::Aggregation* a = op.add_aggregations();
    a->set_fn(fn);
    a->set_field("x");
    a->set_k(3);
    a->set_as(std::string(fn) + "_x");
  }
  return op;
}

bool Expected(const sluice::Status& st) {
  return st.ok() || absl::IsDataLoss(st) || absl::IsResourceExhausted(st) || absl::IsInvalidArgument(st);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  using namespace sluice::engine;
  static const sluice::proto::AggregateOp op = Op();
  Result<std::unique_ptr<ShuffleReader>> reader = ShuffleReader::Create(op);
  if (!reader.ok()) __builtin_trap();
  const std::string_view buffer(reinterpret_cast<const char*>(data), size);
  sluice::Status st = (*reader)->MergeRows(buffer);
  if (!Expected(st)) __builtin_trap();
  if (!st.ok()) return 0;
  // The same buffer again: every key merges with itself.
  if (!Expected((*reader)->MergeRows(buffer))) __builtin_trap();
  std::string out;
  if (!Expected((*reader)->AppendResults(&out))) __builtin_trap();
  return 0;
}
