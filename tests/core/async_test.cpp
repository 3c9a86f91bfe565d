// Asynchronous saves (CheckpointStore::save_async): the worker is held at a chosen step of
// the save protocol through the store's test hook, and the user thread's view is checked
// meanwhile: back-pressure, acknowledgement by wait(), failures raised exactly once, resume
// and best lookup seeing only committed saves, the destructor waiting; then kill -9 and
// power loss while a save is in flight.
#include <catch2/catch.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <condition_variable>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "store/test_hooks.hpp"  // on_step, sqlite_vfs: test hooks
#include "support/captured_log.hpp"
#include "support/fault_file_system.hpp"
#include "support/power_loss.hpp"
#include "support/store_support.hpp"
#include "support/step_gate.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {


// Options whose store calls `gate` at every step, on `fs` (or the real file system).
StoreOptions gated(const std::shared_ptr<StepGate>& gate, std::shared_ptr<FileSystem> fs = nullptr, int max_in_flight = 1) {
  StoreOptions options = options_with(std::move(fs), 3);
  options.max_in_flight = max_in_flight;
  store::test_hooks(options).on_step = [gate](std::string_view step) { gate->on_step(step); };
  return options;
}

// A writer that owns its bytes: the caller's string may be gone before the worker runs.
PayloadWriter bytes_writer(std::string bytes) {
  return [bytes = std::move(bytes)](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); };
}

void save_epoch_async(CheckpointStore& store, std::int64_t epoch, std::string bytes) {
  SaveRequest request;
  request.kind = CheckpointKind::epoch;
  request.epoch = epoch;
  request.size_hint = bytes.size();
  store.save_async(std::move(request), bytes_writer(std::move(bytes)));
}

void save_best_async(CheckpointStore& store, double metric, std::string bytes) {
  SaveRequest request;
  request.kind = CheckpointKind::best;
  request.metric = metric;
  store.save_async(std::move(request), bytes_writer(std::move(bytes)));
}

std::vector<std::string> statuses_of(const std::filesystem::path& dir, const std::string& file) {
  std::vector<std::string> statuses;
  for (const auto& row : index_rows(dir)) {
    if (row.file == file) statuses.push_back(row.status);
  }
  return statuses;
}

}  // namespace

TEST_CASE("save_async returns while the save is written, and wait() acknowledges it", "[store][async]") {
  TestDir dir("async");
  auto gate = std::make_shared<StepGate>();
  CheckpointStore store(dir.path(), gated(gate));
  save_epoch(store, 1, zip_payload(1));
  gate->arm("temp_written");
  save_epoch_async(store, 2, zip_payload(2));
  gate->wait_reached();  // returned while the worker is held inside the save

  auto in_flight = store.in_flight();
  REQUIRE(in_flight.size() == 1);
  CHECK(in_flight[0].file == "checkpoint_epoch_2.pth");
  CHECK(in_flight[0].epoch == 2);
  CHECK(in_flight[0].started);
  CHECK(statuses_of(dir.path(), "checkpoint_epoch_2.pth").empty());  // no row before step 3

  gate->open();
  store.wait();
  CHECK(store.in_flight().empty());
  CHECK(statuses_of(dir.path(), "checkpoint_epoch_2.pth") == std::vector<std::string>{"committed"});
  CHECK(store.latest()->epoch == 2);
  CHECK(payload_text(*store.load_latest()) == zip_payload(2));
}

