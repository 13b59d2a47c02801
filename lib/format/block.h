// Blocks: what a receiver cuts a source partition's stream into.
//
// Module sluice::format owns the format; sources write blocks, the block
// store keeps them, tasks read them. A block is a contiguous range of one
// source partition, [start_offset, end_offset), with its records in one
// compact buffer: each record is a 4-byte little-endian length and its bytes,
// back to back (no message or allocation per record). The offset range is the
// block's lineage: a replayable source can always produce the same block again
// (docs/design.md "Data path", step 1).
//
// Block is a value type (thread-compatible); BlockBuilder is single-threaded.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "lib/common/status.h"

namespace sluice::format {

struct BlockLineage {
  std::string source;
  int32_t partition = 0;
  int64_t start_offset = 0;  // first record's offset
  int64_t end_offset = 0;    // one past the last record's offset
};

class Block {
 public:
  Block() = default;
  Block(BlockLineage lineage, std::string data, int64_t records)
      : lineage_(std::move(lineage)), data_(std::move(data)), records_(records) {}

  const BlockLineage& lineage() const { return lineage_; }
  // The encoded records: [u32 length][bytes]...
  const std::string& data() const { return data_; }
  int64_t records() const { return records_; }
  size_t bytes() const { return data_.size(); }

  // Calls fn(std::string_view record) for each record in order. DATA_LOSS if
  // the buffer does not hold exactly records() well-formed records.
  template <typename Fn>
  [[nodiscard]] Status ForEach(Fn&& fn) const {
    size_t pos = 0;
    int64_t n = 0;
    while (pos < data_.size()) {
      if (data_.size() - pos < 4) break;
      uint32_t len;
      std::memcpy(&len, data_.data() + pos, 4);
      // pos stays at the length of a truncated record, so it is reported.
      if (data_.size() - pos - 4 < len) break;
      fn(std::string_view(data_.data() + pos + 4, len));
      pos += 4 + static_cast<size_t>(len);
      ++n;
    }
    if (pos != data_.size() || n != records_) {
      return absl::DataLossError(fmt::format("block {}[{}] {}..{}: malformed at byte {}",
                                             lineage_.source, lineage_.partition,
                                             lineage_.start_offset, lineage_.end_offset, pos));
    }
    return absl::OkStatus();
  }

 private:
  BlockLineage lineage_;
  std::string data_;
  int64_t records_ = 0;
};

// Accumulates records of one partition, from `start_offset` on, into a block.
class BlockBuilder {
 public:
  BlockBuilder(std::string source, int32_t partition, int64_t start_offset)
      : lineage_{std::move(source), partition, start_offset, start_offset} {}

  void Reserve(size_t bytes) { data_.reserve(bytes); }

  // Consumes the next offset without a record: a dead letter (an event over
  // the size limit, a frame that does not parse). The block's range still
  // covers the offset, so the stream stays contiguous; `why` is kept for the
  // receiver's log.
  void AddDeadLetter(std::string why) {
    ++lineage_.end_offset;
    ++dead_letters_;
    last_dead_letter_ = fmt::format("offset {}: {}", lineage_.end_offset - 1, std::move(why));
  }
  // Dead letters since the builder was made (not reset by Cut).
  int64_t dead_letters() const { return dead_letters_; }
  const std::string& last_dead_letter() const { return last_dead_letter_; }
  // Appends the record at the next offset.
  void Add(std::string_view record) {
    // append, not resize + memcpy: no zero-filling of bytes about to be copied.
    const uint32_t len = static_cast<uint32_t>(record.size());
    data_.append(reinterpret_cast<const char*>(&len), 4);
    data_.append(record.data(), record.size());
    ++lineage_.end_offset;
    ++records_;
  }
  // Appends a record of `size` bytes written in place by fill(char* out).
  template <typename Fill>
  void AddInPlace(size_t size, Fill&& fill) {
    uint32_t len = static_cast<uint32_t>(size);
    const size_t at = data_.size();
    data_.resize(at + 4 + size);
    std::memcpy(data_.data() + at, &len, 4);
    fill(data_.data() + at + 4);
    ++lineage_.end_offset;
    ++records_;
  }

  // Records in the block so far (dead letters excluded).
  int64_t records() const { return records_; }
  // Whether the block so far covers no offset at all.
  bool empty() const { return lineage_.end_offset == lineage_.start_offset; }
  size_t bytes() const { return data_.size(); }
  int64_t next_offset() const { return lineage_.end_offset; }
  int64_t start_offset() const { return lineage_.start_offset; }

  // The block so far; the builder starts a new one at the next offset.
  Block Cut() {
    Block b(lineage_, std::move(data_), records_);
    lineage_.start_offset = lineage_.end_offset;
    data_ = std::string();
    records_ = 0;
    return b;
  }

 private:
  BlockLineage lineage_;
  std::string data_;
  int64_t records_ = 0;
  int64_t dead_letters_ = 0;
  std::string last_dead_letter_;
};

}  // namespace sluice::format
