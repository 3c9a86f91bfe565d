// InterruptGuard: the C++ form of the guide's `except KeyboardInterrupt` pattern.
//
// While a guard lives, SIGINT and SIGTERM (and SIGUSR1 if asked, the signal many batch
// schedulers send before a job's time runs out) only set a flag. The training loop polls
// requested() at a step boundary and calls save_interrupt_checkpoint() there: no file is
// ever written inside a signal handler, where almost nothing is safe to call. A second
// SIGINT gets the default action (the process dies), so a stuck save can still be
// stopped by pressing Ctrl+C twice. The destructor restores the previous handlers.
//
//   ckpt::InterruptGuard interrupt;
//   for (...) {
//     train_step();
//     if (interrupt.requested()) {
//       manager.save_interrupt_checkpoint(state);
//       return 130;
//     }
//   }
//
// Only one guard may be active at a time (signal dispositions are process-wide); a second
// throws InvalidArgument. The guard itself is not thread-safe; requested() may be called
// from any thread.
#pragma once

#include <csignal>

namespace ckpt {

class InterruptGuard {
 public:
  struct Options {
    bool catch_sigterm = true;
    bool catch_sigusr1 = false;
  };

  InterruptGuard();
  explicit InterruptGuard(Options options);
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  // Whether a handled signal has arrived since construction (or reset()).
  bool requested() const noexcept;
  // The signal that arrived first (SIGINT, SIGTERM, SIGUSR1), or 0.
  int signal() const noexcept;
  // Forgets an arrived signal and re-arms SIGINT (after a save, to keep training).
  void reset() noexcept;

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
  struct sigaction previous_usr1_ {};
  Options options_;
};

}  // namespace ckpt
