// The map-side combiner and the reduce-side merge; row format in combiner.h.
#include "lib/engine/combiner.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <iterator>
#include <utility>

#include "fmt/format.h"
#include "lib/engine/json_text.h"
#include "lib/format/varint.h"

namespace sluice::engine {
namespace {

Result<std::vector<std::unique_ptr<Aggregator>>> MakeAggregators(const proto::AggregateOp& op) {
  if (op.aggregations_size() == 0) {
    return absl::InvalidArgumentError("aggregate: no aggregations");
  }
  std::vector<std::unique_ptr<Aggregator>> aggs;
  aggs.reserve(op.aggregations_size());
  for (int i = 0; i < op.aggregations_size(); ++i) {
    Result<std::unique_ptr<Aggregator>> agg = Aggregator::Create(op.aggregations(i));
    if (!agg.ok()) return Annotate(agg.status(), fmt::format("aggregation {}", i + 1));
    aggs.push_back(std::move(*agg));
  }
  return aggs;
}

}  // namespace

void AppendKeyPart(const Value& value, std::string* key) {
  thread_local std::string vk;  // reused: one per event and key field
  vk.clear();
  if (!EncodeValueKey(value, &vk)) vk.clear();
  format::PutLengthPrefixed(vk, key);
}

Status AppendKeyJson(std::string_view key, std::string* out) {
  out->push_back('[');
  size_t pos = 0;
  bool first = true;
  while (pos < key.size()) {
    std::string_view part;
    if (!format::GetLengthPrefixed(key, &pos, &part)) {
      return absl::DataLossError(fmt::format("malformed key: bad part at byte {}", pos));
    }
    if (!first) out->push_back(',');
    first = false;
    if (part.empty()) {
      out->append("null");
    } else if (!AppendValueKeyJson(part, out)) {
      return absl::DataLossError("malformed key: a part is not a value key");
    }
  }
  out->push_back(']');
  return absl::OkStatus();
}

uint32_t PartitionOf(std::string_view key, uint32_t reduce_partitions) {
  return static_cast<uint32_t>(StableHash64(key) % reduce_partitions);
}

// ---- Combiner ----

Result<std::unique_ptr<Combiner>> Combiner::Create(const proto::AggregateOp& op,
                                                   uint32_t reduce_partitions, int partition_key_parts) {
  if (reduce_partitions < 1) {
    return absl::InvalidArgumentError("reduce_partitions must be at least 1");
  }
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Aggregator>> aggs, MakeAggregators(op));
  return std::unique_ptr<Combiner>(new Combiner(std::move(aggs), reduce_partitions, partition_key_parts));
}

uint32_t Combiner::Partition(std::string_view key) const {
  if (partition_key_parts_ > 0) {
    size_t pos = 0;
    std::string_view part;
    for (int i = 0; i < partition_key_parts_ && format::GetLengthPrefixed(key, &pos, &part); ++i) {
    }
    key = key.substr(0, pos);
  }
  return PartitionOf(key, reduce_partitions_);
}

Status Combiner::Add(std::string_view key, std::span<const Value> values) {
  if (values.size() != aggs_.size()) {
    return absl::InvalidArgumentError(
        fmt::format("{} values for {} aggregations", values.size(), aggs_.size()));
  }
  auto it = states_.find(key);
  if (it == states_.end()) {
    it = states_.emplace(std::string(key), std::vector<std::string>(aggs_.size())).first;
  }
  std::vector<std::string>& states = it->second;
  for (size_t i = 0; i < aggs_.size(); ++i) {
    RETURN_IF_ERROR(aggs_[i]->Add(values[i], &states[i]));
  }
  return absl::OkStatus();
}

