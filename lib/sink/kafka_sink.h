// The Kafka sink: transactional, idempotent per (job, batch, output partition).
//
// Module sluice::sink owns it. Output partition P of a job is written by one
// transactional producer, transactional.id "sluice-<job>-<P>", into partition
// P of the topic (the topic needs at least as many partitions as the job
// reads; FAILED_PRECONDITION otherwise). Writing batch N to P:
//
//   1. open the producer if this process has none for P: InitTransactions
//      bumps the producer epoch, which fences any older producer of the same
//      id — a zombie task of a dead leader or a paused worker can no longer
//      commit, and its open transaction is aborted;
//   2. read which batch P already holds: the sluice.batch header of the last
//      record of this job in P (read_committed); if it is N or later, the
//      batch is already there: skip;
//   3. begin, produce every line with headers sluice.job/sluice.batch,
//      commit. A fenced or fatal producer is dropped and steps 1-3 are tried
//      once more with a new one (which fences the other).
//
// Writes to one partition are serialised within the process, so a re-run
// that lands on the same worker checks after the first attempt has ended.
// Just before committing, the sink also asks the worker whether the task's
// leader epoch is still the newest it has seen (WriteRequest::still_current):
// a task of a superseded leader aborts instead of committing.
//
// librdkafka's mock cluster (2.0.2) neither hides aborted records from
// read_committed consumers nor fences an older producer's commit after
// InitTransactions (measured, docs/jobs.md): there, only the epoch check
// stops a zombie, and step 2 can see a zombie's aborted batch.
//
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "lib/common/status.h"
#include "lib/sink/sink.h"

typedef struct rd_kafka_s rd_kafka_t;

namespace sluice::sink {

// One transactional producer of one output partition, step by step (the
// sink composes them; tests drive them one at a time).
class KafkaPartitionWriter {
 public:
  // Creates the producer and runs InitTransactions (fencing older ones).
  [[nodiscard]] static Result<std::unique_ptr<KafkaPartitionWriter>> Open(const proto::KafkaSinkSpec& spec,
                                                                          const std::string& job_id,
                                                                          int32_t partition);
  ~KafkaPartitionWriter();

  // The batch this job's last record in the partition carries; 0 if none.
  [[nodiscard]] Result<int64_t> HeldBatch();

  // begin; produce; (commit | abort). A FAILED_PRECONDITION means this
  // producer is fenced or failed for good: open a new one.
  [[nodiscard]] Status Begin();
  [[nodiscard]] Status Produce(int64_t batch_id, std::string_view lines);
  [[nodiscard]] Status Commit();
  void Abort();

  // The topic's partition count (metadata), for the sink's check.
  [[nodiscard]] Result<int32_t> TopicPartitions();

 private:
  KafkaPartitionWriter(proto::KafkaSinkSpec spec, std::string job_id, int32_t partition)
      : spec_(std::move(spec)), job_id_(std::move(job_id)), partition_(partition) {}
  [[nodiscard]] Status FromTxnError(void* error, std::string_view step);

  const proto::KafkaSinkSpec spec_;
  const std::string job_id_;
  const int32_t partition_;
  rd_kafka_t* producer_ = nullptr;
};

[[nodiscard]] Result<std::unique_ptr<Sink>> OpenKafkaSink(const proto::KafkaSinkSpec& spec);

}  // namespace sluice::sink
