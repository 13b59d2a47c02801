// The byte formats of the state store's keys and values (state_store.h
// gives the layout): big-endian keys whose byte order is numeric order,
// varint-length-prefixed deltas and snapshot chunks, the m/ value.
//
// Internal to module sluice::state (state_store.cc and its tests and fuzz
// target). Every decoder checks each length against the bytes it has and
// returns false (or DATA_LOSS) for a malformed input, never reads past it.
// Pure inline functions: thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/common/status.h"
#include "lib/state/state_store.h"

namespace sluice::state::internal {

inline constexpr char kMeta = 'm';
inline constexpr char kSnapshot = 'n';
inline constexpr char kDelta = 'd';
inline constexpr char kEntry = 'k';      // the disk layout: one state entry
inline constexpr char kGeneration = 'g';  // a disk generation being written (Install, conversion)
inline constexpr char kValueTag = 'v';
inline constexpr char kTombstone = 't';
// The store's format (lib/common/version.h, kStateStoreFormat), as decimal
// text; absent in a store written before it existed, which is format 1.
inline constexpr char kFormatKey[] = "f";
inline constexpr char kMetaVersion = 2;      // first byte of an m/ value (the old layout's was 8 bytes, no version)
inline constexpr char kMetaVersionLayout = 3;  // format 2: m/ also says the layout and the disk generation
inline constexpr char kBlobVersion = 1;      // first byte of a delta or a snapshot chunk
inline void AppendU32(std::string* out, uint32_t x) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((x >> (8 * i)) & 0xff));
}
inline void AppendU64(std::string* out, uint64_t x) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((x >> (8 * i)) & 0xff));
}
inline uint64_t ReadU(const char* p, int n) {
  uint64_t x = 0;
  for (int i = 0; i < n; ++i) x = (x << 8) | static_cast<unsigned char>(p[i]);
  return x;
}
// Signed integers with the sign bit flipped: byte order = numeric order.
inline void AppendI32(std::string* out, int32_t x) { AppendU32(out, static_cast<uint32_t>(x) ^ 0x80000000u); }
inline void AppendI64(std::string* out, int64_t x) { AppendU64(out, static_cast<uint64_t>(x) ^ 0x8000000000000000ull); }
inline int32_t ReadI32(const char* p) { return static_cast<int32_t>(static_cast<uint32_t>(ReadU(p, 4)) ^ 0x80000000u); }
inline int64_t ReadI64(const char* p) { return static_cast<int64_t>(ReadU(p, 8) ^ 0x8000000000000000ull); }

inline std::string JobPrefix(char tag, std::string_view job) {
  std::string k(1, tag);
  AppendU32(&k, static_cast<uint32_t>(job.size()));
  k.append(job);
  return k;
}
inline std::string PartPrefix(char tag, std::string_view job, int32_t p) {
  std::string k = JobPrefix(tag, job);
  AppendI32(&k, p);
  return k;
}
inline std::string DeltaKey(std::string_view job, int32_t p, int64_t n) {
  std::string k = PartPrefix(kDelta, job, p);
  AppendI64(&k, n);
  return k;
}
inline std::string ChunkKey(std::string_view job, int32_t p, int64_t s, uint32_t chunk) {
  std::string k = PartPrefix(kSnapshot, job, p);
  AppendI64(&k, s);
  AppendU32(&k, chunk);
  return k;
}

// The disk layout's entries of generation `gen`: GenPrefix + the state key.
inline std::string GenPrefix(std::string_view job, int32_t p, uint64_t gen) {
  std::string k = PartPrefix(kEntry, job, p);
  AppendU64(&k, gen);
  return k;
}
inline std::string GenMarker(std::string_view job, int32_t p, uint64_t gen) {
  std::string k = PartPrefix(kGeneration, job, p);
  AppendU64(&k, gen);
  return k;
}

// Decodes the (job, p) of a key of any tag; the bytes after them go to
// *rest. False if the key is malformed.
inline bool DecodePart(std::string_view k, std::string* job, int32_t* p, std::string_view* rest) {
  if (k.size() < 9) return false;
  const uint64_t len = ReadU(k.data() + 1, 4);
  if (k.size() < 9 + len) return false;
  job->assign(k.data() + 5, len);
  *p = ReadI32(k.data() + 5 + len);
  *rest = k.substr(9 + len);
  return true;
}

// --- Values: varint-length-prefixed entries ---

inline void AppendVarint(std::string* out, uint64_t x) {
  while (x >= 0x80) {
    out->push_back(static_cast<char>((x & 0x7f) | 0x80));
    x >>= 7;
  }
  out->push_back(static_cast<char>(x));
}
inline void AppendBytes(std::string* out, std::string_view b) {
  AppendVarint(out, b.size());
  out->append(b);
}

