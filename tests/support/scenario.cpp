#include "support/scenario.hpp"

#include <algorithm>
#include <optional>
#include <set>
#include <stdexcept>

#include "support/power_loss.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"
#include "store/test_hooks.hpp"  // on_step, sqlite_vfs, fsync skips: test hooks

namespace ckpt::test {

namespace {

const char* const kDamagedFile = "checkpoint_epoch_0.pth";
const char* const kInterruptFile = "interrupt_checkpoint.pth";

std::string damaged_bytes() { return zip_payload(99).substr(0, 1000); }

void commit_epoch(ScenarioModel& m, int n, const std::string& bytes) {
  const std::string name = "checkpoint_epoch_" + std::to_string(n) + ".pth";
  m.files[name] = bytes;
  m.epochs.erase(std::remove(m.epochs.begin(), m.epochs.end(), name), m.epochs.end());
  m.epochs.push_back(name);
  while (static_cast<int>(m.epochs.size()) > kScenarioMaxToKeep) {
    m.files.erase(m.epochs.front());
    m.epochs.erase(m.epochs.begin());
  }
  // Newer progress: the interrupt checkpoint (here always one a run resumed from) goes.
  m.files.erase(kInterruptFile);
  m.latest = bytes;
}

std::optional<std::string> text_of(const std::optional<VerifiedPayload>& payload) {
  if (!payload) return std::nullopt;
  return std::string(payload->bytes.begin(), payload->bytes.end());
}

std::string describe(const std::optional<std::string>& bytes) {
  if (!bytes) return "nothing";
  for (int seed = 1; seed < 100; ++seed) {
    if (*bytes == zip_payload(seed)) return "payload " + std::to_string(seed);
  }
  return std::to_string(bytes->size()) + " unknown bytes";
}

}  // namespace

std::vector<Operation> scenario() {
  auto epoch = [](int n, int seed) {
    return Operation{"epoch " + std::to_string(n), [=](CheckpointStore& s) { save_epoch(s, n, zip_payload(seed)); },
                     [=](ScenarioModel& m) { commit_epoch(m, n, zip_payload(seed)); }};
  };
  auto best = [](int seed) {
    return Operation{"best", [=](CheckpointStore& s) { save_bytes(s, CheckpointKind::best, std::nullopt, zip_payload(seed), seed * 0.01); },
                     [=](ScenarioModel& m) { m.best = m.files["best_model.pth"] = zip_payload(seed); }};
  };
  return {
      epoch(1, 1),
      epoch(2, 2),
      best(3),
      epoch(3, 4),
      Operation{"interrupt", [](CheckpointStore& s) { save_bytes(s, CheckpointKind::interrupt, std::nullopt, zip_payload(5)); },
                [](ScenarioModel& m) { m.latest = m.files[kInterruptFile] = zip_payload(5); }},
      Operation{"resume", [](CheckpointStore& s) { if (!s.load_latest()) throw std::runtime_error("nothing to resume from"); },
                [](ScenarioModel&) {}},
      // The resumed run's next epoch deletes the consumed interrupt checkpoint and
      // rotates epoch 2 out.
      Operation{"epoch 4 after resume", [](CheckpointStore& s) { save_epoch(s, 4, zip_payload(6)); },
                [](ScenarioModel& m) { commit_epoch(m, 4, zip_payload(6)); }},
      best(7),
      epoch(4, 8),  // replaces epoch 4
      // The guide's loop: the best model of the state epoch 4 just saved, announced
      // (SaveRequest::likely_duplicate), is a hard link to epoch 4's file; then an epoch
      // of the same state links too (found after its temp file is written) and rotates
      // out epoch 3; epochs 6 and 7 rotate out epochs 4 and 5, whose file the best model
      // keeps.
      Operation{"best linked to epoch 4",
                [](CheckpointStore& s) {
                  SaveRequest request;
                  request.kind = CheckpointKind::best;
                  request.metric = 0.08;
                  request.likely_duplicate = true;
                  const std::string bytes = zip_payload(8);
                  s.save(request, [&bytes](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
                },
                [](ScenarioModel& m) { m.best = m.files["best_model.pth"] = zip_payload(8); }},
      epoch(5, 8),
      epoch(6, 9),
      epoch(7, 10),
  };
}

void prepare_scenario_dir(const std::filesystem::path& dir) { write_bytes(dir / kDamagedFile, damaged_bytes()); }

StoreOptions scenario_check_options() {
  StoreOptions options;
  options.max_to_keep = kScenarioMaxToKeep;
  options.file_system = std::make_shared<PowerLossFileSystem>();  // never loses power: no fsyncs
  store::test_hooks(options).sqlite_vfs = register_no_sync_vfs();
  return options;
}

// After a crash or power loss at some point of operation `acked` (0-based: that
// operation was in flight), every file must hold what the acknowledged operations left,
// or what the in-flight one would leave. Returns the problems found.
std::vector<std::string> check_scenario_after_crash(const std::filesystem::path& dir, int acked) {
  std::vector<std::string> problems;
  try {
    { CheckpointStore reopened(dir, scenario_check_options()); }
  } catch (const std::exception& error) {
    return {std::string("reopen failed: ") + error.what()};
  }
  for (const auto& violation : invariant_violations(dir)) problems.push_back(violation);
  auto ops = scenario();
  ScenarioModel before, after;
  for (int i = 0; i < acked; ++i) ops[i].effect(before);
  after = before;
  if (acked < static_cast<int>(ops.size())) ops[acked].effect(after);
  // The checkpoint files as a whole are the state before the operation in flight or the
  // state after it: its file, the rotation and the interrupt's deletion it commits are
  // all or nothing, and the reopen finished whatever part of it was left.
  Files actual;
  for (const auto& name : file_names(dir)) {
    if (name.size() > 4 && name.substr(name.size() - 4) == ".pth") actual[name] = read_bytes(dir / name);
  }
  auto differences = [&](const Files& expected) {
    std::vector<std::string> lines;
    for (const auto& [name, bytes] : expected) {
      auto found = actual.find(name);
      if (found == actual.end()) lines.push_back(name + " is missing");
      else if (found->second != bytes) lines.push_back(name + " holds " + describe(found->second) + ", not " + describe(bytes));
    }
    for (const auto& [name, bytes] : actual) {
      if (!expected.count(name)) lines.push_back(name + " should not be there");
    }
    std::string text;
    for (const auto& line : lines) text += (text.empty() ? "" : ", ") + line;
    return text;
  };
  if (actual != before.files && actual != after.files) {
    std::string problem = "the checkpoint files are neither what the acknowledged operations left (" +
                          differences(before.files) + ")";
    if (after.files != before.files) {
      problem += " nor what '" + ops[acked].name + "' in flight would leave (" + differences(after.files) + ")";
    }
    problems.push_back(problem);
  }
  // Quarantine never deletes: the damaged file is in quarantine/ (more than once is
  // harmless: a move whose source directory was not yet synced leaves a copy behind).
  int quarantined = 0;
  if (std::filesystem::is_directory(dir / "quarantine")) {
    for (const auto& name : file_names(dir / "quarantine")) quarantined += read_bytes(dir / "quarantine" / name) == damaged_bytes();
  }
  if (quarantined == 0) problems.push_back(std::string("the damaged ") + kDamagedFile + " is lost: not in quarantine/");
  // What a user sees: the resume point and the best model.
  try {
    CheckpointStore reopened(dir, scenario_check_options());
    auto latest = text_of(reopened.load_latest());
    if (latest != before.latest && latest != after.latest) {
      problems.push_back("load_latest returned " + describe(latest) + ", expected " + describe(before.latest) +
                         (after.latest != before.latest ? " or " + describe(after.latest) : std::string()));
    }
    auto best = text_of(reopened.load_best());
    if (best != before.best && best != after.best) {
      problems.push_back("load_best returned " + describe(best) + ", expected " + describe(before.best) +
                         (after.best != before.best ? " or " + describe(after.best) : std::string()));
    }
  } catch (const std::exception& error) {
    problems.push_back(std::string("loading after the reopen failed: ") + error.what());
  }
  return problems;
}

}  // namespace ckpt::test
