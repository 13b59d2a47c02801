#include "lib/common/serial_executor.h"

#include <future>

namespace sluice {

SerialExecutor::SerialExecutor() { thread_ = std::thread([this] { Run(); }); }

SerialExecutor::~SerialExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SerialExecutor::PostAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    tasks_.push(Task{std::chrono::steady_clock::now() + delay, next_seq_++, std::move(fn)});
  }
  cv_.notify_all();
}

void SerialExecutor::RunSync(std::function<void()> fn) {
  std::promise<void> done;
  Post([&] {
    fn();
    done.set_value();
  });
  done.get_future().wait();
}

void SerialExecutor::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (tasks_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto due = tasks_.top().due;
    if (std::chrono::steady_clock::now() < due) {
      cv_.wait_until(lock, due);
      continue;
    }
    std::function<void()> fn = std::move(const_cast<Task&>(tasks_.top()).fn);
    tasks_.pop();
    lock.unlock();
    fn();
    lock.lock();
  }
}

}  // namespace sluice
