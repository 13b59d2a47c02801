#include "lib/source/generator_source.h"

#include <algorithm>
#include <cstring>

namespace sluice::source {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Writes `v` as exactly `width` decimal digits (zero-padded) at `out`.
void Digits(uint64_t v, int width, char* out) {
  for (int i = width - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

// Writes `v` right-aligned in `width` characters, space-padded (a valid JSON
// number: no leading zeros).
void SpacedDigits(uint64_t v, int width, char* out) {
  int i = width - 1;
  do {
    out[i--] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0 && i >= 0);
  while (i >= 0) out[i--] = ' ';
}

// Fixed layout: every variable field has a fixed width, so an event is the
// template with digits patched in at known positions.
constexpr char kHead[] = "{\"id\":\"";                  // then 4 digits partition
constexpr int kPartW = 4;
constexpr char kDash[] = "-";                           // then 12 digits offset
constexpr int kOffW = 12;
constexpr char kKey[] = "\",\"key\":\"k";              // then 8 digits key
constexpr int kKeyW = 8;
constexpr char kTs[] = "\",\"ts\":";                   // then 13 digits time
constexpr int kTsW = 13;
constexpr char kV[] = ",\"v\":";                        // then 6 digits value
constexpr int kVW = 6;
constexpr char kPad[] = ",\"pad\":\"";                  // then 'x'... then "}
constexpr size_t Len(const char* s) { return std::char_traits<char>::length(s); }
constexpr size_t kPartAt = Len(kHead);
constexpr size_t kOffAt = kPartAt + kPartW + Len(kDash);
constexpr size_t kKeyAt = kOffAt + kOffW + Len(kKey);
constexpr size_t kTsAt = kKeyAt + kKeyW + Len(kTs);
constexpr size_t kVAt = kTsAt + kTsW + Len(kV);
constexpr size_t kPadAt = kVAt + kVW + Len(kPad);
constexpr size_t kMinSize = kPadAt + 2;  // "}

}  // namespace

Status GeneratorOptions::Validate() const {
  if (partitions < 1 || partitions > 9999) {
    return absl::InvalidArgumentError(fmt::format("generator.partitions: {} is not in 1..9999", partitions));
  }
  if (payload_size < static_cast<int32_t>(kMinSize) || payload_size > (1 << 20)) {
    return absl::InvalidArgumentError(fmt::format("generator.payload_size: {} is not in {}..{}",
                                                  payload_size, kMinSize, 1 << 20));
  }
  if (num_keys < 1 || num_keys > 99'999'999) {
    return absl::InvalidArgumentError(fmt::format("generator.num_keys: {} is not in 1..99999999", num_keys));
  }
  if (rate_per_partition < 0) return absl::InvalidArgumentError("generator.rate: must not be negative");
  return absl::OkStatus();
}

GeneratorSource::GeneratorSource(GeneratorOptions options, Clock* clock)
    : options_(std::move(options)), clock_(clock), started_(clock->Now()) {
  std::string t;
  t.reserve(options_.payload_size);
  t += kHead;
  t.append(kPartW, '0');
  t += kDash;
  t.append(kOffW, '0');
  t += kKey;
  t.append(kKeyW, '0');
  t += kTs;
  t.append(kTsW, '0');
  t += kV;
  t.append(kVW, '0');
  t += kPad;
  t.append(options_.payload_size - t.size() - 2, 'x');
  t += "\"}";
  template_ = std::move(t);
}

void GeneratorSource::Event(int32_t partition, int64_t offset, char* out) const {
  std::memcpy(out, template_.data(), template_.size());
  const uint64_t h = SplitMix64(options_.seed ^ SplitMix64((static_cast<uint64_t>(partition) << 48) ^
                                                           static_cast<uint64_t>(offset)));
  const int64_t ts = options_.start_time_ms +
                     (options_.rate_per_partition > 0 ? offset * 1000 / options_.rate_per_partition : offset);
  Digits(partition, kPartW, out + kPartAt);
  Digits(offset, kOffW, out + kOffAt);
  Digits(h % options_.num_keys, kKeyW, out + kKeyAt);
  Digits(ts, kTsW, out + kTsAt);
  // A JSON number must not start with 0: the value is right-aligned after
  // spaces (JSON whitespace), still at a fixed width.
  SpacedDigits((h >> 32) % 1'000'000, kVW, out + kVAt);
}

std::string GeneratorSource::EventString(int32_t partition, int64_t offset) const {
  std::string s(template_.size(), '\0');
  Event(partition, offset, s.data());
  return s;
}

int64_t GeneratorSource::Available(int32_t /*partition*/) const {
  if (options_.rate_per_partition <= 0) return INT64_MAX;
  if (options_.available_from_unix_ms > 0) {
    return std::max<int64_t>(0, clock_->UnixMillis() - options_.available_from_unix_ms) *
           options_.rate_per_partition / 1000;
  }
  const auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(clock_->Now() - started_);
  return elapsed.count() * options_.rate_per_partition / 1'000'000;
}

int64_t GeneratorSource::ReadInto(int32_t partition, int64_t end_offset, int64_t max_records,
                                  format::BlockBuilder* builder) const {
  const int64_t from = builder->next_offset();
  const int64_t to = std::min({end_offset, Available(partition), from + max_records});
  for (int64_t o = from; o < to; ++o) {
    builder->AddInPlace(template_.size(), [&](char* out) { Event(partition, o, out); });
  }
  return std::max<int64_t>(0, to - from);
}

}  // namespace sluice::source
