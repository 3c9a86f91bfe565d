#include "support/scenario.hpp"

#include <algorithm>
#include <optional>
#include <set>
#include <stdexcept>

#include "support/store_support.hpp"
#include "support/test_dir.hpp"

namespace ckpt::test {

std::vector<Operation> scenario() {
  auto epoch = [](int n, int seed) {
    return Operation{"epoch " + std::to_string(n),
                     [=](CheckpointStore& s) { save_epoch(s, n, zip_payload(seed)); },
                     [=](Files& f) {
                       f["checkpoint_epoch_" + std::to_string(n) + ".pth"] = zip_payload(seed);
                       // rotation: keep the kScenarioMaxToKeep highest epochs
                       std::vector<int> epochs;
                       for (const auto& [name, bytes] : f) {
                         if (name.rfind("checkpoint_epoch_", 0) == 0) epochs.push_back(std::stoi(name.substr(17)));
                       }
                       std::sort(epochs.rbegin(), epochs.rend());
                       for (std::size_t i = kScenarioMaxToKeep; i < epochs.size(); ++i) {
                         f.erase("checkpoint_epoch_" + std::to_string(epochs[i]) + ".pth");
                       }
                     }};
  };
  auto best = [](int seed) {
    return Operation{"best", [=](CheckpointStore& s) { save_bytes(s, CheckpointKind::best, std::nullopt, zip_payload(seed), seed * 0.01); },
                     [=](Files& f) { f["best_model.pth"] = zip_payload(seed); }};
  };
  return {
      epoch(1, 1),
      epoch(2, 2),
      best(3),
      epoch(3, 4),
      Operation{"interrupt", [](CheckpointStore& s) { save_bytes(s, CheckpointKind::interrupt, std::nullopt, zip_payload(5)); },
                [](Files& f) { f["interrupt_checkpoint.pth"] = zip_payload(5); }},
      Operation{"resume", [](CheckpointStore& s) { if (!s.load_latest()) throw std::runtime_error("nothing to resume from"); }, [](Files&) {}},
      // The resumed run's next epoch deletes the consumed interrupt checkpoint.
      Operation{"epoch 4 after resume", [](CheckpointStore& s) { save_epoch(s, 4, zip_payload(6)); },
                [](Files& f) {
                  f.erase("interrupt_checkpoint.pth");
                  f["checkpoint_epoch_4.pth"] = zip_payload(6);
                  f.erase("checkpoint_epoch_2.pth");
                }},
      best(7),
      epoch(4, 8),  // replaces epoch 4
  };
}

// After power loss at some point of operation `acked` (0-based: that operation was in
// flight), every file must hold what the acknowledged operations left, or what the
// in-flight one would leave. Returns the problems found.
std::vector<std::string> check_scenario_after_crash(const std::filesystem::path& dir, int acked) {
  std::vector<std::string> problems;
  try {
    { CheckpointStore reopened(dir, StoreOptions{kScenarioMaxToKeep}); }
  } catch (const std::exception& error) {
    return {std::string("reopen failed: ") + error.what()};
  }
  for (const auto& violation : invariant_violations(dir)) problems.push_back(violation);
  auto ops = scenario();
  Files before, after;
  for (int i = 0; i < acked; ++i) ops[i].effect(before);
  after = before;
  if (acked < static_cast<int>(ops.size())) ops[acked].effect(after);
  std::set<std::string> names;
  for (const auto& [name, bytes] : before) names.insert(name);
  for (const auto& [name, bytes] : after) names.insert(name);
  for (const auto& name : file_names(dir)) {
    if (name.size() > 4 && name.substr(name.size() - 4) == ".pth") names.insert(name);
  }
  for (const auto& name : names) {
    std::optional<std::string> actual;
    if (std::filesystem::exists(dir / name)) actual = read_bytes(dir / name);
    auto expected = [&](const Files& f) -> std::optional<std::string> {
      auto found = f.find(name);
      return found == f.end() ? std::nullopt : std::optional<std::string>(found->second);
    };
    if (actual != expected(before) && actual != expected(after)) {
      problems.push_back(name + (actual ? " holds unexpected bytes" : " is missing"));
    }
  }
  return problems;
}

}  // namespace ckpt::test