std::vector<std::string> Combiner::Finish() {
  std::vector<std::vector<const StateMap::value_type*>> rows(reduce_partitions_);
  for (const StateMap::value_type& entry : states_) {
    rows[Partition(entry.first)].push_back(&entry);
  }
  std::vector<std::string> buffers(reduce_partitions_);
  for (uint32_t p = 0; p < reduce_partitions_; ++p) {
    std::sort(rows[p].begin(), rows[p].end(),
              [](const auto* a, const auto* b) { return a->first < b->first; });
    std::string& out = buffers[p];
    for (const StateMap::value_type* entry : rows[p]) {
      format::PutLengthPrefixed(entry->first, &out);
      for (const std::string& state : entry->second) format::PutLengthPrefixed(state, &out);
    }
  }
  states_.clear();
  return buffers;
}

// ---- ShuffleReader ----

Result<std::unique_ptr<ShuffleReader>> ShuffleReader::Create(const proto::AggregateOp& op) {
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Aggregator>> aggs, MakeAggregators(op));
  std::vector<std::string> names;
  for (const proto::Aggregation& a : op.aggregations()) {
    if (!a.as().empty()) {
      names.push_back(a.as());
    } else {
      names.push_back(a.fn() == "count" ? "count" : a.fn() + "_" + a.field());
    }
  }
  return std::unique_ptr<ShuffleReader>(new ShuffleReader(std::move(aggs), std::move(names)));
}

Status ShuffleReader::MergeRows(std::string_view buffer) {
  // Parse and check everything first, so a bad buffer merges nothing.
  const size_t n = aggs_.size();
  std::vector<std::string_view> fields;  // per row: key, then n states
  size_t pos = 0;
  size_t row = 0;
  while (pos < buffer.size()) {
    const size_t row_start = pos;
    for (size_t f = 0; f <= n; ++f) {
      std::string_view field;
      if (!format::GetLengthPrefixed(buffer, &pos, &field)) {
        return absl::DataLossError(fmt::format(
            "shuffle buffer truncated or malformed: row {} (at byte {}), {} at byte {} of {}",
            row, row_start, f == 0 ? std::string("key") : fmt::format("state {}", f), pos,
            buffer.size()));
      }
      if (f == 0 && row > 0 && !(fields[(row - 1) * (n + 1)] < field)) {
        return absl::DataLossError(fmt::format(
            "shuffle buffer malformed: row {} (at byte {}): keys not strictly ascending", row,
            row_start));
      }
      fields.push_back(field);
    }
    ++row;
  }
  for (size_t r = 0; r < row; ++r) {
    const std::string_view key = fields[r * (n + 1)];
    auto it = states_.find(key);
    if (it == states_.end()) {
      it = states_.emplace(std::string(key), std::vector<std::string>(n)).first;
    }
    for (size_t i = 0; i < n; ++i) {
      RETURN_IF_ERROR_PREPEND(aggs_[i]->Merge(fields[r * (n + 1) + 1 + i], &it->second[i]),
                              fmt::format("shuffle row {}", r));
    }
  }
  return absl::OkStatus();
}

std::vector<const StateMap::value_type*> ShuffleReader::Sorted() const {
  std::vector<const StateMap::value_type*> sorted;
  sorted.reserve(states_.size());
  for (const StateMap::value_type& entry : states_) sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  return sorted;
}

Status ShuffleReader::AppendResults(std::string* out) const {
  const std::vector<const StateMap::value_type*> sorted = Sorted();
  for (const StateMap::value_type* entry : sorted) {
    out->append("{\"key\":");
    RETURN_IF_ERROR(AppendKeyJson(entry->first, out));
    for (size_t i = 0; i < aggs_.size(); ++i) {
      out->push_back(',');
      AppendJsonString(names_[i], out);
      out->push_back(':');
      RETURN_IF_ERROR(aggs_[i]->AppendResult(entry->second[i], out));
    }
    out->append("}\n");
  }
  return absl::OkStatus();
}

const std::vector<std::string>* ShuffleReader::Find(std::string_view key) const {
  auto it = states_.find(key);
  return it == states_.end() ? nullptr : &it->second;
}

}  // namespace sluice::engine