TEST_CASE("with max_in_flight 1 the next save_async blocks until the save in flight commits", "[store][async]") {
  TestDir dir("async");
  auto gate = std::make_shared<StepGate>();
  CheckpointStore store(dir.path(), gated(gate));
  gate->arm("pending_committed");
  save_epoch_async(store, 1, zip_payload(1));
  gate->wait_reached();

  std::atomic<bool> returned{false};
  std::atomic<int> committed_when_returned{-1};
  std::thread second([&] {
    save_epoch_async(store, 2, zip_payload(2));
    committed_when_returned = gate->count("committed");
    returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK_FALSE(returned);
  // The index shows the save being written: its pending row (ckpt ls shows it so).
  CHECK(statuses_of(dir.path(), "checkpoint_epoch_1.pth") == std::vector<std::string>{"pending"});
  gate->open();
  second.join();
  CHECK(committed_when_returned >= 1);  // the first save had committed when the second got its slot
  store.wait();
  CHECK(statuses_of(dir.path(), "checkpoint_epoch_2.pth") == std::vector<std::string>{"committed"});
}

TEST_CASE("a save's writer is released before the next save_async gets its slot", "[store][async]") {
  TestDir dir("async");
  CheckpointStore store(dir.path());
  auto held = std::make_shared<std::string>(zip_payload(1));
  std::weak_ptr<std::string> watch = held;
  SaveRequest request;
  request.kind = CheckpointKind::epoch;
  request.epoch = 1;
  store.save_async(request, [held = std::move(held)](ByteSink& sink) { sink.write(held->data(), held->size()); });
  save_epoch_async(store, 2, zip_payload(2));  // returns once epoch 1 is done: its writer is gone
  CHECK(watch.expired());  // (a manager's copy buffers are free for reuse then)
  store.wait();
}

TEST_CASE("with max_in_flight 2 a second save queues behind the first without blocking", "[store][async]") {
  TestDir dir("async");
  auto gate = std::make_shared<StepGate>();
  CheckpointStore store(dir.path(), gated(gate, nullptr, 2));
  gate->arm("temp_written");
  save_epoch_async(store, 1, zip_payload(1));
  gate->wait_reached();
  save_epoch_async(store, 2, zip_payload(2));  // would hang here if it blocked
  auto in_flight = store.in_flight();
  REQUIRE(in_flight.size() == 2);
  CHECK(in_flight[0].ticket < in_flight[1].ticket);
  CHECK((in_flight[0].started && !in_flight[1].started));
  CHECK(in_flight[1].file == "checkpoint_epoch_2.pth");
  gate->open();
  store.wait();
  CHECK(store.latest()->epoch == 2);
  CHECK(store.live_checkpoints().size() == 2);
}

TEST_CASE("max_in_flight below 1 is refused at open", "[store][async]") {
  TestDir dir("async");
  StoreOptions options;
  options.max_in_flight = 0;
  CHECK_THROWS_AS(CheckpointStore(dir.path(), options), InvalidArgument);
  CHECK(file_names(dir.path()).empty());
}

TEST_CASE("save_async refuses a bad request at once, before queueing", "[store][async]") {
  TestDir dir("async");
  CheckpointStore store(dir.path());
  SaveRequest no_epoch;
  no_epoch.kind = CheckpointKind::epoch;
  CHECK_THROWS_AS(store.save_async(no_epoch, bytes_writer("x")), InvalidArgument);
  SaveRequest best;
  best.kind = CheckpointKind::best;
  CHECK_THROWS_AS(store.save_async(best, PayloadWriter{}), InvalidArgument);
  CHECK(store.in_flight().empty());
  store.wait();
}

TEST_CASE("a failed fsync is raised once by wait(), naming the file, and the store keeps working",
          "[store][async][fault]") {
  TestDir dir("async");
  auto fs = std::make_shared<FaultFileSystem>();
  CheckpointStore store(dir.path(), options_with(fs, 3));
  save_epoch(store, 1, zip_payload(1));
  CapturedLog log(spdlog::level::err);
  fs->fail_nth(Op::sync, 1, EIO);
  save_epoch_async(store, 2, zip_payload(2));
  try {
    store.wait();
    FAIL("the failed save was not raised");
  } catch (const IoError& error) {
    CHECK_THAT(error.what(), Catch::Contains("checkpoint_epoch_2.pth") && Catch::Contains("Input/output error"));
  }
  // Logged when it happened, naming the file.
  CHECK_THAT(log.text(), Catch::Contains("asynchronous save of checkpoint_epoch_2.pth failed"));
  store.wait();  // raised once only
  CHECK(store.latest()->epoch == 1);
  CHECK(payload_text(*store.load_latest()) == zip_payload(1));
  save_epoch_async(store, 3, zip_payload(3));
  store.wait();
  CHECK(store.latest()->epoch == 3);
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a failed asynchronous save is raised by the next call instead of its work", "[store][async][fault]") {
  TestDir dir("async");
  auto fs = std::make_shared<FaultFileSystem>();
  CheckpointStore store(dir.path(), options_with(fs, 3));
  save_best_async(store, 0.1, zip_payload(1));
  store.wait();
  fs->fail_nth(Op::sync, 1, EIO);
  save_best_async(store, 0.2, zip_payload(2));
  CHECK_THROWS_WITH(store.latest(), Catch::Contains("best_model.pth") && Catch::Contains("Input/output error"));
  // The query that raised it did nothing else; asked again, it answers.
  CHECK_FALSE(store.latest());
  CHECK(store.best()->metric == 0.1);

  // A synchronous save, too, raises the failure instead of saving.
  fs->fail_nth(Op::sync, 1, EIO);
  save_best_async(store, 0.3, zip_payload(3));
  CHECK_THROWS_AS(save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(4), 0.4), IoError);
  CHECK(store.best()->metric == 0.1);
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(4), 0.4);
  CHECK(store.best()->metric == 0.4);

  // And so does save_async: the new save is then not queued.
  fs->fail_nth(Op::sync, 1, EIO);
  save_best_async(store, 0.5, zip_payload(5));
  store.in_flight();  // never raises
  CHECK_THROWS_AS(save_best_async(store, 0.6, zip_payload(6)), IoError);
  store.wait();
  CHECK(store.best()->metric == 0.4);
}

