#include "store/save_queue.hpp"

#include <pthread.h>
#include <signal.h>

#include <utility>

#include "ckpt/errors.hpp"
#include "log/log.hpp"

namespace ckpt::store {

namespace {

std::string what_of(const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& error) {
    return error.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

}  // namespace

SaveQueue::SaveQueue(std::string owner, int max_in_flight, Runner run)
    : owner_(std::move(owner)), max_in_flight_(max_in_flight), run_(std::move(run)) {}

SaveQueue::~SaveQueue() { stop(); }

// The thread inherits the creating thread's signal mask: blocking the three signals
// around its creation means it never runs a moment with them deliverable.
void SaveQueue::start() {
  sigset_t blocked, previous;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &blocked, &previous);
  try {
    worker_ = std::thread([this] { work(); });
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

void SaveQueue::submit(SaveRequest request, PayloadWriter write_payload, std::string file) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] {
    return queued_.size() + (running_ ? 1 : 0) < static_cast<std::size_t>(max_in_flight_);
  });
  raise_failure_locked();
  // Started before the job is queued: a thread that cannot be created (EAGAIN) throws
  // with nothing queued, so nothing waits for a worker that does not exist.
  if (!worker_.joinable()) start();
  InFlightSave what;
  what.ticket = ++next_ticket_;
  what.kind = request.kind;
  what.epoch = request.epoch;
  what.step = request.step;
  what.file = std::move(file);
  queued_.push_back(Job{std::move(what), std::move(request), std::move(write_payload)});
  changed_.notify_all();
}

void SaveQueue::wait_idle() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return queued_.empty() && !running_; });
}

void SaveQueue::raise_failure() {
  std::lock_guard lock(mutex_);
  raise_failure_locked();
}

void SaveQueue::raise_failure_locked() {
  if (failures_.empty()) return;
  std::exception_ptr failure = std::move(failures_.front());
  failures_.pop_front();
  std::rethrow_exception(failure);
}

std::vector<InFlightSave> SaveQueue::in_flight() const {
  std::lock_guard lock(mutex_);
  std::vector<InFlightSave> saves;
  if (running_) saves.push_back(*running_);
  for (const auto& job : queued_) saves.push_back(job.what);
  return saves;
}

void SaveQueue::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || !queued_.empty(); });
    if (queued_.empty()) return;  // stopping, and nothing left to save
    Job job = std::move(queued_.front());
    queued_.pop_front();
    job.what.started = true;
    running_ = job.what;
    lock.unlock();
    std::exception_ptr failure;
    try {
      run_(job.request, job.write);
    } catch (...) {
      failure = std::current_exception();
      try {
        log::write(spdlog::level::err, "{}: the asynchronous save of {} failed: {}; the next call on the store "
                   "raises it", owner_, job.what.file, what_of(failure));
      } catch (...) {
        // A logger that throws must not end the process: the failure is still raised.
      }
    }
    // What the writer holds (a manager's snapshot) is released before the slot is: a
    // submit() that got the slot may reuse it.
    job.write = nullptr;
    lock.lock();
    running_.reset();
    if (failure) failures_.push_back(std::move(failure));
    changed_.notify_all();
  }
}

void SaveQueue::stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    changed_.notify_all();
  }
  if (worker_.joinable()) worker_.join();
  std::lock_guard lock(mutex_);
  for (const auto& failure : failures_) {
    log::write(spdlog::level::err, "{}: an asynchronous save failed and was never raised (the store closed "
               "first): {}", owner_, what_of(failure));
  }
  failures_.clear();
}

}  // namespace ckpt::store
