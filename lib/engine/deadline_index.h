// The deadline index of a keyed partition's state: which keys expire first
// (sessions, update_state timeouts), so a batch finds them without reading
// the whole state (docs/state.md "Sessions and timeouts").
//
// Module sluice::engine owns it (keyed.cc writes it, state_partition.cc and
// the worker's state reporting read it). It lives in the state itself, so it
// is versioned, replicated and copied with it:
//
//   P                          -> marker: fixed64 entries, fixed64 bytes (the index's own size)
//   P be64(t ^ sign) user_key  -> "" (one entry per key that can expire)
//
// P = kDeadlineIndexPrefix. t is the time the key's deadline counts from:
// the batch time of its last update (timeouts; deadline t + timeout) or its
// oldest open session's last event (sessions; deadline t + gap +
// allowed_lateness). The added constant is the job's and cannot change
// while its state is kept (docs/jobs.md "Updating a job"), so entries sort
// by deadline, and storing t rather than the sum cannot overflow.
//
// Pure functions: thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "lib/common/status.h"

namespace sluice::engine {

// Ten 0xFF bytes. Every state key is a sequence of `varint(length) bytes`
// parts (combiner.h AppendKeyPart), so it starts with a varint, and
// format::GetVarint refuses ten bytes that all have the continuation bit:
// no state key starts with P. It also sorts after every real state key (one
// starting with nine 0xFF bytes would announce a part of >= 2^63 - 1 bytes),
// so a scan from the first key meets the index last.
inline constexpr std::string_view kDeadlineIndexPrefix = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";

// The marker or an entry: bookkeeping, not a user's key.
inline bool IsDeadlineIndexKey(std::string_view state_key) { return state_key.starts_with(kDeadlineIndexPrefix); }
inline bool IsDeadlineIndexMarker(std::string_view state_key) { return state_key == kDeadlineIndexPrefix; }

std::string DeadlineIndexKey(int64_t t, std::string_view user_key);
// An entry's t and user key; false for the marker, a user's key or a
// truncated entry.
bool ParseDeadlineIndexKey(std::string_view state_key, int64_t* t, std::string_view* user_key);

// The index's own footprint: its entries and their key bytes (values are
// empty), not counting the marker.
struct DeadlineIndexSize {
  int64_t entries = 0;
  int64_t bytes = 0;
  bool operator==(const DeadlineIndexSize&) const = default;
};
std::string EncodeDeadlineIndexMarker(const DeadlineIndexSize& size);
// DATA_LOSS if `value` is not a marker's value.
[[nodiscard]] Result<DeadlineIndexSize> DecodeDeadlineIndexMarker(std::string_view value);

// Removes the index (marker included) from a partition's state counts
// (state_keys / state_bytes: the user's keys only), given the marker's
// value in the same version of the state (nullopt: that state has no
// index). DATA_LOSS for a malformed marker or counts it would make negative.
[[nodiscard]] Status ExcludeDeadlineIndex(const std::optional<std::string>& marker_value, int64_t* keys,
                                          int64_t* bytes);

}  // namespace sluice::engine
