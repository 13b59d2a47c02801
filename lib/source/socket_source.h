// SocketReader: one socket source partition — a TCP connection to host:port
// carrying newline-terminated lines or length-prefixed frames (a 4-byte
// big-endian length, then the bytes). Like Spark's socketTextStream the
// receiver is the client; it reconnects with backoff when the peer goes away.
//
// Module sluice::source owns it. Not replayable: what was read cannot be
// asked for again, so its blocks go through the receiver WAL (block log +
// replica). Offsets count records from the receiver's start offset.
// Bad input is a dead letter with its offset, and reading goes on: a line
// longer than max_event_bytes (skipped to its newline), a frame longer than
// max_event_bytes (its bytes skipped), so one bad event never breaks framing.
//
// Thread-compatible: one receiver drives one reader.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "lib/source/partition_reader.h"

namespace sluice::source {

struct SocketReaderOptions {
  std::string address;  // host:port
  enum class Framing { kLines, kFrames } framing = Framing::kLines;
  int64_t max_event_bytes = 1 << 20;
};

// INVALID_ARGUMENT for a malformed address.
[[nodiscard]] Result<std::unique_ptr<PartitionReader>> NewSocketReader(SocketReaderOptions options);

}  // namespace sluice::source