namespace {
struct BrokenPayload : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

TEST_CASE("several failed saves are each raised once, oldest first, as the exception each threw",
          "[store][async][fault]") {
  TestDir dir("async");
  auto fs = std::make_shared<FaultFileSystem>();
  auto gate = std::make_shared<StepGate>();
  CheckpointStore store(dir.path(), gated(gate, fs, 3));
  gate->arm("temp_written");
  fs->fail_nth(Op::sync, 1, EIO);
  save_epoch_async(store, 1, zip_payload(1));  // its temp-file fsync fails
  gate->wait_reached();
  save_epoch_async(store, 2, zip_payload(2));  // saved
  SaveRequest broken;
  broken.kind = CheckpointKind::epoch;
  broken.epoch = 3;
  store.save_async(broken, [](ByteSink&) { throw BrokenPayload("payload 3 cannot be written"); });
  gate->open();

  try {
    store.wait();
    FAIL("the first failure was not raised");
  } catch (const IoError& error) {
    CHECK_THAT(error.what(), Catch::Contains("checkpoint_epoch_1.pth"));
  }
  CHECK_THROWS_AS(store.wait(), BrokenPayload);
  store.wait();
  auto live = store.live_checkpoints();
  REQUIRE(live.size() == 1);
  CHECK(live[0].epoch == 2);
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("while a save is held in flight, resume and best lookup see only committed checkpoints",
          "[store][async]") {
  TestDir dir("async");
  auto gate = std::make_shared<StepGate>();
  CheckpointStore store(dir.path(), gated(gate));
  save_epoch(store, 1, zip_payload(1));
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(1), 0.1);

  for (const char* step : {"temp_synced", "pending_committed", "renamed", "dir_synced"}) {
    INFO("held at " << step);
    const std::int64_t epoch = store.latest()->epoch.value() + 1;
    const double metric = 0.1 * static_cast<double>(epoch);
    gate->arm(step, 1);
    save_epoch_async(store, epoch, zip_payload(static_cast<int>(epoch)));
    gate->wait_reached();
    // Another process's view (ckpt latest, ckpt best): the previous checkpoints.
    CheckpointReader reader(dir.path());
    CHECK(reader.latest()->epoch == epoch - 1);
    auto opener = open_later(gate);
    // The store's own queries wait for the save, then see it.
    CHECK(store.latest()->epoch == epoch);
    opener.join();

    gate->arm(step, 1);
    save_best_async(store, metric, zip_payload(-static_cast<int>(epoch)));
    gate->wait_reached();
    CHECK(CheckpointReader(dir.path()).best()->metric == Approx(metric - 0.1));
    CHECK(CheckpointReader(dir.path()).latest()->epoch == epoch);
    opener = open_later(gate);
    CHECK(store.best()->metric == Approx(metric));
    opener.join();
  }
  CHECK(payload_text(*store.load_best()) == zip_payload(-5));
}

TEST_CASE("ckpt ls shows a save being written", "[store][async][cli]") {
  TestDir dir("async");
  auto gate = std::make_shared<StepGate>();
  CheckpointStore store(dir.path(), gated(gate));
  save_epoch(store, 1, zip_payload(1));
  gate->arm("renamed");
  save_epoch_async(store, 2, zip_payload(2));
  gate->wait_reached();
  auto listed = run_command(std::string(CKPT_CLI) + " ls " + shell_quote(dir.path().string()) + " 2>&1");
  CHECK(listed.exit_code == 0);
  CHECK_THAT(listed.output, Catch::Contains("checkpoint_epoch_1.pth") && Catch::Contains("checkpoint_epoch_2.pth *") &&
                                Catch::Contains("being written"));
  gate->open();
  store.wait();
  listed = run_command(std::string(CKPT_CLI) + " ls " + shell_quote(dir.path().string()) + " 2>&1");
  CHECK_THAT(listed.output, !Catch::Contains("being written"));
}

TEST_CASE("a synchronous save after save_async waits for it, so the order of saves is kept", "[store][async]") {
  TestDir dir("async");
  auto gate = std::make_shared<StepGate>();
  CheckpointStore store(dir.path(), gated(gate));
  gate->arm("temp_written");
  save_best_async(store, 0.1, zip_payload(1));
  gate->wait_reached();
  auto opener = open_later(gate);
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(2), 0.2);
  opener.join();
  CHECK(store.best()->metric == 0.2);
  CHECK(payload_text(*store.load_best()) == zip_payload(2));
  CHECK(statuses_of(dir.path(), "best_model.pth") == std::vector<std::string>{"replaced", "committed"});
}

