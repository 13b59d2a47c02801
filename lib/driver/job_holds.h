// JobHolds: jobs whose planning the leader holds for a moment, so that what
// it reads of them stays as of one committed batch (a savepoint copying a
// job's state), and names whose state must not be dropped from the workers
// while it is installed (a savepoint restored under a deleted job's name:
// the scheduler skips held names when it drops deleted jobs' state).
//
// Module sluice::driver owns it. The planner plans no batch of a held job;
// batches already planned still run and commit, so a held job reaches a
// state with nothing in flight (JobState.in_flight empty in the log's view),
// which is what its holder waits for. Hold also waits for a plan of the
// job the planner has begun (read the view, append) to end: after Hold, no
// batch of the job is planned until Release, so a record its holder appends
// meets the job exactly as the holder read it (an update's first batch). A
// hold is leader
// memory only: a new leader plans every job, and the caller that held it
// (an RPC on the old leader) fails with the leadership.
//
// Thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

namespace sluice::driver {

class JobHolds {
 public:
  // Held until as many Release calls as Hold calls were made.
  void Hold(const std::string& job) {
    std::unique_lock<std::mutex> lock(mu_);
    ++held_[job];
    planned_.wait(lock, [&] { return !planning_.contains(job); });
  }
  void Release(const std::string& job) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = held_.find(job);
    if (it != held_.end() && --it->second <= 0) held_.erase(it);
  }
  bool Held(const std::string& job) const {
    std::lock_guard<std::mutex> lock(mu_);
    return held_.contains(job);
  }

  // The planner, around reading a job and appending its plan: false (and
  // nothing begun) if the job is held.
  bool BeginPlanning(const std::string& job) {
    std::lock_guard<std::mutex> lock(mu_);
    if (held_.contains(job)) return false;
    planning_.insert(job);
    return true;
  }
  void EndPlanning(const std::string& job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      planning_.erase(job);
    }
    planned_.notify_all();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable planned_;  // a plan ended
  std::map<std::string, int> held_;  // guarded by mu_
  std::set<std::string> planning_;   // guarded by mu_: plans begun, not ended
};

// Holds `job` for the life of the object.
class ScopedJobHold {
 public:
  ScopedJobHold(JobHolds* holds, std::string job) : holds_(holds), job_(std::move(job)) { holds_->Hold(job_); }
  ~ScopedJobHold() { holds_->Release(job_); }
  ScopedJobHold(const ScopedJobHold&) = delete;
  ScopedJobHold& operator=(const ScopedJobHold&) = delete;

 private:
  JobHolds* const holds_;
  const std::string job_;
};

}  // namespace sluice::driver
