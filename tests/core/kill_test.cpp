// Real kill -9, at random moments, of a process saving in a loop. Every save the child
// acknowledged (after save() returned) must be there after the parent reopens, the newest
// resumable one and the best model alike, and the invariants must hold. CKPT_KILL_ROUNDS sets the number of kills (default 60;
// a third of them again with the index in rollback-journal mode, where a kill inside an
// SQLite commit leaves a hot journal for the next open to roll back).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <random>

#include "ckpt/store.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

int kill_rounds() { return static_cast<int>(env_number("CKPT_KILL_ROUNDS", 60)); }

// Step k of the run saves one resumable checkpoint, identified by its payload (seed k):
// mostly epoch checkpoints, with an interrupt checkpoint every 5th step and, every 7th
// step, a restart from an earlier state (an epoch below those already there), so that
// the newest save is neither the highest epoch nor always an epoch. A best model every
// third step. Resume must load the most recently committed of them.
struct Step {
  std::optional<std::int64_t> epoch;  // nullopt: an interrupt checkpoint
  bool best;
};
Step step(std::int64_t k) {
  if (k % 5 == 0) return {std::nullopt, false};
  return {k % 7 == 0 ? k / 2 : k, k % 3 == 0};
}
std::string step_payload(std::int64_t k) {
  return zip_payload(static_cast<int>(k), 2000 + static_cast<std::size_t>(k % 7) * 3000);
}
// The best model of step k: on even steps the state its resumable checkpoint just saved
// (the guide's loop), which the store links to that file, half of them announced
// (SaveRequest::likely_duplicate); on odd steps bytes of its own, written.
std::string best_payload(std::int64_t k) {
  return k % 2 == 0 ? step_payload(k) : zip_payload(-static_cast<int>(k));
}
void save_best(CheckpointStore& store, std::int64_t k) {
  SaveRequest request;
  request.kind = CheckpointKind::best;
  request.metric = 1.0 * k;
  request.likely_duplicate = k % 4 == 0;
  const std::string bytes = best_payload(k);
  store.save(request, [&bytes](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

// Runs steps from `first` on, acknowledging each step whose saves returned on `ack_fd`.
// Never returns: it is killed.
[[noreturn]] void save_forever(const std::filesystem::path& dir, const StoreOptions& options, std::int64_t first,
                               int ack_fd) {
  CheckpointStore store(dir, options);
  for (std::int64_t k = first;; ++k) {
    Step s = step(k);
    if (s.epoch) {
      save_epoch(store, *s.epoch, step_payload(k));
    } else {
      save_bytes(store, CheckpointKind::interrupt, std::nullopt, step_payload(k));
    }
    if (s.best) save_best(store, k);
    if (::write(ack_fd, &k, sizeof k) != sizeof k) ::_exit(4);
  }
}

StoreOptions keeping_3(IndexJournal journal) {
  StoreOptions options{3};
  options.index_journal = journal;
  return options;
}

void kill_at_random_moments(const StoreOptions& options, int rounds) {
  TestDir dir("kill");
  std::mt19937 random(20261129);
  std::int64_t acknowledged = 0;
  std::optional<std::int64_t> best_step;  // the step whose best model the last round found
  int kills = 0;
  for (int round = 0; round < rounds; ++round) {
    int ack[2];
    REQUIRE(::pipe(ack) == 0);
    std::fflush(nullptr);
    pid_t child = ::fork();
    if (child == 0) {
      ::close(ack[0]);
      save_forever(dir.path(), options, acknowledged + 1, ack[1]);
    }
    ::close(ack[1]);
    // Odd rounds kill at any moment from the start (the open's recovery included); even
    // rounds once the child has acknowledged a step, so that a loaded machine, where no
    // save may finish within the window, still makes progress.
    const std::int64_t first_step = acknowledged + 1;
    std::int64_t first_ack = 0;
    if (round % 2 == 0 && ::read(ack[0], &first_ack, sizeof first_ack) == sizeof first_ack) acknowledged = first_ack;
    ::usleep(std::uniform_int_distribution<int>(500, 25000)(random));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    ++kills;
    std::int64_t epoch;
    while (::read(ack[0], &epoch, sizeof epoch) == sizeof epoch) acknowledged = epoch;
    ::close(ack[0]);

    CheckpointStore store(dir.path(), options);
    if (acknowledged > 0) {
      auto latest = store.load_latest();
      REQUIRE(latest);
      INFO("round " << round << ", acknowledged step " << acknowledged);
      // The newest acknowledged resumable save, or the one in flight after it.
      std::string bytes(latest->bytes.begin(), latest->bytes.end());
      const bool acked = bytes == step_payload(acknowledged), in_flight = bytes == step_payload(acknowledged + 1);
      CHECK((acked || in_flight));

      // The best model: that of the newest acknowledged step with one, or that of the step
      // in flight (its best is saved after its resumable checkpoint).
      std::optional<std::int64_t> acked_best = best_step;
      for (std::int64_t k = first_step; k <= acknowledged; ++k) {
        if (step(k).best) acked_best = k;
      }
      const bool best_in_flight_possible = in_flight && step(acknowledged + 1).best;
      auto best = store.load_best();
      if (best) {
        std::string best_bytes(best->bytes.begin(), best->bytes.end());
        if (acked_best && best_bytes == best_payload(*acked_best)) {
          best_step = acked_best;
        } else if (best_in_flight_possible && best_bytes == best_payload(acknowledged + 1)) {
          best_step = acknowledged + 1;
        } else {
          FAIL_CHECK("the best model is of no acknowledged step (newest acknowledged best: step "
                     << (acked_best ? std::to_string(*acked_best) : "none") << ")");
        }
      } else {
        CHECK_FALSE(acked_best);
      }
      // The next round continues after whatever made it to disk.
      if (in_flight) ++acknowledged;
    }
  }
  CHECK(invariant_violations(dir.path()).empty());
  CHECK(kills == rounds);
  if (std::getenv("CKPT_REPORT")) {
    std::printf("kill -9 torture (%s): %d kills, last acknowledged step %lld, resume always loaded the newest acknowledged save and the best model\n",
                options.index_journal == IndexJournal::rollback ? "rollback journal" : "WAL", kills,
                static_cast<long long>(acknowledged));
  }
  CHECK(acknowledged > 0);
}

}  // namespace

TEST_CASE("kill -9 at random moments never loses an acknowledged save", "[store][crash][kill]") {
  kill_at_random_moments(keeping_3(IndexJournal::automatic), kill_rounds());
}

TEST_CASE("kill -9 at random moments never loses an acknowledged save with a rollback-journal index",
          "[store][crash][kill][journal]") {
  kill_at_random_moments(keeping_3(IndexJournal::rollback), std::max(2, kill_rounds() / 3));
}
