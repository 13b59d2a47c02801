#include "lib/engine/deadline_index.h"

#include "lib/format/varint.h"

namespace sluice::engine {
namespace {

constexpr uint64_t kSignBit = uint64_t{1} << 63;

}  // namespace

std::string DeadlineIndexKey(int64_t t, std::string_view user_key) {
  std::string key;
  key.reserve(kDeadlineIndexPrefix.size() + 8 + user_key.size());
  key.append(kDeadlineIndexPrefix);
  // Big-endian with the sign flipped: byte order is numeric order, negatives
  // (event times before 1970) first.
  const uint64_t biased = static_cast<uint64_t>(t) ^ kSignBit;
  for (int i = 7; i >= 0; --i) key.push_back(static_cast<char>((biased >> (8 * i)) & 0xff));
  key.append(user_key);
  return key;
}

bool ParseDeadlineIndexKey(std::string_view state_key, int64_t* t, std::string_view* user_key) {
  if (!IsDeadlineIndexKey(state_key) || state_key.size() <= kDeadlineIndexPrefix.size() + 8) return false;
  uint64_t biased = 0;
  for (size_t i = 0; i < 8; ++i) {
    biased = (biased << 8) | static_cast<unsigned char>(state_key[kDeadlineIndexPrefix.size() + i]);
  }
  *t = static_cast<int64_t>(biased ^ kSignBit);
  *user_key = state_key.substr(kDeadlineIndexPrefix.size() + 8);
  return true;
}

std::string EncodeDeadlineIndexMarker(const DeadlineIndexSize& size) {
  std::string v;
  format::PutFixed64(static_cast<uint64_t>(size.entries), &v);
  format::PutFixed64(static_cast<uint64_t>(size.bytes), &v);
  return v;
}

Result<DeadlineIndexSize> DecodeDeadlineIndexMarker(std::string_view value) {
  if (value.size() != 16) return absl::DataLossError("the deadline index's marker is malformed");
  DeadlineIndexSize size{.entries = static_cast<int64_t>(format::GetFixed64(value.data())),
                         .bytes = static_cast<int64_t>(format::GetFixed64(value.data() + 8))};
  if (size.entries < 0 || size.bytes < 0) return absl::DataLossError("the deadline index's marker is malformed");
  return size;
}

Status ExcludeDeadlineIndex(const std::optional<std::string>& marker_value, int64_t* keys, int64_t* bytes) {
  if (!marker_value) return absl::OkStatus();
  ASSIGN_OR_RETURN(DeadlineIndexSize size, DecodeDeadlineIndexMarker(*marker_value));
  const int64_t index_keys = size.entries + 1;
  const int64_t index_bytes = size.bytes + static_cast<int64_t>(kDeadlineIndexPrefix.size() + marker_value->size());
  if (index_keys > *keys || index_bytes > *bytes) {
    return absl::DataLossError("the deadline index's marker counts more than the state holds");
  }
  *keys -= index_keys;
  *bytes -= index_bytes;
  return absl::OkStatus();
}

}  // namespace sluice::engine