TEST_CASE("a verify-then-apply load waits for the save in flight and restores what it committed",
          "[store][async][restore]") {
  TestDir dir("async");
  auto gate = std::make_shared<StepGate>();
  CheckpointStore store(dir.path(), gated(gate));
  save_epoch_async(store, 1, zip_payload(1));
  store.wait();
  gate->arm("temp_written");
  save_epoch_async(store, 2, zip_payload(2));
  gate->wait_reached();
  auto opener = open_later(gate);
  std::string verified, applied;
  auto read_into = [](std::string& out) {
    return [&out](PayloadSource& source, const CheckpointRecord&) {
      out.resize(source.size());
      source.read_at(0, out.data(), out.size());
    };
  };
  auto record = store.load_latest(read_into(verified), read_into(applied));
  opener.join();
  REQUIRE(record);
  CHECK(record->epoch == 2);
  CHECK(verified == zip_payload(2));
  CHECK(applied == zip_payload(2));
}

TEST_CASE("the destructor waits for the saves in flight", "[store][async]") {
  TestDir dir("async");
  auto gate = std::make_shared<StepGate>();
  std::thread opener;
  {
    CheckpointStore store(dir.path(), gated(gate, nullptr, 2));
    gate->arm("temp_written");
    save_epoch_async(store, 1, zip_payload(1));
    save_epoch_async(store, 2, zip_payload(2));
    gate->wait_reached();
    opener = open_later(gate);
  }  // returns once both saves are done
  opener.join();
  CHECK(statuses_of(dir.path(), "checkpoint_epoch_1.pth") == std::vector<std::string>{"committed"});
  CHECK(statuses_of(dir.path(), "checkpoint_epoch_2.pth") == std::vector<std::string>{"committed"});
  CHECK(invariant_violations(dir.path()).empty());
  CheckpointStore reopened(dir.path());
  CHECK_FALSE(reopened.last_recovery().anything_done());
}

