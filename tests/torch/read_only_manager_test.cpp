// ReadOnlyCheckpointManager: the guide's evaluation beside a running trainer. Every case
// keeps a CheckpointManager (the writer, holding the lock) open where it can, and checks
// that the read-only loads changed nothing: files, quarantine, rows' status, events.
#include "support/torch_pch.hpp"
#include "support/test_dir.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <thread>

#include "ckpt/read_only_manager.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

// The guide's state of an epoch: numbers, and a model whose tensors differ per epoch.
State epoch_state(int64_t epoch, double val_acc) {
  State state{{"epoch", epoch}, {"val_acc", val_acc}, {"best_acc", val_acc}};
  state.set("model", State{{"fc.weight", at::full({3, 4}, static_cast<double>(epoch))},
                           {"fc.bias", at::arange(3, at::kFloat) * static_cast<float>(epoch)}});
  return state;
}

// Whether `loaded` holds exactly what epoch_state(epoch, val_acc) saved.
bool same_as_saved(const State& loaded, int64_t epoch, double val_acc) {
  const State saved = epoch_state(epoch, val_acc);
  const State& model = loaded.get<State>("model");
  const State& saved_model = saved.get<State>("model");
  return loaded.get<int64_t>("epoch") == epoch && loaded.get<double>("val_acc") == val_acc &&
         loaded.get<double>("best_acc") == val_acc &&
         at::equal(model.get<at::Tensor>("fc.weight"), saved_model.get<at::Tensor>("fc.weight")) &&
         at::equal(model.get<at::Tensor>("fc.bias"), saved_model.get<at::Tensor>("fc.bias"));
}

// What a read-only load must leave as it was.
struct Untouched {
  std::vector<std::string> files;
  std::vector<std::string> statuses;
  std::size_t events = 0;
};
Untouched snapshot_of(const std::filesystem::path& dir) {
  CheckpointReader reader(dir);
  Untouched what{file_names(dir), {}, reader.events().size()};
  for (const auto& row : reader.checkpoints(/*include_history=*/true)) what.statuses.push_back(row.status);
  return what;
}
void check_untouched(const std::filesystem::path& dir, const Untouched& before) {
  const Untouched now = snapshot_of(dir);
  CHECK(now.files == before.files);
  CHECK(now.statuses == before.statuses);
  CHECK(now.events == before.events);
  CHECK(!std::filesystem::exists(dir / "quarantine"));
}

}  // namespace

TEST_CASE("beside an open writer, a read-only manager loads the latest and the best model as they were saved",
          "[read_only_manager][reader]") {
  TestDir dir("ro-beside-writer");
  CheckpointManager writer(dir.path(), c10::kCPU, 5);
  writer.save_epoch_checkpoint(epoch_state(1, 0.50), 1);
  writer.save_epoch_checkpoint(epoch_state(2, 0.75), 2);
  writer.save_best_model(epoch_state(2, 0.75), 0.75);
  writer.save_epoch_checkpoint(epoch_state(3, 0.625), 3);

  // The guide's evaluation script, run while the trainer holds the lock.
  CHECK_THROWS_AS(CheckpointManager(dir.path(), c10::kCPU, 5), LockedError);
  const Untouched before = snapshot_of(dir.path());
  ReadOnlyCheckpointManager checkpoints(dir.path(), c10::kCPU);
  CHECK(!checkpoints.reader().read_only_access());  // shared: sees the writer's commits

  ReadOnlyLoad latest = checkpoints.load_latest_checkpoint();
  REQUIRE(latest);
  REQUIRE(latest.record);
  CHECK(latest.record->file == "checkpoint_epoch_3.pth");
  CHECK(latest.skipped.empty());
  CHECK(same_as_saved(*latest.state, 3, 0.625));

  ReadOnlyLoad best = checkpoints.load_best_model();
  REQUIRE(best);
  CHECK(best.record->file == "best_model.pth");
  CHECK(best.record->metric == 0.75);
  CHECK(same_as_saved(*best.state, 2, 0.75));

  std::optional<std::int64_t> first_id;
  for (const auto& row : checkpoints.reader().checkpoints()) {
    if (row.file == "checkpoint_epoch_1.pth") first_id = row.id;
  }
  REQUIRE(first_id);
  ReadOnlyLoad second = checkpoints.load(*first_id);
  REQUIRE(second);
  CHECK(same_as_saved(*second.state, 1, 0.50));
  check_untouched(dir.path(), before);

  // The writer goes on: the next save is seen, and the writer never noticed the reader.
  writer.save_epoch_checkpoint(epoch_state(4, 0.875), 4);
  latest = checkpoints.load_latest_checkpoint();
  REQUIRE(latest);
  CHECK(same_as_saved(*latest.state, 4, 0.875));
  CHECK(!checkpoints.load(987654));
  CHECK_THROWS_AS(CheckpointManager(dir.path(), c10::kCPU, 5), LockedError);
}

