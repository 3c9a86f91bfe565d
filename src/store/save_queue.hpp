// SaveQueue: the background worker of CheckpointStore::save_async.
//
// One thread per store, started by the first submit(). It runs each submitted save, in
// submission order, through the function the store gives it (which takes the store's
// mutex and runs the ordinary save protocol), and records each failure (the exception
// itself, so its type and message reach the caller) to be raised later by raise_failure(),
// oldest first, each exactly once. At most `max_in_flight` saves are submitted and not
// finished: submit() blocks (back-pressure) until one finishes.
//
// The worker thread starts with SIGINT, SIGTERM and SIGUSR1 blocked (the mask is set
// around its creation, so there is no window), so those signals land on the training
// thread, where InterruptGuard sees them.
//
// Thread safety: every member may be called from any thread; the queue's own mutex guards
// only the queue (never held while a save runs), so in_flight() answers at once even
// while a save is being written. The store calls it from its one user thread.
//
// Internal: not installed.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ckpt/store.hpp"

namespace ckpt::store {

class SaveQueue {
 public:
  // Runs one save; whatever it throws is the save's failure.
  using Runner = std::function<void(const SaveRequest&, const PayloadWriter&)>;

  // `owner` names the directory in log lines. REQUIRES: max_in_flight >= 1.
  SaveQueue(std::string owner, int max_in_flight, Runner run);
  // Waits for every submitted save (stop()).
  ~SaveQueue();
  SaveQueue(const SaveQueue&) = delete;
  SaveQueue& operator=(const SaveQueue&) = delete;

  // Blocks until fewer than max_in_flight saves are in flight, then raises the oldest
  // failure not raised yet (the save is then not queued), else queues the save under
  // `file` (the name it will have) and returns.
  void submit(SaveRequest request, PayloadWriter write_payload, std::string file);
  // Blocks until no save is queued or running. Raises nothing.
  void wait_idle();
  // Rethrows the oldest failure not raised yet, and forgets it; returns if there is none.
  void raise_failure();
  // What is queued or running now, oldest first. Never waits for a save.
  std::vector<InFlightSave> in_flight() const;
  // Waits for every submitted save and ends the thread. Failures never raised are logged
  // (each was also logged when it happened). Idempotent; no submit() may follow.
  void stop() noexcept;

 private:
  struct Job {
    InFlightSave what;
    SaveRequest request;
    PayloadWriter write;
  };
  void work();
  void start();
  // raise_failure() with mutex_ held.
  void raise_failure_locked();

  const std::string owner_;
  const int max_in_flight_;
  const Runner run_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;  // a job was queued or finished, or stop() began
  std::deque<Job> queued_;
  std::optional<InFlightSave> running_;
  std::deque<std::exception_ptr> failures_;
  std::uint64_t next_ticket_ = 0;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace ckpt::store
