// SerialExecutor: one thread that runs posted tasks one at a time, in order
// of their due time (then of posting).
//
// Module sluice::common owns it. Coordination code runs every callback on
// one of these, so callbacks never race each other and never run on a
// library's internal threads.
//
// Thread-safe. The destructor drops tasks not yet run and joins the thread;
// a task must not destroy its own executor.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace sluice {

class SerialExecutor {
 public:
  SerialExecutor();
  ~SerialExecutor();
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  void Post(std::function<void()> fn) { PostAfter(std::chrono::milliseconds(0), std::move(fn)); }
  void PostAfter(std::chrono::milliseconds delay, std::function<void()> fn);
  // Runs `fn` on the executor and waits for it (must not be called from the
  // executor's own thread).
  void RunSync(std::function<void()> fn);
  bool InExecutorThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  struct Task {
    std::chrono::steady_clock::time_point due;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Task& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Task, std::vector<Task>, std::greater<Task>> tasks_;  // guarded by mu_
  uint64_t next_seq_ = 0;  // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace sluice