TEST_CASE("a read-only manager loads an interrupt checkpoint without consuming it: the trainer still resumes from it",
          "[read_only_manager][reader]") {
  TestDir dir("ro-interrupt");
  CheckpointManager writer(dir.path(), c10::kCPU, 5);
  writer.save_epoch_checkpoint(epoch_state(1, 0.5), 1);
  writer.save_interrupt_checkpoint(epoch_state(2, 0.25));
  const Untouched before = snapshot_of(dir.path());

  ReadOnlyCheckpointManager checkpoints(dir.path());
  ReadOnlyLoad latest = checkpoints.load_latest_checkpoint();
  REQUIRE(latest);
  CHECK(latest.record->kind == CheckpointKind::interrupt);
  CHECK(latest.record->status == "committed");
  CHECK(same_as_saved(*latest.state, 2, 0.25));
  check_untouched(dir.path(), before);

  auto resumed = writer.load_latest_checkpoint();
  REQUIRE(resumed);
  CHECK(same_as_saved(*resumed, 2, 0.25));
}

TEST_CASE("a flipped byte in the newest checkpoint: the read-only manager returns the previous one, says why, "
          "and leaves the file as it was",
          "[read_only_manager][reader]") {
  TestDir dir("ro-flip");
  CheckpointManager writer(dir.path(), c10::kCPU, 5);
  for (int64_t epoch = 1; epoch <= 3; ++epoch) writer.save_epoch_checkpoint(epoch_state(epoch, 0.25 * epoch), epoch);
  writer.save_best_model(epoch_state(7, 0.875), 0.875);  // a state of its own: not linked to an epoch's file
  const auto newest = dir / "checkpoint_epoch_3.pth";
  flip_byte(newest);
  const std::string damaged = read_bytes(newest);
  const Untouched before = snapshot_of(dir.path());

  ReadOnlyCheckpointManager checkpoints(dir.path());
  ReadOnlyLoad latest = checkpoints.load_latest_checkpoint();
  REQUIRE(latest);
  CHECK(latest.record->file == "checkpoint_epoch_2.pth");
  CHECK(same_as_saved(*latest.state, 2, 0.5));
  REQUIRE(latest.skipped.size() == 1);
  CHECK(latest.skipped[0].record.file == "checkpoint_epoch_3.pth");
  CHECK_THAT(latest.skipped[0].problem, Catch::Contains("checkpoint_epoch_3.pth") && Catch::Contains("hash") &&
                                            Catch::Contains("index recorded"));

  // Asked for by id, the damaged one is an error naming the file, not a silent nullopt.
  const std::int64_t damaged_id = latest.skipped[0].record.id;
  CHECK_THROWS_AS(checkpoints.load(damaged_id), CorruptError);
  CHECK_THROWS_WITH(checkpoints.load(damaged_id), Catch::Contains("checkpoint_epoch_3.pth"));

  // The best model has nothing to fall back to: no state, and the reason.
  flip_byte(dir / "best_model.pth");
  const std::string damaged_best = read_bytes(dir / "best_model.pth");
  ReadOnlyLoad best = checkpoints.load_best_model();
  CHECK(!best);
  CHECK(!best.record);
  REQUIRE(best.skipped.size() == 1);
  CHECK_THAT(best.skipped[0].problem, Catch::Contains("best_model.pth") && Catch::Contains("hash"));

  CHECK(read_bytes(newest) == damaged);
  CHECK(read_bytes(dir / "best_model.pth") == damaged_best);
  check_untouched(dir.path(), before);
}

