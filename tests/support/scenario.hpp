// A scenario of saves, a resume and rotations shared by the crash-style suites (power
// loss, injected I/O errors), with a model of what each acknowledged step leaves in the
// directory, and the check that runs after the reopen.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ckpt/store.hpp"

namespace ckpt::test {

inline constexpr int kScenarioMaxToKeep = 2;

// Checkpoint file name -> the bytes it must hold.
using Files = std::map<std::string, std::string>;

struct Operation {
  std::string name;
  std::function<void(CheckpointStore&)> run;
  std::function<void(Files&)> effect;  // on the model of the directory's checkpoint files
};

std::vector<Operation> scenario();

// Reopens `dir` (recovery runs) and checks the invariants, and that every checkpoint
// file holds what the first `acknowledged` operations left or what the operation in
// flight would leave. Returns the problems found (empty: all good).
std::vector<std::string> check_scenario_after_crash(const std::filesystem::path& dir, int acknowledged);

}  // namespace ckpt::test
