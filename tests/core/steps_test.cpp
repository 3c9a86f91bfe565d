// Step checkpoints (checkpoint_step_<N>.pth, the index's `step` column): saved, resumed,
// rotated and adopted like epoch checkpoints, by commit order (docs/schema.md, "Steps").
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <fstream>
#include <iterator>
#include <regex>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"
#include "store/test_hooks.hpp"  // on_step: test hooks

using namespace ckpt;
using namespace ckpt::test;

namespace {

CheckpointRecord save_request(CheckpointStore& store, SaveRequest request, const std::string& bytes) {
  request.size_hint = bytes.size();
  return store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

// A step checkpoint (kind epoch, `step` set) of an epoch.
CheckpointRecord save_step(CheckpointStore& store, std::int64_t step, std::int64_t epoch,
                           const std::string& bytes, std::vector<std::pair<std::string, double>> metrics = {}) {
  SaveRequest request;
  request.step = step;
  request.epoch = epoch;
  request.metrics = std::move(metrics);
  return save_request(store, std::move(request), bytes);
}

std::vector<std::string> live_files(CheckpointStore& store) {
  std::vector<std::string> files;
  for (const auto& row : store.live_checkpoints()) files.push_back(row.file);
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST_CASE("a step checkpoint is saved as checkpoint_step_N.pth with its step and epoch recorded", "[store][steps]") {
  TestDir dir("steps");
  {
    CheckpointStore store(dir.path());
    auto of_epoch = save_step(store, 1500, 3, zip_payload(1));
    CHECK(of_epoch.file == "checkpoint_step_1500.pth");
    CHECK(of_epoch.kind == CheckpointKind::epoch);
    CHECK(of_epoch.step == 1500);
    CHECK(of_epoch.epoch == 3);
    CHECK(of_epoch.state_epoch == 3);
    auto same_epoch = save_step(store, 1600, 3, zip_payload(2));  // one epoch, several files
    CHECK(same_epoch.file == "checkpoint_step_1600.pth");
    CHECK(read_bytes(dir / "checkpoint_step_1600.pth") == zip_payload(2));
    CHECK(read_bytes(dir / "checkpoint_step_1500.pth") == zip_payload(1));
    // An epoch checkpoint keeps the guide's name and has no step.
    auto epoch = save_epoch(store, 4, zip_payload(3));
    CHECK(epoch.file == "checkpoint_epoch_4.pth");
    CHECK_FALSE(epoch.step);
  }
  // As read back by a reopened writer and by a reader.
  CheckpointStore store(dir.path());
  std::map<std::string, std::optional<std::int64_t>> steps;
  for (const auto& row : store.live_checkpoints()) steps[row.file] = row.step;
  CHECK(steps == std::map<std::string, std::optional<std::int64_t>>{
                     {"checkpoint_step_1500.pth", 1500}, {"checkpoint_step_1600.pth", 1600}, {"checkpoint_epoch_4.pth", std::nullopt}});
  for (const auto& row : CheckpointReader(dir.path()).checkpoints()) CHECK(steps.at(row.file) == row.step);
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("saving a step again replaces its file, as an epoch saved again does", "[store][steps]") {
  TestDir dir("steps");
  CheckpointStore store(dir.path());
  auto first = save_step(store, 200, 1, zip_payload(1));
  auto second = save_step(store, 200, 1, zip_payload(2));
  CHECK(live_files(store) == std::vector<std::string>{"checkpoint_step_200.pth"});
  CHECK(payload_text(*store.load_latest()) == zip_payload(2));
  std::string first_status;
  for (const auto& row : index_rows(dir.path())) {
    if (row.id == first.id) first_status = row.status;
  }
  CHECK(first_status == "replaced");
  CHECK(second.step == 200);
}

TEST_CASE("the best model and an interrupt checkpoint may carry a step: recorded, their names unchanged",
          "[store][steps]") {
  TestDir dir("steps");
  CheckpointStore store(dir.path());
  SaveRequest best;
  best.kind = CheckpointKind::best;
  best.step = 900;
  best.state_epoch = 2;
  best.metric = 0.9;
  auto best_row = save_request(store, best, zip_payload(1));
  CHECK(best_row.file == "best_model.pth");
  CHECK(best_row.step == 900);
  SaveRequest interrupt;
  interrupt.kind = CheckpointKind::interrupt;
  interrupt.step = 950;
  auto interrupt_row = save_request(store, interrupt, zip_payload(2));
  CHECK(interrupt_row.file == "interrupt_checkpoint.pth");
  CHECK(store.latest()->step == 950);
  CHECK(store.best()->step == 900);
}

TEST_CASE("a save refuses a step checkpoint without its epoch, a negative step, and writes nothing", "[store][steps]") {
  TestDir dir("steps");
  CheckpointStore store(dir.path());
  SaveRequest no_epoch;  // kind epoch
  no_epoch.step = 5;
  CHECK_THROWS_AS(save_request(store, no_epoch, zip_payload(1)), InvalidArgument);
  CHECK_THROWS_WITH(save_request(store, no_epoch, zip_payload(1)),
                    Catch::Contains(dir.path().string()) && Catch::Contains("needs an epoch number (step 5 given"));
  CHECK_THROWS_AS(store.save_async(no_epoch, [](ByteSink&) {}), InvalidArgument);
  SaveRequest negative;
  negative.epoch = 0;
  negative.step = -1;
  CHECK_THROWS_WITH(save_request(store, negative, zip_payload(1)), Catch::Contains("step must be >= 0, got -1"));
  SaveRequest best_with_epoch;  // the best model's epoch is its state_epoch
  best_with_epoch.kind = CheckpointKind::best;
  best_with_epoch.epoch = 3;
  CHECK_THROWS_AS(save_request(store, best_with_epoch, zip_payload(1)), InvalidArgument);
  CHECK(store.live_checkpoints().empty());
  for (const auto& name : file_names(dir.path())) CHECK(name.rfind("checkpoint_", 0) == std::string::npos);
}

TEST_CASE("a resume loads the most recently committed of the epoch and step checkpoints", "[store][steps]") {
  TestDir dir("steps");
  {
    CheckpointStore store(dir.path(), StoreOptions{0});
    save_epoch(store, 1, zip_payload(1));
    save_step(store, 1500, 2, zip_payload(2));
    CHECK(store.latest()->file == "checkpoint_step_1500.pth");
    save_epoch(store, 2, zip_payload(3));
    CHECK(store.latest()->file == "checkpoint_epoch_2.pth");
    // A lower step committed later still wins: newest means most recently committed.
    save_step(store, 10, 0, zip_payload(4));
  }
  CheckpointStore store(dir.path(), StoreOptions{0});
  auto loaded = store.load_latest();
  REQUIRE(loaded);
  CHECK(loaded->record.file == "checkpoint_step_10.pth");
  CHECK(loaded->record.step == 10);
  CHECK(payload_text(*loaded) == zip_payload(4));
}

TEST_CASE("a corrupt step checkpoint is quarantined and the resume falls back to the previous commit",
          "[store][steps][corruption]") {
  TestDir dir("steps");
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 1, zip_payload(1));
    save_step(store, 300, 1, zip_payload(2));
  }
  flip_byte(dir / "checkpoint_step_300.pth");
  CheckpointStore store(dir.path());
  auto loaded = store.load_latest();
  REQUIRE(loaded);
  CHECK(loaded->record.file == "checkpoint_epoch_1.pth");
  CHECK(std::filesystem::exists(dir / "quarantine"));
}

TEST_CASE("rotation keeps the newest max_to_keep of the epoch and step checkpoints together, by commit order",
          "[store][steps][rotation]") {
  TestDir dir("steps");
  CheckpointStore store(dir.path(), StoreOptions{3});
  // Epochs rising with every save, so that the superseded rule (a restarted run) has no
  // say: see the next-but-one case for step checkpoints sharing an epoch.
  save_epoch(store, 1, zip_payload(1));
  save_step(store, 100, 2, zip_payload(2));
  save_step(store, 200, 3, zip_payload(3));
  save_epoch(store, 4, zip_payload(4));
  save_step(store, 300, 5, zip_payload(5));
  CHECK(live_files(store) ==
        std::vector<std::string>{"checkpoint_epoch_4.pth", "checkpoint_step_200.pth", "checkpoint_step_300.pth"});
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_1.pth"));
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_step_100.pth"));
  auto events = index_events(dir.path());
  CHECK(std::count(events.begin(), events.end(), "rotated_out") == 2);
  CHECK(std::count(events.begin(), events.end(), "superseded") == 0);
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a step save deletes the interrupt checkpoint it supersedes, as an epoch save does", "[store][steps]") {
  TestDir dir("steps");
  CheckpointStore store(dir.path());
  save_step(store, 100, 0, zip_payload(1));
  save_bytes(store, CheckpointKind::interrupt, std::nullopt, zip_payload(2));
  CHECK(store.latest()->kind == CheckpointKind::interrupt);
  save_step(store, 200, 0, zip_payload(3));
  CHECK(store.latest()->file == "checkpoint_step_200.pth");
  CHECK_FALSE(std::filesystem::exists(dir / "interrupt_checkpoint.pth"));
}

// Rotation's "superseded" rule (a later commit of an epoch not above this row's: a
// restarted run) looks at epoch checkpoints only, so the step checkpoints of epoch 2
// (several per epoch, then the epoch's own checkpoint) do not make the older epoch 1
// checkpoint outlive them.
TEST_CASE("step checkpoints that carry their epoch are not taken for a restarted run by rotation",
          "[store][steps][rotation]") {
  TestDir dir("steps");
  CheckpointStore store(dir.path(), StoreOptions{3});
  save_epoch(store, 1, zip_payload(1));
  save_step(store, 300, 2, zip_payload(2));
  save_step(store, 350, 2, zip_payload(3));
  save_epoch(store, 2, zip_payload(4));  // the end of epoch 2, after its step checkpoints
  CHECK(live_files(store) ==
        std::vector<std::string>{"checkpoint_epoch_2.pth", "checkpoint_step_300.pth", "checkpoint_step_350.pth"});
}

TEST_CASE("step checkpoints labelled with an epoch already saved do not make that epoch's checkpoint superseded",
          "[store][steps][rotation]") {
  // Loops that label a step checkpoint with the last completed epoch: epoch 2's checkpoint,
  // then steps 400 and 450 "of epoch 2". Not a restart: the oldest, epoch 1, goes.
  TestDir dir("steps");
  CheckpointStore store(dir.path(), StoreOptions{3});
  save_epoch(store, 1, zip_payload(1));
  save_epoch(store, 2, zip_payload(2));
  save_step(store, 400, 2, zip_payload(3));
  save_step(store, 450, 2, zip_payload(4));
  CHECK(live_files(store) ==
        std::vector<std::string>{"checkpoint_epoch_2.pth", "checkpoint_step_400.pth", "checkpoint_step_450.pth"});
}

TEST_CASE("an epoch saved after step checkpoints of that epoch records no superseded event nor warning",
          "[store][steps]") {
  TestDir dir("steps");
  CheckpointStore store(dir.path(), StoreOptions{0});
  save_step(store, 300, 2, zip_payload(1));
  save_epoch(store, 2, zip_payload(2));
  save_step(store, 10, 0, zip_payload(3));  // a step checkpoint of a lower epoch: not a restart either
  save_epoch(store, 3, zip_payload(4));
  auto events = index_events(dir.path());
  CHECK(std::count(events.begin(), events.end(), "superseded") == 0);
}

TEST_CASE("an asynchronous step save is listed in flight with its step and commits as checkpoint_step_N.pth",
          "[store][steps][async]") {
  TestDir dir("steps");
  CheckpointStore store(dir.path());
  const std::string bytes = zip_payload(1);
  SaveRequest request;
  request.step = 4000;
  request.epoch = 7;
  store.save_async(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
  for (const auto& save : store.in_flight()) {  // empty once the worker is done
    CHECK(save.step == 4000);
    CHECK(save.file == "checkpoint_step_4000.pth");
  }
  store.wait();
  CHECK(store.latest()->step == 4000);
  CHECK(store.latest()->epoch == 7);
}

TEST_CASE("a complete checkpoint_step_N.pth without a row is adopted with its step from the name and its epoch from the state",
          "[store][steps][recovery]") {
  TestDir dir("steps");
  { CheckpointStore store(dir.path()); }
  write_bytes(dir / "checkpoint_step_800.pth", guide_payload(4, 0.75, 0.7, 1));
  write_bytes(dir / "checkpoint_epoch_3.pth", guide_payload(3, 0.7, 0.7, 2));
  // The step file is the newer: recovery adopts in the order the files were written.
  std::filesystem::last_write_time(dir / "checkpoint_epoch_3.pth",
                                   std::filesystem::last_write_time(dir / "checkpoint_step_800.pth") - std::chrono::seconds(5));
  write_bytes(dir / "checkpoint_step_900.pth", zip_payload(3));  // no `epoch` entry in its state
  CheckpointStore store(dir.path());
  CHECK(store.last_recovery().adopted == 2);
  CHECK(store.last_recovery().left_unloadable == 1);
  CHECK(read_bytes(dir / "checkpoint_step_900.pth") == zip_payload(3));  // left where it was, unindexed
  auto latest = store.latest();
  REQUIRE(latest);
  CHECK(latest->file == "checkpoint_step_800.pth");
  CHECK(latest->kind == CheckpointKind::epoch);
  CHECK(latest->step == 800);
  CHECK(latest->epoch == 4);
  CHECK(latest->state_epoch == 4);
  CHECK(latest->origin == "adopted");
  CHECK(latest->metric == 0.75);
  CHECK(payload_text(*store.load_latest()) == guide_payload(4, 0.75, 0.7, 1));
}

TEST_CASE("a step save killed after its rename is rolled forward; one killed before it is rolled back",
          "[store][steps][crash]") {
  TestDir dir("steps");
  { CheckpointStore store(dir.path()); save_step(store, 100, 0, zip_payload(1)); }
  auto killed_at = [&](const char* at, std::int64_t step, int seed) {
    REQUIRE(run_in_child([&] {
              StoreOptions options;
              store::test_hooks(options).on_step = [at](std::string_view reached) {
                if (reached == at) ::_exit(42);
              };
              CheckpointStore store(dir.path(), options);
              save_step(store, step, 0, zip_payload(seed));
            }) == 42);
  };
  killed_at("pending_committed", 200, 2);  // before the rename: the old state stays
  {
    CheckpointStore store(dir.path());
    CHECK(store.last_recovery().rolled_back == 1);
    CHECK(store.latest()->file == "checkpoint_step_100.pth");
    CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_step_200.pth"));
  }
  killed_at("renamed", 300, 3);  // after it: the save is committed
  {
    CheckpointStore store(dir.path());
    CHECK(store.last_recovery().rolled_forward == 1);
    auto loaded = store.load_latest();
    REQUIRE(loaded);
    CHECK(loaded->record.file == "checkpoint_step_300.pth");
    CHECK(loaded->record.step == 300);
    CHECK(payload_text(*loaded) == zip_payload(3));
  }
  CHECK(invariant_violations(dir.path()).empty());
}