TEST_CASE("an evaluator started before the trainer finds nothing, creates nothing, and sees the first save",
          "[read_only_manager][reader]") {
  TestDir dir("ro-before-trainer");
  const auto save_dir = dir / "checkpoints";  // not created yet
  ReadOnlyCheckpointManager checkpoints(save_dir);
  CHECK(!checkpoints.load_latest_checkpoint());
  ReadOnlyLoad best = checkpoints.load_best_model();
  CHECK(!best);
  CHECK(best.skipped.empty());
  CHECK(!checkpoints.load(1));
  CHECK(!checkpoints.wait_for_new(0, std::chrono::milliseconds(0)));
  CHECK_THROWS_AS(checkpoints.reader(), IndexError);
  CHECK_THROWS_WITH(checkpoints.reader(), Catch::Contains(save_dir.string()) && Catch::Contains("index.sqlite"));
  CHECK(!std::filesystem::exists(save_dir));

  CheckpointManager writer(save_dir, c10::kCPU, 5);
  writer.save_epoch_checkpoint(epoch_state(1, 0.5), 1);
  auto next = checkpoints.wait_for_next(0, std::chrono::minutes(1), std::chrono::minutes(1));
  REQUIRE(next);
  CHECK(next->record.epoch == 1);
  ReadOnlyLoad latest = checkpoints.load_latest_checkpoint();
  REQUIRE(latest);
  CHECK(same_as_saved(*latest.state, 1, 0.5));

  // Waiting already when the trainer starts: the wait sees the index appear, then the save.
  const auto later_dir = dir / "later";
  ReadOnlyCheckpointManager waiting(later_dir);
  std::thread trainer([&] {
    CheckpointManager later(later_dir, c10::kCPU, 5);
    later.save_epoch_checkpoint(epoch_state(2, 0.25), 2);
  });
  auto first = waiting.wait_for_next(0, std::chrono::minutes(1), std::chrono::minutes(1));
  trainer.join();
  REQUIRE(first);
  CHECK(first->record.epoch == 2);
}

TEST_CASE("the evaluator's loop: wait, pin, load, evaluate, release; a pinned epoch outlives rotation",
          "[read_only_manager][reader][pins]") {
  TestDir dir("ro-loop");
  CheckpointManager writer(dir.path(), c10::kCPU, /*max_to_keep=*/2);
  ReadOnlyCheckpointManager checkpoints(dir.path());
  CHECK(!checkpoints.wait_for_next(0, std::chrono::milliseconds(0), std::chrono::minutes(1)));
  CHECK_THROWS_AS(checkpoints.wait_for_next(0, std::chrono::seconds(1), std::chrono::milliseconds(0)), InvalidArgument);

  writer.save_epoch_checkpoint(epoch_state(1, 0.5), 1);
  std::int64_t seen = 0;
  {
    auto next = checkpoints.wait_for_next(seen, std::chrono::minutes(1), std::chrono::minutes(10));
    REQUIRE(next);
    CHECK(next->record.epoch == 1);
    CHECK(next->pin.active());
    seen = next->record.commit_seq;
    // The trainer saves three more epochs while epoch 1 is evaluated: rotation keeps it.
    for (int64_t epoch = 2; epoch <= 4; ++epoch) writer.save_epoch_checkpoint(epoch_state(epoch, 0.5), epoch);
    CHECK(std::filesystem::exists(dir / "checkpoint_epoch_1.pth"));
    ReadOnlyLoad loaded = checkpoints.load(next->record.id);
    REQUIRE(loaded);
    CHECK(same_as_saved(*loaded.state, 1, 0.5));
  }  // released
  writer.save_epoch_checkpoint(epoch_state(5, 0.5), 5);
  CHECK(!std::filesystem::exists(dir / "checkpoint_epoch_1.pth"));

  // Epoch 2 was rotated out before the evaluator looked: the next it gets is epoch 4.
  auto next = checkpoints.wait_for_next(seen, std::chrono::minutes(1), std::chrono::minutes(10));
  REQUIRE(next);
  CHECK(next->record.epoch == 4);
  ReadOnlyLoad fourth = checkpoints.load(next->record.id);
  REQUIRE(fourth);
  CHECK(same_as_saved(*fourth.state, 4, 0.5));
}

