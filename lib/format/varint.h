// Unsigned LEB128 varints, length-prefixed byte strings and fixed 64-bit
// little-endian integers: the framing of aggregate states (aggregate.h),
// shuffle rows (engine/combiner.h) and keyed state values (engine/keyed.h).
//
// Module sluice::format owns them. Pure inline functions: thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::format {

inline void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Reads a varint at *pos; false if truncated or longer than 10 bytes.
inline bool GetVarint(std::string_view in, size_t* pos, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64 && *pos < in.size(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in[(*pos)++]);
    result |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

// Reads a varint-length-prefixed byte string at *pos.
inline bool GetLengthPrefixed(std::string_view in, size_t* pos, std::string_view* out) {
  uint64_t len = 0;
  if (!GetVarint(in, pos, &len) || len > in.size() - *pos) return false;
  *out = in.substr(*pos, len);
  *pos += len;
  return true;
}

inline void PutLengthPrefixed(std::string_view s, std::string* out) {
  PutVarint(s.size(), out);
  out->append(s);
}

// 8 bytes, little-endian, on any machine.
inline void PutFixed64(uint64_t v, std::string* out) {
  char buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out->append(buf, 8);
}

inline uint64_t GetFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

}  // namespace sluice::format
