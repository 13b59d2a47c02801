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
// A block's bytes are immutable once cut and shared by its copies: the block
// store hands a task a copy without copying megabytes. When the last copy
// goes, the buffer goes back to BufferPool for the next block.
//
// Block is a value type (thread-compatible; copies may be used on different
// threads); BlockBuilder is single-threaded; BufferPool is thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "lib/common/status.h"

namespace sluice::format {

// Large buffers (blocks, a task's output) kept once freed, for the next ones.
// A block of a busy partition is tens of megabytes: malloc gives such a
// buffer its own mapping and unmaps it when it is freed, so every page of
// every new block was faulted in (and zeroed) by the kernel again — at
// 1 M events/s about a quarter of a worker's CPU. Kept buffers stay mapped.
// Bounded: at most kMaxBuffers and kMaxBytes of capacity; the rest is freed.
class BufferPool {
 public:
  // The one pool of the process.
  static BufferPool& Shared() {
    static BufferPool* pool = new BufferPool();  // never destroyed: blocks may outlive static destruction
    return *pool;
  }

  // An empty buffer of at least `at_least` bytes of capacity: the smallest
  // kept one that is, else a new one without any.
  std::string Take(size_t at_least) {
    std::lock_guard<std::mutex> lock(mu_);
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->capacity() >= at_least && (best == free_.end() || it->capacity() < best->capacity())) best = it;
    }
    if (best == free_.end()) return std::string();
    std::string out = std::move(*best);
    *best = std::move(free_.back());
    free_.pop_back();
    bytes_ -= out.capacity();
    return out;
  }

  // Keeps `buffer` (emptied) if it is large and there is room, else frees it.
  void Give(std::string&& buffer) {
    const size_t capacity = buffer.capacity();
    if (capacity < kMinBytes) return;
    buffer.clear();
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() >= kMaxBuffers || bytes_ + capacity > kMaxBytes) return;
    bytes_ += capacity;
    free_.push_back(std::move(buffer));
  }

  // Capacity kept, in bytes (tests).
  size_t kept_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }

  static constexpr size_t kMinBytes = 1 << 20;
  static constexpr size_t kMaxBytes = size_t{512} << 20;
  static constexpr size_t kMaxBuffers = 16;

 private:
  mutable std::mutex mu_;
  std::vector<std::string> free_;  // guarded by mu_
  size_t bytes_ = 0;               // their capacity; guarded by mu_
};

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
      : lineage_(std::move(lineage)), data_(Share(std::move(data))), records_(records) {}

  const BlockLineage& lineage() const { return lineage_; }
  // The encoded records: [u32 length][bytes]...
  const std::string& data() const { return data_ ? *data_ : Empty(); }
  int64_t records() const { return records_; }
  size_t bytes() const { return data().size(); }

  // Calls fn(std::string_view record) for each record in order. DATA_LOSS if
  // the buffer does not hold exactly records() well-formed records.
  template <typename Fn>
  [[nodiscard]] Status ForEach(Fn&& fn) const {
    const std::string& buf = data();
    size_t pos = 0;
    int64_t n = 0;
    while (pos < buf.size()) {
      if (buf.size() - pos < 4) break;
      uint32_t len;
      std::memcpy(&len, buf.data() + pos, 4);
      // pos stays at the length of a truncated record, so it is reported.
      if (buf.size() - pos - 4 < len) break;
      fn(std::string_view(buf.data() + pos + 4, len));
      pos += 4 + static_cast<size_t>(len);
      ++n;
    }
    if (pos != buf.size() || n != records_) {
      return absl::DataLossError(fmt::format("block {}[{}] {}..{}: malformed at byte {}",
                                             lineage_.source, lineage_.partition,
                                             lineage_.start_offset, lineage_.end_offset, pos));
    }
    return absl::OkStatus();
  }

 private:
  static const std::string& Empty() {
    static const std::string* empty = new std::string();
    return *empty;
  }
  // The buffer, shared; back to the pool when its last block goes.
  static std::shared_ptr<const std::string> Share(std::string data) {
    return std::shared_ptr<const std::string>(new std::string(std::move(data)), [](const std::string* s) {
      BufferPool::Shared().Give(std::move(*const_cast<std::string*>(s)));
      delete s;
    });
  }

  BlockLineage lineage_;
  std::shared_ptr<const std::string> data_;  // null: no records
  int64_t records_ = 0;
};

// Accumulates records of one partition, from `start_offset` on, into a block.
class BlockBuilder {
 public:
  BlockBuilder(std::string source, int32_t partition, int64_t start_offset)
      : lineage_{std::move(source), partition, start_offset, start_offset} {}
  ~BlockBuilder() { BufferPool::Shared().Give(std::move(data_)); }
  BlockBuilder(BlockBuilder&&) = default;
  BlockBuilder& operator=(BlockBuilder&&) = default;

  // Room for `bytes`: a kept buffer that large if there is one (its pages
  // already mapped), else a new one with a quarter more, so a block a little
  // larger than the last does not copy itself into a buffer twice its size.
  void Reserve(size_t bytes) {
    if (data_.capacity() >= bytes) return;
    if (data_.empty() && bytes >= BufferPool::kMinBytes) {
      std::string kept = BufferPool::Shared().Take(bytes);
      if (kept.capacity() >= bytes) {
        data_ = std::move(kept);
        return;
      }
    }
    data_.reserve(bytes + bytes / 4);
  }

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