TEST_CASE("wait_for_next passes over a checkpoint rotated out between being seen and being pinned",
          "[read_only_manager][reader][pins]") {
  TestDir dir("ro-race");
  CheckpointManager writer(dir.path(), c10::kCPU, /*max_to_keep=*/1);
  writer.save_epoch_checkpoint(epoch_state(1, 0.5), 1);
  ReadOnlyCheckpointManager checkpoints(dir.path());
  // The condition runs between the wait's query and the pin: the trainer's next save,
  // keeping 1, rotates epoch 1 out right then.
  bool rotated = false;
  WaitCondition condition;
  condition.accept = [&](const CheckpointRecord& row, const std::vector<NamedMetric>&) {
    if (row.epoch == 1 && !rotated) {
      rotated = true;
      writer.save_epoch_checkpoint(epoch_state(2, 0.5), 2);
    }
    return true;
  };
  auto next = checkpoints.wait_for_next(0, std::chrono::minutes(1), std::chrono::minutes(10), condition);
  CHECK(rotated);
  REQUIRE(next);
  CHECK(next->record.epoch == 2);
  CHECK(next->pin.active());
  ReadOnlyLoad second = checkpoints.load(next->record.id);
  REQUIRE(second);
  CHECK(same_as_saved(*second.state, 2, 0.5));
}

namespace {
// Runs `body` in a child process as user nobody when this process is root (root ignores
// permission bits, so a chmod alone proves nothing). `body` returns 0 when every check
// held, else the number of the check that failed; the child prints what it threw.
int as_unprivileged(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(99);
    int code = 98;
    try {
      code = body();
    } catch (const std::exception& error) {
      std::fprintf(stderr, "unexpected: %s\n", error.what());
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  int status = 0;
  if (child < 0 || ::waitpid(child, &status, 0) != child) return 97;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 96;
}

int evaluates_read_only(const std::filesystem::path& dir, bool expect_immutable) {
  if (::access(dir.c_str(), W_OK) == 0) return 1;  // the test would prove nothing
  ReadOnlyCheckpointManager checkpoints(dir);
  if (checkpoints.reader().read_only_access() != expect_immutable) return 2;
  ReadOnlyLoad latest = checkpoints.load_latest_checkpoint();
  if (!latest || !latest.skipped.empty() || !same_as_saved(*latest.state, 3, 0.75)) return 3;
  ReadOnlyLoad best = checkpoints.load_best_model();
  if (!best || !same_as_saved(*best.state, 7, 0.875)) return 4;
  try {
    checkpoints.pin(latest.record->id, std::chrono::minutes(1));
    return 5;
  } catch (const IoError& error) {
    if (error.code() != ErrorCode::permission_denied) return 6;
  }
  return 0;
}

void save_three_and_best(CheckpointManager& writer) {
  for (int64_t epoch = 1; epoch <= 3; ++epoch) writer.save_epoch_checkpoint(epoch_state(epoch, 0.25 * epoch), epoch);
  writer.save_best_model(epoch_state(7, 0.875), 0.875);
}
}  // namespace

TEST_CASE("a read-only manager evaluates a directory this user cannot write (immutable), pins refused",
          "[read_only_manager][reader][readonly]") {
  TestDir dir("ro-readonly");
  {
    CheckpointManager writer(dir.path(), c10::kCPU, 5);
    save_three_and_best(writer);
  }
  REQUIRE(!std::filesystem::exists(dir / "index.sqlite-shm"));  // the writer closed: no -shm, no -wal
  const auto files = file_names(dir.path());
  ::chmod((dir / "index.sqlite").c_str(), 0444);
  ::chmod(dir.path().c_str(), 0555);
  const int status = as_unprivileged([&] { return evaluates_read_only(dir.path(), /*expect_immutable=*/true); });
  ::chmod(dir.path().c_str(), 0755);
  ::chmod((dir / "index.sqlite").c_str(), 0644);
  CHECK(status == 0);
  CHECK(file_names(dir.path()) == files);
}

TEST_CASE("a read-only manager that cannot write the directory evaluates beside an open writer (shared)",
          "[read_only_manager][reader][readonly]") {
  TestDir dir("ro-readonly-shared");
  CheckpointManager writer(dir.path(), c10::kCPU, 5);
  save_three_and_best(writer);
  REQUIRE(std::filesystem::exists(dir / "index.sqlite-shm"));
  ::chmod(dir.path().c_str(), 0555);
  const int status = as_unprivileged([&] { return evaluates_read_only(dir.path(), /*expect_immutable=*/false); });
  ::chmod(dir.path().c_str(), 0755);
  CHECK(status == 0);
}
