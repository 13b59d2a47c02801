// Pipeline: a job's stateless operators run over whole blocks (docs/jobs.md).
//
// Module sluice::engine owns it. Create() compiles the operators of a
// JobSpec once (expressions parsed, plugins loaded and given one Operator
// instance each, lib/engine/plugin_loader.h); Run() walks a block's records
// and appends one JSON line per output event to a buffer — the form the
// file, stdout and Kafka sinks write.
//
// Per record there is no protobuf message and no heap allocation in the
// steady state: simdjson's on-demand parser reads the record where it is in
// its block (the last few of a block, without enough bytes after them for
// simdjson's padding, are copied into a reusable padded buffer), fields are
// string views into the record and the parser's strings (or into per-record
// scratch that is reused), events reuse their storage, and output goes
// straight into `out`.
// A plugin sees the event as an array of fields (reused) and its new strings
// go to a per-record arena (reused).
// A record that does not parse (or that a plugin rejects, or whose plugin
// call throws) is a dead letter: counted, its offset kept for the log, and
// the block goes on.
//
// Thread-compatible: Run keeps per-record scratch, so each thread that runs
// tasks makes its own Pipeline (Create is cheap; a plugin's library is loaded
// once per process).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "lib/common/status.h"
#include "lib/engine/keyed.h"
#include "lib/format/block.h"
#include "proto/job.pb.h"

namespace sluice::engine {

struct PipelineCounts {
  int64_t input = 0;         // records read
  int64_t output = 0;        // events written
  int64_t dead_letters = 0;  // records that did not parse
  std::string last_dead_letter;
  // One JSON line per dead letter: {"source","partition","offset","error",
  // "record"} (the record as a string; a block that does not decode has none).
  std::string dead_letter_lines;
  // Keyed jobs (FinishShuffle): events behind the watermark (also dead
  // letters), and the newest event time read (0: none).
  int64_t late_events = 0;
  int64_t max_event_time_unix_ms = 0;
};

class Pipeline {
 public:
  // INVALID_ARGUMENT naming the operator for what cannot run;
  // FAILED_PRECONDITION for a plugin library this machine cannot load.
  // `batch` matters to keyed jobs (their windows and watermark).
  [[nodiscard]] static Result<std::unique_ptr<Pipeline>> Create(const proto::JobSpec& spec,
                                                                const BatchContext& batch = {});
  virtual ~Pipeline() = default;

  // Runs every record of `block`; appends output lines to `out` (a keyed
  // job's events go to its KeyedMapper instead, and `out` stays empty).
  virtual void Run(const format::Block& block, std::string* out, PipelineCounts* counts) = 0;

  // Keyed jobs, after the last Run: one row buffer per reduce partition
  // (keyed.h), and the late events and newest event time in `counts`. An
  // aggregation's limit (RESOURCE_EXHAUSTED) fails here; FAILED_PRECONDITION
  // for a job without key_by.
  [[nodiscard]] virtual Result<std::vector<std::string>> FinishShuffle(PipelineCounts* counts) = 0;
};

}  // namespace sluice::engine
