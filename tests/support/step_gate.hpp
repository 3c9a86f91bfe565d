// StepGate: holds the thread that reaches a chosen step of the save protocol (the store's
// on_step test hook, store/test_hooks.hpp) until the test lets it go, so that a test can
// look at a store while an asynchronous save is held in flight. Records every step seen.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ckpt::test {

class StepGate {
 public:
  // Holds the n-th occurrence of `step` from now on.
  void arm(std::string step, int nth = 1) {
    std::lock_guard lock(mutex_);
    step_ = std::move(step);
    nth_ = nth;
    seen_ = 0;
    reached_ = open_ = false;
  }
  // The hook: called by the thread that runs the save, at each step.
  void on_step(std::string_view step) {
    std::unique_lock lock(mutex_);
    steps_.emplace_back(step);
    ++counts_[std::string(step)];
    if (step_.empty() || step != step_ || ++seen_ != nth_) return;
    reached_ = true;
    changed_.notify_all();
    changed_.wait(lock, [&] { return open_; });
  }
  // Blocks until the armed step is reached.
  void wait_reached() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return reached_; });
  }
  // Lets the held thread go, and holds nothing more until armed again.
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    step_.clear();
    changed_.notify_all();
  }
  int count(const std::string& step) {
    std::lock_guard lock(mutex_);
    return counts_[step];
  }
  std::vector<std::string> steps() {
    std::lock_guard lock(mutex_);
    return steps_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string step_;
  int nth_ = 1, seen_ = 0;
  bool reached_ = false, open_ = false;
  std::vector<std::string> steps_;
  std::map<std::string, int> counts_;
};

// Opens the gate from another thread after a while, so that the test thread can be seen
// blocking on a call until the save it waits for is let go.
inline std::thread open_later(const std::shared_ptr<StepGate>& gate) {
  return std::thread([gate] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gate->open();
  });
}

}  // namespace ckpt::test
