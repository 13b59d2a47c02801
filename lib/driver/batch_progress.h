// BatchProgress: the batch each job runs now on the leader, and how many of
// its tasks are done — what JobRegistry's List/Describe (and so sluicectl
// watch) show of a batch in flight.
//
// Module sluice::driver owns it. The Scheduler's batch threads write it
// (Start, TaskDone, End); JobRegistry reads it. Entries are per job; a batch
// that ends (committed, failed, or this driver stopped leading) is removed.
//
// Thread-safe.
#pragma once

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "proto/driver.pb.h"

namespace sluice::driver {

class BatchProgress {
 public:
  // `job`'s batch `batch_id` starts an attempt: `tasks_total` tasks, of which
  // `tasks_done` already succeeded (an attempt again keeps them).
  void Start(const std::string& job, int64_t batch_id, int32_t tasks_total, int32_t tasks_done, int64_t started_unix_ms,
             int32_t attempt) {
    std::lock_guard<std::mutex> lock(mu_);
    proto::BatchProgress& p = jobs_[job];
    p.set_batch_id(batch_id);
    p.set_tasks_total(tasks_total);
    p.set_tasks_done(tasks_done);
    p.set_started_unix_ms(started_unix_ms);
    p.set_attempt(attempt);
  }
  // One task of the batch succeeded.
  void TaskDone(const std::string& job, int64_t batch_id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(job);
    if (it != jobs_.end() && it->second.batch_id() == batch_id) {
      it->second.set_tasks_done(std::min(it->second.tasks_done() + 1, it->second.tasks_total()));
    }
  }
  // The attempt ended (committed or not).
  void End(const std::string& job, int64_t batch_id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(job);
    if (it != jobs_.end() && it->second.batch_id() == batch_id) jobs_.erase(it);
  }
  // `job`'s batch in flight, with running_ms as of `now_unix_ms`.
  std::optional<proto::BatchProgress> Of(const std::string& job, int64_t now_unix_ms) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end()) return std::nullopt;
    proto::BatchProgress p = it->second;
    p.set_running_ms(std::max<int64_t>(0, now_unix_ms - p.started_unix_ms()));
    return p;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, proto::BatchProgress> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::driver
