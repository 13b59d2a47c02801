// libFuzzer target: the decoding of keyed state as a worker reads it back
// from its RocksDB or receives it from another worker: the state store's
// deltas, snapshot chunks, m/ values and keys (lib/state/internal/codec.h),
// the aggregation states inside them (lib/engine/aggregate.h, keyed.h
// DecodeStates) and session sets (lib/engine/window.h). The first byte picks
// the decoder; any input must decode or be refused (false, DATA_LOSS),
// never be read past.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lib/engine/aggregate.h"
#include "lib/engine/keyed.h"
#include "lib/engine/window.h"
#include "lib/state/internal/codec.h"

namespace {

using namespace sluice;

std::vector<std::unique_ptr<engine::Aggregator>> Aggregators() {
  std::vector<std::unique_ptr<engine::Aggregator>> out;
  for (const char* fn : {"count", "sum", "avg", "min", "max", "count_distinct", "approx_distinct", "top_k"}) {
    proto::Aggregation a;
    a.set_fn(fn);
    a.set_field("x");
    a.set_k(3);
    Result<std::unique_ptr<engine::Aggregator>> agg = engine::Aggregator::Create(a);
    if (!agg.ok()) __builtin_trap();
    out.push_back(std::move(*agg));
  }
  return out;
}

bool Refused(const Status& st) { return absl::IsDataLoss(st) || absl::IsResourceExhausted(st); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<std::unique_ptr<engine::Aggregator>> aggs = Aggregators();
  static const std::vector<const engine::Aggregator*> agg_ptrs = [] {
    std::vector<const engine::Aggregator*> v;
    for (const auto& a : aggs) v.push_back(a.get());
    return v;
  }();
  if (size == 0) return 0;
  const uint8_t which = data[0];
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  size_t bytes = 0;
  switch (which % 6) {
    case 0:
      (void)state::internal::DecodeDelta(in, [&](std::string_view k, const std::string_view* v) {
        bytes += k.size() + (v != nullptr ? v->size() : 0);
      });
      break;
    case 1:
      (void)state::internal::DecodeSnapshotChunk(in, [&](std::string_view k, std::string_view v) {
        bytes += k.size() + v.size();
      });
      break;
    case 2: {
      Result<state::internal::Meta> m = state::internal::DecodeMeta(in, "job", 0, "/fuzz");
      if (!m.ok() && !absl::IsDataLoss(m.status())) __builtin_trap();
      std::string job;
      int32_t p = 0;
      std::string_view rest;
      (void)state::internal::DecodePart(in, &job, &p, &rest);
      break;
    }
    case 3: {
      // A state value: one state per aggregation; each merged with itself
      // by its aggregation and rendered.
      std::vector<std::string> states;
      Status st = engine::DecodeStates(in, aggs.size(), &states);
      if (!st.ok()) {
        if (!absl::IsDataLoss(st)) __builtin_trap();
        break;
      }
      for (size_t i = 0; i < aggs.size(); ++i) {
        std::string merged = states[i];
        Status m = aggs[i]->Merge(states[i], &merged);
        if (!m.ok() && !Refused(m)) __builtin_trap();
        std::string out;
        Status r = aggs[i]->AppendResult(states[i], &out);
        if (!r.ok() && !Refused(r)) __builtin_trap();
      }
      break;
    }
    case 4: {
      // One aggregation's state, raw: the aggregation by the second byte.
      if (in.empty()) break;
      const engine::Aggregator& agg = *aggs[static_cast<uint8_t>(in[0]) % aggs.size()];
      const std::string_view state = in.substr(1);
      std::string merged(state);
      Status m = agg.Merge(state, &merged);
      if (!m.ok() && !Refused(m)) __builtin_trap();
      std::string out;
      Status r = agg.AppendResult(state, &out);
      if (!r.ok() && !Refused(r)) __builtin_trap();
      break;
    }
    default: {
      // A session set of these aggregations (gap 1 s), merged with itself.
      engine::SessionMerger merger(agg_ptrs, 1000);
      Result<std::vector<engine::Session>> sessions = merger.Decode(in);
      if (!sessions.ok()) {
        if (!absl::IsDataLoss(sessions.status())) __builtin_trap();
        break;
      }
      std::string into(in);
      Status st = merger.Merge(&into, in);
      if (!st.ok() && !Refused(st)) __builtin_trap();
      std::vector<engine::Session> closed;
      std::string set(in);
      Status t = merger.TakeClosed(&set, 0, &closed);
      if (!t.ok() && !Refused(t)) __builtin_trap();
      break;
    }
  }
  (void)bytes;
  return 0;
}