// Reads a value written with the Append* functions above.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool Varint(uint64_t* x) {
    *x = 0;
    for (int shift = 0; shift < 64 && !in_.empty(); shift += 7) {
      const auto b = static_cast<unsigned char>(in_.front());
      in_.remove_prefix(1);
      *x |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool Bytes(std::string_view* b) {
    uint64_t n = 0;
    if (!Varint(&n) || n > in_.size()) return false;
    *b = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  bool Byte(char* c) {
    if (in_.empty()) return false;
    *c = in_.front();
    in_.remove_prefix(1);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

// A delta: kBlobVersion, the count, then per change (key order) 'v' key
// value or 't' key. Calls fn(key, value or nullptr) per change; false if
// malformed.
template <typename Fn>
bool DecodeDelta(std::string_view blob, Fn&& fn) {
  Reader r(blob);
  char version = 0;
  uint64_t count = 0;
  if (!r.Byte(&version) || version != kBlobVersion || !r.Varint(&count)) return false;
  for (uint64_t i = 0; i < count; ++i) {
    char tag = 0;
    std::string_view key, value;
    if (!r.Byte(&tag) || !r.Bytes(&key)) return false;
    if (tag == kValueTag) {
      if (!r.Bytes(&value)) return false;
      fn(key, &value);
    } else if (tag == kTombstone) {
      fn(key, static_cast<const std::string_view*>(nullptr));
    } else {
      return false;
    }
  }
  return r.done();
}

// A snapshot chunk: kBlobVersion, the count, then per entry key value (key
// order). Calls fn(key, value) per entry; false if malformed.
template <typename Fn>
bool DecodeSnapshotChunk(std::string_view chunk, Fn&& fn) {
  Reader r(chunk);
  char version = 0;
  uint64_t count = 0;
  if (!r.Byte(&version) || version != kBlobVersion || !r.Varint(&count)) return false;
  for (uint64_t e = 0; e < count; ++e) {
    std::string_view k, v;
    if (!r.Bytes(&k) || !r.Bytes(&v)) return false;
    fn(k, v);
  }
  return r.done();
}

// `changes` in key order, the later of two changes to one key winning.
inline std::string EncodeDelta(std::span<const Change> changes) {
  std::vector<const Change*> order;
  order.reserve(changes.size());
  bool sorted = true;
  for (size_t i = 0; i < changes.size(); ++i) {
    if (i > 0 && !(changes[i - 1].key < changes[i].key)) sorted = false;
    order.push_back(&changes[i]);
  }
  if (!sorted) {
    std::stable_sort(order.begin(), order.end(), [](const Change* a, const Change* b) { return a->key < b->key; });
    std::vector<const Change*> last;  // of each run of one key, the last given
    last.reserve(order.size());
    for (size_t i = 0; i < order.size(); ++i) {
      if (i + 1 < order.size() && order[i + 1]->key == order[i]->key) continue;
      last.push_back(order[i]);
    }
    order = std::move(last);
  }
  size_t size = 16;
  for (const Change* c : order) size += c->key.size() + (c->value.has_value() ? c->value->size() : 0) + 12;
  std::string out;
  out.reserve(size);
  out.push_back(kBlobVersion);
  AppendVarint(&out, order.size());
  for (const Change* c : order) {
    out.push_back(c->value.has_value() ? kValueTag : kTombstone);
    AppendBytes(&out, c->key);
    if (c->value.has_value()) AppendBytes(&out, *c->value);
  }
  return out;
}

// The m/ value.
struct Meta {
  int64_t folded = -1;    // C
  int64_t snapshot = -1;  // S
  uint32_t chunks = 0;    // of snapshot S
  int64_t keys = 0;       // of the state as of C
  int64_t bytes = 0;
  // The disk layout: the state as of C is the k/ entries of generation
  // `gen`; no snapshot chunks (chunks == 0), and S < N <= C are the folded
  // deltas kept for incremental copies.
  bool disk = false;
  uint64_t gen = 0;
};

inline std::string EncodeMeta(const Meta& m) {
  std::string v(1, kMetaVersionLayout);
  AppendI64(&v, m.folded);
  AppendI64(&v, m.snapshot);
  AppendU32(&v, m.chunks);
  AppendI64(&v, m.keys);
  AppendI64(&v, m.bytes);
  v.push_back(m.disk ? 1 : 0);
  AppendU64(&v, m.gen);
  return v;
}

inline Result<Meta> DecodeMeta(std::string_view v, std::string_view job, int32_t p, std::string_view dir) {
  if (v.size() == 8) {
    return absl::DataLossError(fmt::format(
        "state store {}: {}[{}] was written by an older layout (one RocksDB key per state key); remove the "
        "directory (the state is fetched from a replica or recomputed)",
        dir, job, p));
  }
  const bool v2 = v.size() == 37 && v[0] == kMetaVersion;  // format 1: in memory, always
  const bool v3 = v.size() == 46 && v[0] == kMetaVersionLayout && (v[37] == 0 || v[37] == 1);
  if (!v2 && !v3) {
    return absl::DataLossError(fmt::format("state store {}: malformed m/ of {}[{}]", dir, job, p));
  }
  const char* d = v.data() + 1;
  Meta m;
  m.folded = ReadI64(d);
  m.snapshot = ReadI64(d + 8);
  m.chunks = static_cast<uint32_t>(ReadU(d + 16, 4));
  m.keys = ReadI64(d + 20);
  m.bytes = ReadI64(d + 28);
  if (v3) {
    m.disk = d[36] == 1;
    m.gen = ReadU(d + 37, 8);
  }
  return m;
}

}  // namespace sluice::state::internal
