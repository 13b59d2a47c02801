// Sinks: where a task's output goes (docs/jobs.md "Sinks").
//
// Module sluice::sink owns them. A task's output is whole JSON lines for one
// (job, batch, output partition); every sink is idempotent per that triple,
// so a batch re-run after a failure replaces or skips, never appends twice
// (docs/design.md "Exactly-once"):
//
//   file:   <path>/<job>-batch-<N>-part-<task>.jsonl (.csv), written to a temporary
//           name, fsynced, renamed, the directory fsynced: a re-run replaces.
//   kafka:  one transaction per write, transactional id
//           "sluice-<job>-<output partition>", into that partition of the
//           topic; before writing, the sink reads which batch the partition
//           already holds (headers sluice.job / sluice.batch on every record)
//           and skips a batch it holds. Opening the producer fences a zombie
//           writer of the same partition (Kafka's producer epoch).
//   stdout: the process's standard output (demo); null: nothing.
//
// Dead letters (records that did not parse) are written next to the output
// when the job names a dead-letter directory (file sink: <path>/dead-letters
// by default), one JSON line each, idempotent the same way as the file sink.
//
// Thread-safe: one Sink per job on a worker, shared by its task threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lib/common/status.h"
#include "proto/job.pb.h"

namespace sluice::sink {

struct WriteRequest {
  std::string job_id;
  int64_t batch_id = 0;
  int32_t task = 0;              // index of the task in its batch (file names)
  int32_t output_partition = 0;  // stable across batches (Kafka partition)
  // Asked right before a transactional sink commits: an error (the task's
  // leader has been superseded) aborts the write. Empty: always current.
  std::function<Status()> still_current;
};

struct WriteResult {
  std::string name;      // what was written: a file, topic[partition]
  bool skipped = false;  // the output already held this batch
};

class Sink {
 public:
  virtual ~Sink() = default;
  // Writes `lines` (JSON lines, each ending in '\n') as the output of
  // `request`; UNAVAILABLE for what a retry may fix.
  [[nodiscard]] virtual Result<WriteResult> Write(const WriteRequest& request, std::string_view lines) = 0;
};

// INVALID_ARGUMENT for a spec without a sink.
[[nodiscard]] Result<std::unique_ptr<Sink>> OpenSink(const proto::SinkSpec& spec);

// The file sink's step on its own: `data` lands at dir/name whole or not at
// all (temporary name, fsync, rename, directory fsync).
[[nodiscard]] Status WriteFileAtomically(const std::string& dir, const std::string& name, std::string_view data);

// The file name of one task's output of one batch (file sink, dead letters).
std::string BatchFileName(const std::string& job_id, int64_t batch_id, int32_t task,
                          std::string_view extension = "jsonl");

}  // namespace sluice::sink