TEST_CASE("the save worker blocks SIGINT, SIGTERM and SIGUSR1 so they reach the training thread",
          "[store][async][interrupt]") {
  TestDir dir("async");
  StoreOptions options;
  std::atomic<int> blocked{-1};
  store::test_hooks(options).on_step = [&](std::string_view step) {
    if (step != "temp_written") return;
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    blocked = sigismember(&mask, SIGINT) + sigismember(&mask, SIGTERM) + sigismember(&mask, SIGUSR1);
  };
  CheckpointStore store(dir.path(), options);
  save_epoch_async(store, 1, zip_payload(1));
  store.wait();
  CHECK(blocked == 3);
  sigset_t mine;  // the caller's mask is as it was
  pthread_sigmask(SIG_BLOCK, nullptr, &mine);
  CHECK_FALSE(sigismember(&mine, SIGINT));
}

// ---- kill -9 and power loss with a save in flight ----

TEST_CASE("kill -9 while an asynchronous save is in flight keeps the previous checkpoint, which loads",
          "[store][async][crash][kill]") {
  for (const char* step : {"temp_written", "temp_synced", "pending_committed", "renamed", "dir_synced", "committed"}) {
    INFO("killed at " << step);
    TestDir dir("async-kill");
    {
      CheckpointStore store(dir.path(), StoreOptions{3});
      save_epoch(store, 1, zip_payload(1));
      save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(1), 0.1);
    }
    int reached[2];
    REQUIRE(::pipe(reached) == 0);
    std::fflush(nullptr);
    int status = 0;
    pid_t child = ::fork();
    if (child == 0) {
      ::close(reached[0]);
      StoreOptions options;
      options.max_to_keep = 3;
      const std::string wanted = step;
      store::test_hooks(options).on_step = [&](std::string_view seen) {
        if (seen != wanted) return;
        char one = 1;
        if (::write(reached[1], &one, 1) != 1) ::_exit(4);
        for (;;) ::pause();  // killed here, on the worker, while the user thread goes on
      };
      CheckpointStore store(dir.path(), options);
      save_epoch_async(store, 2, zip_payload(2));
      save_best_async(store, 0.2, zip_payload(-2));  // queued behind it (blocks: max_in_flight 1)
      ::_exit(5);
    }
    ::close(reached[1]);
    char one = 0;
    REQUIRE(::read(reached[0], &one, 1) == 1);
    ::close(reached[0]);
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));

    CheckpointStore store(dir.path(), StoreOptions{3});
    const RecoveryReport& report = store.last_recovery();
    const std::string s = step;
    if (s == "temp_written" || s == "temp_synced") {
      CHECK(report.temp_files_removed == 1);
      CHECK(store.latest()->epoch == 1);
    } else if (s == "pending_committed") {
      CHECK(report.rolled_back == 1);
      CHECK(store.latest()->epoch == 1);
    } else if (s == "renamed" || s == "dir_synced") {
      CHECK(report.rolled_forward == 1);
      CHECK(store.latest()->epoch == 2);
    } else {
      CHECK(store.latest()->epoch == 2);
    }
    // The previous checkpoint and the best model are intact and load; the queued best
    // save never started.
    auto epochs = store.live_checkpoints();
    CHECK(std::any_of(epochs.begin(), epochs.end(), [](const CheckpointRecord& r) { return r.epoch == 1; }));
    CHECK(read_bytes(dir / "checkpoint_epoch_1.pth") == zip_payload(1));
    CHECK(payload_text(*store.load_best()) == zip_payload(1));
    auto latest = store.load_latest();
    REQUIRE(latest);
    CHECK(payload_text(*latest) == zip_payload(static_cast<int>(*latest->record.epoch)));
  }
}

