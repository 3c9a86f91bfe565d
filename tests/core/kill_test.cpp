// Real kill -9, at random moments, of a process saving in a loop. Every save the child
// acknowledged (after save() returned) must be there after the parent reopens, and the
// invariants must hold. CKPT_KILL_ROUNDS sets the number of kills (default 60).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <random>

#include "ckpt/store.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

int kill_rounds() {
  const char* configured = std::getenv("CKPT_KILL_ROUNDS");
  return configured ? std::atoi(configured) : 60;
}

// Saves epochs from `first` on, with a best model every third epoch, acknowledging
// each returned save on `ack_fd`. Never returns: it is killed.
[[noreturn]] void save_forever(const std::filesystem::path& dir, std::int64_t first, int ack_fd) {
  CheckpointStore store(dir, StoreOptions{3});
  for (std::int64_t epoch = first;; ++epoch) {
    save_epoch(store, epoch, zip_payload(static_cast<int>(epoch), 2000 + static_cast<std::size_t>(epoch % 7) * 3000));
    if (epoch % 3 == 0) save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(-static_cast<int>(epoch)), 1.0 * epoch);
    if (::write(ack_fd, &epoch, sizeof epoch) != sizeof epoch) ::_exit(4);
  }
}

}  // namespace

TEST_CASE("kill -9 at random moments never loses an acknowledged save", "[store][crash][kill]") {
  TestDir dir("kill");
  std::mt19937 random(20261129);
  std::int64_t acknowledged = 0;
  int kills = 0;
  for (int round = 0; round < kill_rounds(); ++round) {
    int ack[2];
    REQUIRE(::pipe(ack) == 0);
    std::fflush(nullptr);
    pid_t child = ::fork();
    if (child == 0) {
      ::close(ack[0]);
      save_forever(dir.path(), acknowledged + 1, ack[1]);
    }
    ::close(ack[1]);
    ::usleep(std::uniform_int_distribution<int>(500, 25000)(random));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    ++kills;
    std::int64_t epoch;
    while (::read(ack[0], &epoch, sizeof epoch) == sizeof epoch) acknowledged = epoch;
    ::close(ack[0]);

    CheckpointStore store(dir.path(), StoreOptions{3});
    if (acknowledged > 0) {
      auto latest = store.load_latest();
      REQUIRE(latest);
      INFO("round " << round << ", acknowledged epoch " << acknowledged);
      CHECK(*latest->record.epoch >= acknowledged);
      CHECK(std::string(latest->bytes.begin(), latest->bytes.end()) ==
            zip_payload(static_cast<int>(*latest->record.epoch), 2000 + static_cast<std::size_t>(*latest->record.epoch % 7) * 3000));
      // The next round continues after whatever made it to disk.
      acknowledged = *latest->record.epoch;
    }
  }
  CHECK(invariant_violations(dir.path()).empty());
  CHECK(kills == kill_rounds());
  if (std::getenv("CKPT_REPORT")) {
    std::printf("kill -9 torture: %d kills, last acknowledged epoch %lld, 0 lost\n", kills, static_cast<long long>(acknowledged));
  }
  CHECK(acknowledged > 0);
}
