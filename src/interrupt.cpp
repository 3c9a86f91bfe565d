#include "ckpt/interrupt.hpp"

#include <atomic>
#include <fmt/format.h>

#include "ckpt/errors.hpp"

namespace ckpt {

namespace {

// Lock-free atomics are async-signal-safe; the handler touches nothing else.
std::atomic<int> arrived_signal{0};
std::atomic<bool> guard_active{false};
static_assert(std::atomic<int>::is_always_lock_free, "signal handler needs a lock-free flag");

extern "C" void on_interrupt(int signal_number) {
  int expected = 0;
  arrived_signal.compare_exchange_strong(expected, signal_number);
  if (signal_number == SIGINT) {
    // The next Ctrl+C gets the default action: the user can always force quit.
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    sigaction(SIGINT, &default_action, nullptr);
  }
}

void install(int signal_number, struct sigaction* previous) {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  // SA_RESTART: a read or write interrupted by the signal resumes instead of failing
  // with EINTR (ckpt retries EINTR itself; other code may not).
  action.sa_flags = SA_RESTART;
  sigaction(signal_number, &action, previous);
}

}  // namespace

InterruptGuard::InterruptGuard() : InterruptGuard(Options{}) {}

InterruptGuard::InterruptGuard(Options options) : options_(options) {
  bool expected = false;
  if (!guard_active.compare_exchange_strong(expected, true)) {
    throw InvalidArgument("InterruptGuard: another guard is already active in this process");
  }
  arrived_signal = 0;
  install(SIGINT, &previous_int_);
  if (options_.catch_sigterm) install(SIGTERM, &previous_term_);
  if (options_.catch_sigusr1) install(SIGUSR1, &previous_usr1_);
}

InterruptGuard::~InterruptGuard() {
  sigaction(SIGINT, &previous_int_, nullptr);
  if (options_.catch_sigterm) sigaction(SIGTERM, &previous_term_, nullptr);
  if (options_.catch_sigusr1) sigaction(SIGUSR1, &previous_usr1_, nullptr);
  guard_active = false;
}

bool InterruptGuard::requested() const noexcept { return arrived_signal.load() != 0; }
int InterruptGuard::signal() const noexcept { return arrived_signal.load(); }

void InterruptGuard::reset() noexcept {
  arrived_signal = 0;
  install(SIGINT, nullptr);
}

}  // namespace ckpt
