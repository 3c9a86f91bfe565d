// Power loss at every step of a sequence of saves, resumes and rotations: what the file
// system and SQLite had not made durable is dropped (support/power_loss.hpp), the
// directory is reopened as after a reboot, and every acknowledged save must be there,
// whole, with everything before it intact. Then the same sweep with the file fsync or
// the directory fsync switched off must find losses: a suite that cannot fail proves
// nothing.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <algorithm>
#include <fmt/format.h>
#include <map>
#include <set>

#include "ckpt/errors.hpp"
#include "ckpt/store.hpp"
#include "support/power_loss.hpp"
#include "support/fault_file_system.hpp"
#include "support/scenario.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

constexpr int kPowerLost = 42;
struct Switches {
  bool skip_file_fsync = false;
  bool skip_dir_fsync = false;
};

// Runs the scenario in a child; at the `crash_at`-th step event it loses power. Returns
// how many operations were acknowledged, or, with crash_at 0, the number of step events.
int run_child(const std::filesystem::path& dir, int crash_at, Switches switches, int& steps_or_acks) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  int status = run_in_child([&] {
    ::close(pipe_fds[0]);
    auto fs = std::make_shared<PowerLossFileSystem>();
    StoreOptions options;
    options.max_to_keep = kScenarioMaxToKeep;
    options.file_system = fs;
    options.sqlite_vfs = register_power_loss_vfs();
    options.unsafe_skip_file_fsync = switches.skip_file_fsync;
    options.unsafe_skip_dir_fsync = switches.skip_dir_fsync;
    int events = 0;
    options.on_step = [&](std::string_view) {
      if (++events == crash_at) {
        fs->lose_unsynced();
        lose_unsynced_sqlite_writes();
        ::_exit(kPowerLost);
      }
    };
    CheckpointStore store(dir, options);
    int acknowledged = 0;
    for (const auto& operation : scenario()) {
      operation.run(store);
      ++acknowledged;
      if (::write(pipe_fds[1], &acknowledged, sizeof acknowledged) != sizeof acknowledged) ::_exit(5);
    }
    if (::write(pipe_fds[1], &events, sizeof events) != sizeof events) ::_exit(5);
  });
  ::close(pipe_fds[1]);
  int value = 0, last = 0, count = 0;
  while (::read(pipe_fds[0], &value, sizeof value) == sizeof value) last = value, ++count;
  ::close(pipe_fds[0]);
  steps_or_acks = crash_at == 0 ? last : (status == kPowerLost ? last : count);
  return status;
}

struct SweepResult {
  int crash_points = 0;
  int recovery_crashes = 0;
  int violations = 0;
  std::vector<std::string> examples;
};

SweepResult sweep(Switches switches) {
  SweepResult result;
  int total_steps = 0;
  {
    TestDir dir("power-count");
    REQUIRE(run_child(dir.path(), 0, switches, total_steps) == 0);
  }
  REQUIRE(total_steps > 40);
  for (int crash_at = 1; crash_at <= total_steps; ++crash_at) {
    TestDir dir("power");
    int acked = 0;
    REQUIRE(run_child(dir.path(), crash_at, switches, acked) == kPowerLost);
    ++result.crash_points;
    // Recovery itself is interrupted too: the first reopen crashes at its first
    // recovery step (when there is one), the check's reopen finishes the job.
    int recovery_status = run_in_child([&] {
      StoreOptions options;
      options.max_to_keep = kScenarioMaxToKeep;
      options.on_step = [](std::string_view step) {
        if (step.rfind("recover_", 0) == 0) ::_exit(kPowerLost);
      };
      CheckpointStore reopened(dir.path(), options);
    });
    if (recovery_status == kPowerLost) ++result.recovery_crashes;
    auto problems = check_scenario_after_crash(dir.path(), acked);
    if (!problems.empty()) {
      ++result.violations;
      if (result.examples.size() < 3) result.examples.push_back("power loss at step " + std::to_string(crash_at) + ": " + problems.front());
    }
  }
  // CKPT_REPORT=1 prints the counts docs/reliability.md quotes.
  if (std::getenv("CKPT_REPORT")) {
    std::printf("power-loss sweep (skip file fsync %d, skip dir fsync %d): %d crash points (%d also crashed in recovery), "
                "%d with violations\n",
                switches.skip_file_fsync, switches.skip_dir_fsync, result.crash_points, result.recovery_crashes,
                result.violations);
    for (const auto& example : result.examples) std::printf("  e.g. %s\n", example.c_str());
  }
  return result;
}

}  // namespace

TEST_CASE("power loss at every step loses no acknowledged save and leaves every name whole", "[store][power]") {
  SweepResult result = sweep({});
  INFO(result.crash_points << " crash points");
  for (const auto& example : result.examples) INFO(example);
  CHECK(result.violations == 0);
  CHECK(result.crash_points > 40);
}

TEST_CASE("the power-loss sweep notices when the file fsync is missing", "[store][power][mutation]") {
  SweepResult result = sweep({/*skip_file_fsync=*/true, false});
  CHECK(result.violations > 0);
}

TEST_CASE("the power-loss sweep notices when the directory fsync is missing", "[store][power][mutation]") {
  SweepResult result = sweep({false, /*skip_dir_fsync=*/true});
  CHECK(result.violations > 0);
}

TEST_CASE("an I/O error at any file operation of the scenario loses nothing acknowledged", "[store][fault]") {
  // Counts each kind of operation in a clean run, then fails the n-th one of each kind
  // with each error, in turn; the scenario stops at the first failed operation (as a
  // trainer would crash or report), and the reopened directory is checked.
  auto count_ops = [](Op op) {
    TestDir dir("fault-count");
    auto fs = std::make_shared<FaultFileSystem>();
    StoreOptions options;
    options.max_to_keep = kScenarioMaxToKeep;
    options.file_system = fs;
    CheckpointStore store(dir.path(), options);
    for (const auto& operation : scenario()) operation.run(store);
    return fs->count(op);
  };
  int faults = 0, violations = 0;
  std::vector<std::string> examples;
  for (Op op : {Op::create, Op::write, Op::sync, Op::rename, Op::remove, Op::sync_dir, Op::read}) {
    const int total = count_ops(op);
    for (int n = 1; n <= total; ++n) {
      for (int error : {ENOSPC, EIO, EACCES}) {
        TestDir dir("fault");
        auto fs = std::make_shared<FaultFileSystem>();
        StoreOptions options;
        options.max_to_keep = kScenarioMaxToKeep;
        options.file_system = fs;
        int acknowledged = 0;
        try {
          CheckpointStore store(dir.path(), options);
          fs->fail_nth(op, n, error);
          for (const auto& operation : scenario()) {
            operation.run(store);
            ++acknowledged;
          }
        } catch (const IoError& caught) {
          CHECK(caught.os_error() == error);
          CHECK(!caught.path().empty());
        }
        ++faults;
        auto problems = check_scenario_after_crash(dir.path(), acknowledged);
        if (!problems.empty()) {
          ++violations;
          if (examples.size() < 3) examples.push_back(fmt::format("op {} #{} errno {}: {}", static_cast<int>(op), n, error, problems.front()));
        }
      }
    }
  }
  for (const auto& example : examples) INFO(example);
  CHECK(violations == 0);
  CHECK(faults > 100);
  if (std::getenv("CKPT_REPORT")) std::printf("I/O-error sweep: %d faults injected, %d with violations\n", faults, violations);
}
