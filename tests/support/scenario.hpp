// A scenario of saves, a resume and rotations shared by the crash-style suites (power
// loss, injected I/O errors), with a model of what each acknowledged step leaves in the
// directory and what a resume and a best-model load must then return, and the check
// that runs after the reopen.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/store.hpp"

namespace ckpt::test {

inline constexpr int kScenarioMaxToKeep = 2;

// Checkpoint file name -> the bytes it must hold.
using Files = std::map<std::string, std::string>;

// What the directory must hold after some operations of the scenario.
struct ScenarioModel {
  Files files;
  // Epoch files in the order they were committed, oldest first: rotation keeps the
  // kScenarioMaxToKeep most recently committed. (In this scenario every epoch saved is
  // above the ones before, or the same epoch saved again, so these are also the highest
  // epochs: the rule before issue 10 agrees.)
  std::vector<std::string> epochs;
  // The bytes load_latest must return: the most recently committed resumable save
  // (epoch or interrupt). Here that is also the guide's answer (interrupt first).
  std::optional<std::string> latest;
  std::optional<std::string> best;  // the bytes load_best must return
};

struct Operation {
  std::string name;
  std::function<void(CheckpointStore&)> run;
  std::function<void(ScenarioModel&)> effect;
};

// REQUIRES: run in a directory prepared by prepare_scenario_dir.
std::vector<Operation> scenario();

// Puts in the (empty) directory what the scenario starts with: a damaged checkpoint file
// without a row (a partial copy), which the first open must move into quarantine/ and
// no crash or power loss may then lose.
void prepare_scenario_dir(const std::filesystem::path& dir);

// Options for the opens that only inspect a directory after a fault: the scenario's
// max_to_keep, and no real fsync, of files or of SQLite (support/power_loss.hpp), which
// on a busy disk would take most of a sweep's time; nothing such an open checks depends
// on durability.
StoreOptions scenario_check_options();

// Reopens `dir` (recovery runs) and checks the invariants; that every checkpoint file
// holds what the first `acknowledged` operations left or what the operation in flight
// would leave; that the damaged file is in quarantine/; and, in another open, that
// load_latest and load_best return what the model says (for the acknowledged operations
// or with the one in flight). Returns the problems found (empty: all good).
std::vector<std::string> check_scenario_after_crash(const std::filesystem::path& dir, int acknowledged);

}  // namespace ckpt::test
