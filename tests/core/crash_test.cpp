// A process crash at every step of every save protocol: the child stops dead (_exit,
// as kill -9 would, with no destructors and no cleanup) at the chosen step; the parent
// reopens the directory and checks the invariants and that each name holds the old or
// the new checkpoint. Steps after the rename must roll forward: the new file is whole.
#include <catch2/catch.hpp>

#include <unistd.h>

#include "ckpt/store.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"
#include "store/test_hooks.hpp"  // on_step, sqlite_vfs, fsync skips: test hooks

using namespace ckpt;
using namespace ckpt::test;

namespace {

constexpr int kCrashed = 42;
const std::vector<std::string> kSaveSteps = {"temp_written", "temp_synced", "pending_committed", "renamed",
                                             "dir_synced", "committed", "obsolete_deleted"};
// A save whose bytes a live checkpoint holds: written to its temp file, compared, then
// linked (the temp file removed unsynced); or, announced (likely_duplicate), linked at once.
const std::vector<std::string> kLinkedSaveSteps = {"temp_written", "temp_linked", "pending_committed", "renamed",
                                                   "dir_synced", "committed", "obsolete_deleted"};
const std::vector<std::string> kAnnouncedLinkSteps = {"temp_linked", "pending_committed", "renamed", "dir_synced",
                                                      "committed", "obsolete_deleted"};

CheckpointRecord save_announced(CheckpointStore& store, CheckpointKind kind, std::optional<std::int64_t> epoch,
                                const std::string& bytes) {
  SaveRequest request;
  request.kind = kind;
  request.epoch = epoch;
  request.likely_duplicate = true;
  return store.save(request, [&bytes](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

bool step_is_after_rename(const std::string& step) {
  return step == "renamed" || step == "dir_synced" || step == "committed" || step == "obsolete_deleted";
}

StoreOptions crashing_at(const std::string& target, int max_to_keep) {
  StoreOptions options;
  options.max_to_keep = max_to_keep;
  store::test_hooks(options).on_step = [target](std::string_view step) {
    if (step == target) ::_exit(kCrashed);
  };
  return options;
}

std::string live_hash(const std::filesystem::path& dir, const std::string& file) {
  for (const auto& row : index_rows(dir)) {
    if (row.file == file && (row.status == "committed" || row.status == "consumed")) return row.hash;
  }
  return {};
}

std::string hash_of(const std::string& bytes, const std::filesystem::path& scratch) {
  write_bytes(scratch, bytes);
  return xxh3_of(scratch);
}

struct Scenario {
  const char* name;
  int max_to_keep;
  std::function<void(CheckpointStore&)> setup;
  std::function<void(CheckpointStore&)> operation;
  // The file the operation writes and its old and new payloads ("" = no old file).
  std::string file;
  std::string old_bytes;
  std::string new_bytes;
  // Files the operation must leave untouched.
  std::vector<std::pair<std::string, std::string>> untouched;
  // The steps the operation's save goes through.
  std::vector<std::string> steps = kSaveSteps;
};

std::vector<Scenario> scenarios() {
  std::vector<Scenario> list;
  list.push_back({"epoch save with rotation", 3,
                  [](CheckpointStore& s) { for (int e = 1; e <= 3; ++e) save_epoch(s, e, zip_payload(e)); },
                  [](CheckpointStore& s) { save_epoch(s, 4, zip_payload(4)); },
                  "checkpoint_epoch_4.pth", "", zip_payload(4),
                  {{"checkpoint_epoch_2.pth", zip_payload(2)}, {"checkpoint_epoch_3.pth", zip_payload(3)}}});
  list.push_back({"epoch save replacing an existing epoch", 3,
                  [](CheckpointStore& s) { for (int e = 1; e <= 3; ++e) save_epoch(s, e, zip_payload(e)); },
                  [](CheckpointStore& s) { save_epoch(s, 3, zip_payload(33)); },
                  "checkpoint_epoch_3.pth", zip_payload(3), zip_payload(33),
                  {{"checkpoint_epoch_1.pth", zip_payload(1)}, {"checkpoint_epoch_2.pth", zip_payload(2)}}});
  list.push_back({"best save replacing the best", 3,
                  [](CheckpointStore& s) {
                    save_epoch(s, 1, zip_payload(1));
                    save_bytes(s, CheckpointKind::best, std::nullopt, zip_payload(50), 0.5);
                  },
                  [](CheckpointStore& s) { save_bytes(s, CheckpointKind::best, std::nullopt, zip_payload(60), 0.6); },
                  "best_model.pth", zip_payload(50), zip_payload(60), {{"checkpoint_epoch_1.pth", zip_payload(1)}}});
  list.push_back({"interrupt save", 3, [](CheckpointStore& s) { save_epoch(s, 1, zip_payload(1)); },
                  [](CheckpointStore& s) { save_bytes(s, CheckpointKind::interrupt, std::nullopt, zip_payload(70)); },
                  "interrupt_checkpoint.pth", "", zip_payload(70), {{"checkpoint_epoch_1.pth", zip_payload(1)}}});
  list.push_back({"epoch save after resuming from an interrupt", 3,
                  [](CheckpointStore& s) {
                    save_epoch(s, 1, zip_payload(1));
                    save_bytes(s, CheckpointKind::interrupt, std::nullopt, zip_payload(70));
                    s.load_latest();
                  },
                  [](CheckpointStore& s) { save_epoch(s, 2, zip_payload(2)); },
                  "checkpoint_epoch_2.pth", "", zip_payload(2), {{"checkpoint_epoch_1.pth", zip_payload(1)}}});
  // The link path: the guide's loop (best model of the state the epoch checkpoint just
  // saved), an epoch whose state the best model holds, the interrupt checkpoint's bytes.
  list.push_back({"best save linked to the epoch checkpoint", 3,
                  [](CheckpointStore& s) {
                    save_epoch(s, 1, zip_payload(1));
                    save_bytes(s, CheckpointKind::best, std::nullopt, zip_payload(50), 0.5);
                    save_epoch(s, 2, zip_payload(2));
                  },
                  [](CheckpointStore& s) { save_bytes(s, CheckpointKind::best, std::nullopt, zip_payload(2), 0.6); },
                  "best_model.pth", zip_payload(50), zip_payload(2),
                  {{"checkpoint_epoch_1.pth", zip_payload(1)}, {"checkpoint_epoch_2.pth", zip_payload(2)}},
                  kLinkedSaveSteps});
  list.push_back({"announced best save linked to the epoch checkpoint", 3,
                  [](CheckpointStore& s) {
                    save_bytes(s, CheckpointKind::best, std::nullopt, zip_payload(50), 0.5);
                    save_epoch(s, 2, zip_payload(2));
                  },
                  [](CheckpointStore& s) { save_announced(s, CheckpointKind::best, std::nullopt, zip_payload(2)); },
                  "best_model.pth", zip_payload(50), zip_payload(2), {{"checkpoint_epoch_2.pth", zip_payload(2)}},
                  kAnnouncedLinkSteps});
  list.push_back({"epoch save linked to the best model, rotating out the epoch it was linked from", 1,
                  [](CheckpointStore& s) {
                    save_epoch(s, 1, zip_payload(1));
                    save_bytes(s, CheckpointKind::best, std::nullopt, zip_payload(1), 0.5);
                  },
                  [](CheckpointStore& s) { save_announced(s, CheckpointKind::epoch, 2, zip_payload(1)); },
                  "checkpoint_epoch_2.pth", "", zip_payload(1), {{"best_model.pth", zip_payload(1)}},
                  kAnnouncedLinkSteps});
  list.push_back({"epoch save after resuming, linked to the consumed interrupt checkpoint", 3,
                  [](CheckpointStore& s) {
                    save_epoch(s, 1, zip_payload(1));
                    save_bytes(s, CheckpointKind::interrupt, std::nullopt, zip_payload(70));
                    s.load_latest();
                  },
                  [](CheckpointStore& s) { save_epoch(s, 2, zip_payload(70)); },
                  "checkpoint_epoch_2.pth", "", zip_payload(70), {{"checkpoint_epoch_1.pth", zip_payload(1)}},
                  kLinkedSaveSteps});
  return list;
}

}  // namespace

TEST_CASE("a crash at any step of any save leaves the old or the new checkpoint, and reopening repairs the rest",
          "[store][crash]") {
  for (const auto& scenario : scenarios()) {
    for (const std::string& step : scenario.steps) {
      DYNAMIC_SECTION(scenario.name << " / crash at " << step) {
        TestDir dir("crash");
        {
          CheckpointStore store(dir.path(), StoreOptions{scenario.max_to_keep});
          scenario.setup(store);
        }
        int status = run_in_child([&] {
          CheckpointStore store(dir.path(), crashing_at(step, scenario.max_to_keep));
          scenario.operation(store);
        });
        REQUIRE(status == kCrashed);

        {
          CheckpointStore reopened(dir.path(), StoreOptions{scenario.max_to_keep});
          // What a resume sees right after the crash is consistent too.
          auto latest = reopened.load_latest();
          REQUIRE(latest);
          std::string new_hash = hash_of(scenario.new_bytes, dir / "scratch.bin");
          std::string old_hash = scenario.old_bytes.empty() ? "" : hash_of(scenario.old_bytes, dir / "scratch.bin");
          std::filesystem::remove(dir / "scratch.bin");
          std::string hash = live_hash(dir.path(), scenario.file);
          if (step_is_after_rename(step)) {
            CHECK(hash == new_hash);
          } else {
            CHECK(hash == old_hash);
          }
          for (const auto& [file, bytes] : scenario.untouched) {
            INFO(file);
            CHECK(read_bytes(dir / file) == bytes);
          }
          if (std::string(scenario.name).rfind("epoch save after resuming", 0) == 0) {
            // Until the new epoch is committed, the interrupt is still the resume point.
            CHECK((latest->record.kind == CheckpointKind::interrupt) == !step_is_after_rename(step));
          }
        }
        CHECK(invariant_violations(dir.path()).empty());
      }
    }
  }
}

TEST_CASE("a crash during recovery is recovered by the next open", "[store][crash]") {
  for (const char* recovery_step : {"recover_pending"}) {
    TestDir dir("crash-recovery");
    {
      CheckpointStore store(dir.path(), StoreOptions{2});
      save_epochs(store, 1, 2);
    }
    // A save that stops between rename and commit leaves a pending row to resolve.
    REQUIRE(run_in_child([&] {
              CheckpointStore store(dir.path(), crashing_at("renamed", 2));
              save_epoch(store, 3, zip_payload(3));
            }) == kCrashed);
    REQUIRE(run_in_child([&] { CheckpointStore store(dir.path(), crashing_at(recovery_step, 2)); }) == kCrashed);
    { CheckpointStore store(dir.path(), StoreOptions{2}); }
    CHECK(invariant_violations(dir.path()).empty());
    CheckpointStore store(dir.path(), StoreOptions{2});
    CHECK(store.latest()->epoch == 3);
    CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_1.pth"));
  }
}