TEST_CASE("kill -9 at random moments of asynchronous saves never loses an acknowledged one",
          "[store][async][crash][kill]") {
  TestDir dir("async-kill");
  std::mt19937 random(20261202);
  const int rounds = std::max(1, static_cast<int>(env_number("CKPT_KILL_ROUNDS", 60)) / 4);
  std::int64_t acknowledged = 0;  // the newest epoch a call acknowledged
  for (int round = 0; round < rounds; ++round) {
    int ack[2];
    REQUIRE(::pipe(ack) == 0);
    std::fflush(nullptr);
    const std::int64_t first = acknowledged + 1;
    pid_t child = ::fork();
    if (child == 0) {
      ::close(ack[0]);
      CheckpointStore store(dir.path(), StoreOptions{3});
      for (std::int64_t epoch = first;; ++epoch) {
        save_epoch_async(store, epoch, zip_payload(static_cast<int>(epoch), 2000 + (epoch % 5) * 20000));
        // With max_in_flight 1, save_async returning means the save before it committed.
        const std::int64_t done = epoch - 1;
        if (done >= first && ::write(ack[1], &done, sizeof done) != sizeof done) ::_exit(4);
      }
    }
    ::close(ack[1]);
    std::int64_t value = 0;
    if (::read(ack[0], &value, sizeof value) == sizeof value) acknowledged = value;
    ::usleep(std::uniform_int_distribution<int>(500, 20000)(random));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    while (::read(ack[0], &value, sizeof value) == sizeof value) acknowledged = value;
    ::close(ack[0]);

    CheckpointStore store(dir.path(), StoreOptions{3});
    auto latest = store.load_latest();
    REQUIRE(latest);
    INFO("round " << round << ", acknowledged epoch " << acknowledged);
    const std::int64_t epoch = *latest->record.epoch;
    CHECK(epoch >= acknowledged);
    CHECK(epoch <= acknowledged + 2);  // the one in flight, and the one queued behind it
    CHECK(payload_text(*latest) == zip_payload(static_cast<int>(epoch), 2000 + (epoch % 5) * 20000));
    if (acknowledged > 0) {
      CHECK(read_bytes(dir / ("checkpoint_epoch_" + std::to_string(acknowledged) + ".pth")) ==
            zip_payload(static_cast<int>(acknowledged), 2000 + (acknowledged % 5) * 20000));
    }
    acknowledged = epoch;  // the next round continues after whatever made it to disk
  }
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("power loss at every step of an asynchronous save keeps the previous checkpoint, and an acknowledged one",
          "[store][async][power-loss]") {
  constexpr int kLostInFlight = 42, kLostAfterWait = 44;
  for (int lose_at = 1;; ++lose_at) {
    INFO("power lost at step " << lose_at << " of the asynchronous save");
    TestDir dir("async-power");
    int status = run_in_child([&] {
      auto fs = std::make_shared<PowerLossFileSystem>();
      StoreOptions options = options_with(fs, 3);
      store::test_hooks(options).sqlite_vfs = register_power_loss_vfs();
      std::atomic<bool> armed{false};
      std::atomic<int> steps{0};
      store::test_hooks(options).on_step = [&](std::string_view) {
        if (!armed || ++steps != lose_at) return;
        fs->lose_unsynced();
        lose_unsynced_sqlite_writes();
        ::_exit(kLostInFlight);
      };
      CheckpointStore store(dir.path(), options);
      save_epoch(store, 1, zip_payload(1));
      armed = true;
      save_epoch_async(store, 2, zip_payload(2));
      store.wait();
      fs->lose_unsynced();
      lose_unsynced_sqlite_writes();
      ::_exit(kLostAfterWait);
    });
    REQUIRE((status == kLostInFlight || status == kLostAfterWait));
    CheckpointStore store(dir.path(), StoreOptions{3});
    CHECK(read_bytes(dir / "checkpoint_epoch_1.pth") == zip_payload(1));
    auto latest = store.load_latest();
    REQUIRE(latest);
    if (status == kLostAfterWait) CHECK(latest->record.epoch == 2);  // acknowledged by wait()
    CHECK(payload_text(*latest) == zip_payload(static_cast<int>(*latest->record.epoch)));
    CHECK(invariant_violations(dir.path()).empty());
    if (status == kLostAfterWait) break;
  }
}
