// CheckpointReader's verified loads, wait_for_new and pins: what an evaluator beside a
// trainer relies on. The reader must never write anything but its pins: every test that
// loads checks that the files and the index's rows and events are as they were.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "store/test_hooks.hpp"
#include "support/cli_support.hpp"
#include "support/fault_file_system.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

struct PinRow {
  std::int64_t checkpoint_id;
  std::string holder;
  std::string expires_at;
  bool holds;  // expires_at > now, as rotation decides it
};
std::vector<PinRow> pin_rows(const std::filesystem::path& dir) {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, "SELECT checkpoint_id, holder, expires_at, "
                              "expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM pins ORDER BY id");
  std::vector<PinRow> rows;
  while (query.executeStep()) {
    rows.push_back({query.getColumn(0).getInt64(), query.getColumn(1).getString(), query.getColumn(2).getString(),
                    query.getColumn(3).getInt() != 0});
  }
  return rows;
}

std::string sqlite_now_plus(const std::filesystem::path& dir, const std::string& modifier) {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)");
  query.bind(1, modifier);
  query.executeStep();
  return query.getColumn(0).getString();
}

// Three epochs, 1 to 3, each zip_payload(epoch); returns their rows.
std::vector<CheckpointRecord> three_epochs(const std::filesystem::path& dir) {
  CheckpointStore store(dir, StoreOptions{});
  std::vector<CheckpointRecord> rows;
  for (int epoch = 1; epoch <= 3; ++epoch) rows.push_back(save_epoch(store, epoch, zip_payload(epoch)));
  return rows;
}

}  // namespace

TEST_CASE("a reader skips a checkpoint with a flipped byte, names it, loads the older one and changes nothing",
          "[reader]") {
  TestDir dir("reader-flip");
  three_epochs(dir.path());
  const auto newest = dir / "checkpoint_epoch_3.pth";
  flip_byte(newest, 100);
  const std::string damaged = read_bytes(newest);
  const auto rows_before = index_rows(dir.path());
  const auto events_before = index_events(dir.path());

  CheckpointReader reader(dir.path());
  auto load = reader.load_latest();
  REQUIRE(load);
  CHECK(load->payload.record.epoch == 2);
  CHECK(payload_text(load->payload) == zip_payload(2));
  REQUIRE(load->skipped.size() == 1);
  CHECK(load->skipped[0].record.epoch == 3);
  CHECK_THAT(load->skipped[0].problem, Catch::Contains("checkpoint_epoch_3.pth") && Catch::Contains("hash"));

  // Never quarantined, never marked: the writer does that on its next load.
  CHECK(read_bytes(newest) == damaged);
  CHECK(!std::filesystem::exists(dir / "quarantine"));
  CHECK(index_rows(dir.path()).size() == rows_before.size());
  for (std::size_t i = 0; i < rows_before.size(); ++i) CHECK(index_rows(dir.path())[i].status == rows_before[i].status);
  CHECK(index_events(dir.path()) == events_before);

  // load(id) of the damaged one throws naming the file; of a healthy one returns it.
  CHECK_THROWS_WITH(reader.load(load->skipped[0].record.id), Catch::Contains("checkpoint_epoch_3.pth"));
  CHECK_THROWS_AS(reader.load(load->skipped[0].record.id), CorruptError);
  auto older = reader.load(load->payload.record.id);
  REQUIRE(older);
  CHECK(payload_text(older->payload) == zip_payload(2));
  CHECK(index_events(dir.path()) == events_before);
}

TEST_CASE("a reader skips a checkpoint whose file is missing and reports it as missing", "[reader]") {
  TestDir dir("reader-missing");
  three_epochs(dir.path());
  std::filesystem::remove(dir / "checkpoint_epoch_3.pth");
  const auto events_before = index_events(dir.path());
  CheckpointReader reader(dir.path());
  auto load = reader.load_latest();
  REQUIRE(load);
  CHECK(load->payload.record.epoch == 2);
  REQUIRE(load->skipped.size() == 1);
  CHECK_THAT(load->skipped[0].problem, Catch::Contains("checkpoint_epoch_3.pth: missing"));
  CHECK(index_events(dir.path()) == events_before);
  CHECK(index_rows(dir.path()).back().status == "committed");
}

TEST_CASE("a reader's load of an id that is not live is nullopt, and the best model loads verified", "[reader]") {
  TestDir dir("reader-load-id");
  {
    CheckpointStore store(dir.path(), StoreOptions{});
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(7), 0.9);
  }
  CheckpointReader reader(dir.path());
  CHECK(!reader.load(12345));
  auto best = reader.load_best();
  REQUIRE(best);
  CHECK(payload_text(best->payload) == zip_payload(7));
  CHECK(best->skipped.empty());
  flip_byte(dir / "best_model.pth", 50);
  auto damaged = reader.load_best();
  CHECK(!damaged);
}

TEST_CASE("a reader's load of a checkpoint it cannot read throws IoError naming the file, not CorruptError; "
          "load_latest passes it over",
          "[reader]") {
  TestDir dir("reader-eio");
  std::int64_t second = 0;
  {
    CheckpointStore store(dir.path(), StoreOptions{0});
    save_epoch(store, 1, zip_payload(1));
    second = save_epoch(store, 2, zip_payload(2)).id;
  }
  auto fs = std::make_shared<FaultFileSystem>();
  CheckpointReader reader(dir.path(), ReaderOptions{ReaderOptions::Access::automatic, fs});
  fs->fail_nth(Op::read, 1, EIO);
  try {
    (void)reader.load(second);
    FAIL("no error");
  } catch (const CorruptError& e) {
    FAIL(std::string("an unreadable file is not damage: ") + e.what());
  } catch (const IoError& e) {
    CHECK(e.os_error() == EIO);
    CHECK(e.path() == dir / "checkpoint_epoch_2.pth");
  }
  fs->fail_nth(Op::read, 1, EIO);
  auto latest = reader.load_latest();
  REQUIRE(latest);
  CHECK(latest->payload.record.epoch == 1);
  REQUIRE(latest->skipped.size() == 1);
  CHECK_THAT(latest->skipped[0].problem, Catch::Contains("checkpoint_epoch_2.pth: could not be read"));
  CHECK(reader.load(second));  // the fault is gone: nothing was retired
}

TEST_CASE("when no candidate verifies, a reader's load says which it skipped and why", "[reader]") {
  TestDir dir("reader-none-verifies");
  {
    CheckpointStore store(dir.path(), StoreOptions{});
    save_epoch(store, 1, zip_payload(1));
    save_epoch(store, 2, zip_payload(2));
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(7), 0.9);
  }
  CheckpointReader reader(dir.path());
  std::vector<SkippedCheckpoint> why{SkippedCheckpoint{}};  // replaced, not appended to
  CHECK(reader.load_latest(&why));
  CHECK(why.size() == 1);  // untouched when one verifies
  flip_byte(dir / "checkpoint_epoch_1.pth");
  std::filesystem::remove(dir / "checkpoint_epoch_2.pth");
  flip_byte(dir / "best_model.pth");
  CHECK(!reader.load_latest(&why));
  REQUIRE(why.size() == 2);
  CHECK_THAT(why[0].problem, Catch::Contains("checkpoint_epoch_2.pth: missing"));
  CHECK_THAT(why[1].problem, Catch::Contains("checkpoint_epoch_1.pth") && Catch::Contains("hash"));
  CHECK(!reader.load_best(&why));
  REQUIRE(why.size() == 1);
  CHECK_THAT(why[0].problem, Catch::Contains("best_model.pth") && Catch::Contains("hash"));
  CHECK(!std::filesystem::exists(dir / "quarantine"));
}

TEST_CASE("wait_for_new returns a checkpoint another store commits while it waits", "[reader]") {
  TestDir dir("reader-wait");
  auto rows = three_epochs(dir.path());
  CheckpointReader reader(dir.path());
  std::atomic<bool> waiting{false};
  std::optional<CheckpointRecord> seen;
  std::thread waiter([&] {
    waiting = true;
    seen = reader.wait_for_new(rows.back().commit_seq, std::chrono::seconds(60));
  });
  while (!waiting) std::this_thread::yield();
  CheckpointRecord saved;
  {
    CheckpointStore store(dir.path(), StoreOptions{});
    saved = save_epoch(store, 4, zip_payload(4));
  }
  waiter.join();
  REQUIRE(seen);
  CHECK(seen->id == saved.id);
  CHECK(seen->commit_seq > rows.back().commit_seq);
}

TEST_CASE("wait_for_new returns the first match in commit order, filtered by kind and metric, or times out",
          "[reader]") {
  TestDir dir("reader-wait-filter");
  {
    CheckpointStore store(dir.path(), StoreOptions{});
    save_epoch(store, 1, zip_payload(1));
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(2), 0.5);
    save_epoch(store, 2, zip_payload(3));
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(4), 0.8);
  }
  CheckpointReader reader(dir.path());
  auto first = reader.wait_for_new(0, std::chrono::milliseconds(0));
  REQUIRE(first);
  CHECK(first->epoch == 1);
  auto best = reader.wait_for_new(0, std::chrono::milliseconds(0), WaitCondition{CheckpointKind::best, {}});
  // The first best model's row was replaced (not live) by the second: the live one.
  REQUIRE(best);
  CHECK(best->kind == CheckpointKind::best);
  CHECK(best->metric == 0.8);
  CHECK(best->status == "committed");
  auto second_epoch = reader.wait_for_new(first->commit_seq, std::chrono::milliseconds(0),
                                          WaitCondition{CheckpointKind::epoch, {}});
  REQUIRE(second_epoch);
  CHECK(second_epoch->epoch == 2);
  auto good = reader.wait_for_new(0, std::chrono::milliseconds(0),
                                  WaitCondition{std::nullopt, [](const CheckpointRecord& row, const std::vector<NamedMetric>&) {
                                                  return row.metric && *row.metric > 0.7;
                                                }});
  REQUIRE(good);
  CHECK(good->metric == 0.8);
  auto latest = reader.latest();
  REQUIRE(latest);
  std::int64_t newest_seq = 0;
  for (const auto& row : reader.checkpoints()) newest_seq = std::max(newest_seq, row.commit_seq);
  CHECK(!reader.wait_for_new(newest_seq, std::chrono::milliseconds(30)));
}

TEST_CASE("wait_for_new skips checkpoints rotated out before it looked", "[reader]") {
  TestDir dir("reader-wait-rotated");
  {
    CheckpointStore store(dir.path(), options_with(nullptr, 2));
    save_epochs(store, 1, 4);
  }
  CheckpointReader reader(dir.path());
  auto first = reader.wait_for_new(0, std::chrono::milliseconds(0));
  REQUIRE(first);
  CHECK(first->epoch == 3);
  REQUIRE(reader.load(first->id));
}

TEST_CASE("wait_for_new never returns a save that is pending, only once it commits", "[reader]") {
  TestDir dir("reader-wait-pending");
  auto rows = three_epochs(dir.path());
  std::mutex mutex;
  std::condition_variable changed;
  bool held = false, release = false;
  StoreOptions options;
  store::test_hooks(options).on_step = [&](std::string_view step) {
    if (step != "renamed") return;  // pending row committed, file renamed: the row is still pending
    std::unique_lock<std::mutex> lock(mutex);
    held = true;
    changed.notify_all();
    changed.wait(lock, [&] { return release; });
  };
  CheckpointStore store(dir.path(), options);
  std::thread saver([&] { save_epoch(store, 4, zip_payload(4)); });
  {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&] { return held; });
  }
  CheckpointReader reader(dir.path());
  bool saw_pending = false;
  for (const auto& row : reader.checkpoints(true)) saw_pending |= row.status == "pending";
  CHECK(saw_pending);
  CHECK(!reader.wait_for_new(rows.back().commit_seq, std::chrono::milliseconds(50)));
  {
    std::lock_guard<std::mutex> lock(mutex);
    release = true;
  }
  changed.notify_all();
  saver.join();
  auto seen = reader.wait_for_new(rows.back().commit_seq, std::chrono::seconds(60));
  REQUIRE(seen);
  CHECK(seen->epoch == 4);
  CHECK(seen->status == "committed");
}

TEST_CASE("a pin is a row in the pins table until released, renewed later, and released by its destructor",
          "[reader][pin]") {
  TestDir dir("reader-pin");
  auto rows = three_epochs(dir.path());
  CheckpointReader reader(dir.path());
  const std::string lower = sqlite_now_plus(dir.path(), "+3590 seconds");
  auto pin = reader.pin(rows[1].id, std::chrono::hours(1), "evaluator A");
  const std::string upper = sqlite_now_plus(dir.path(), "+3610 seconds");
  CHECK(pin.active());
  CHECK(pin.checkpoint_id() == rows[1].id);
  CHECK(pin.holder() == "evaluator A");
  CHECK(pin.expires_at() > lower);
  CHECK(pin.expires_at() < upper);
  auto pins = pin_rows(dir.path());
  REQUIRE(pins.size() == 1);
  CHECK(pins[0].checkpoint_id == rows[1].id);
  CHECK(pins[0].holder == "evaluator A");
  CHECK(pins[0].expires_at == pin.expires_at());
  CHECK(pins[0].holds);

  pin.renew(std::chrono::hours(2));
  CHECK(pin.expires_at() > upper);
  CHECK(pin_rows(dir.path())[0].expires_at == pin.expires_at());

  {
    auto other = reader.pin(rows[0].id, std::chrono::minutes(5));
    CHECK_THAT(other.holder(), Catch::StartsWith("pid " + std::to_string(::getpid()) + " on "));
    CHECK(pin_rows(dir.path()).size() == 2);
    CheckpointPin moved = std::move(other);
    CHECK(!other.active());
    CHECK(pin_rows(dir.path()).size() == 2);
  }
  CHECK(pin_rows(dir.path()).size() == 1);
  pin.release();
  CHECK(!pin.active());
  CHECK(pin_rows(dir.path()).empty());
  pin.release();  // a no-op
}

TEST_CASE("a pin with a short ttl stops holding when it expires; pinning what is not live is an error naming it",
          "[reader][pin]") {
  TestDir dir("reader-pin-expiry");
  auto rows = three_epochs(dir.path());
  CheckpointReader reader(dir.path());
  auto pin = reader.pin(rows[2].id, std::chrono::milliseconds(1));
  // Waiting by condition: the row stays and stops holding once SQLite's clock passes it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (pin_rows(dir.path()).at(0).holds && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(!pin_rows(dir.path()).at(0).holds);
  CHECK_THROWS_AS(reader.pin(rows[0].id, std::chrono::milliseconds(0)), InvalidArgument);
  CHECK_THROWS_WITH(reader.pin(987654, std::chrono::minutes(1)), Catch::Contains("checkpoint 987654"));
  CHECK_THROWS_AS(reader.pin(987654, std::chrono::minutes(1)), InvalidArgument);
}

namespace {
// Runs `body` in a child as user nobody when this process is root (root ignores
// permission bits, so a chmod alone proves nothing), else as this user. `body` returns 0
// when every check held, else the number of the check that failed.
int as_unprivileged(const std::function<int()>& body) {
  return run_in_child([&] {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(99);
    ::_exit(body());
  });
}

int reads_as_snapshot_and_refuses_pins(const std::filesystem::path& dir, bool expect_immutable) {
  try {
    if (::access(dir.c_str(), W_OK) == 0) return 1;  // the test would prove nothing
    CheckpointReader reader(dir);
    if (reader.read_only_access() != expect_immutable) return 2;
    if (reader.checkpoints().size() != 3) return 3;
    auto load = reader.load_latest();
    if (!load || load->payload.record.epoch != 3 || !load->skipped.empty()) return 4;
    if (reader.verify().size() != 3) return 5;
    try {
      reader.pin(load->payload.record.id, std::chrono::minutes(1));
      return 6;
    } catch (const IoError& error) {
      if (error.code() != ErrorCode::permission_denied) return 7;
      if (std::string(error.what()).find("pins need write access to index.sqlite") == std::string::npos) return 8;
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "unexpected: %s\n", error.what());
    return 20;
  }
}
}  // namespace

TEST_CASE("a reader works on a directory it cannot write: immutable, and pins need write access", "[reader][readonly]") {
  TestDir dir("reader-readonly");
  three_epochs(dir.path());
  REQUIRE(!std::filesystem::exists(dir / "index.sqlite-shm"));  // the store closed: no -shm, no -wal
  ::chmod((dir / "index.sqlite").c_str(), 0444);
  ::chmod(dir.path().c_str(), 0555);
  const int status = as_unprivileged([&] { return reads_as_snapshot_and_refuses_pins(dir.path(), true); });
  ::chmod(dir.path().c_str(), 0755);
  ::chmod((dir / "index.sqlite").c_str(), 0644);
  CHECK(status == 0);
  CHECK(index_rows(dir.path()).size() == 3);
}

TEST_CASE("a reader that cannot write the directory reads beside an open writer through its -shm and -wal",
          "[reader][readonly]") {
  TestDir dir("reader-readonly-shared");
  CheckpointStore store(dir.path(), StoreOptions{});
  for (int epoch = 1; epoch <= 3; ++epoch) save_epoch(store, epoch, zip_payload(epoch));
  REQUIRE(std::filesystem::exists(dir / "index.sqlite-shm"));
  ::chmod(dir.path().c_str(), 0555);
  const int status = as_unprivileged([&] { return reads_as_snapshot_and_refuses_pins(dir.path(), false); });
  ::chmod(dir.path().c_str(), 0755);
  CHECK(status == 0);
}

TEST_CASE("an evaluator process beside a rotating trainer process sees every committed epoch exactly once",
          "[reader][two-process]") {
  // The trainer (a child process) keeps 2 epochs; before saving epoch e, which rotates
  // out epoch e - 2, it waits until the evaluator has finished epoch e - 2 (a pipe).
  // Without pin-aware rotation (retention's part) that bounded lag is what lets the
  // evaluator see every epoch; the reader's part under test is that each one it is
  // handed is committed, loads verified, and comes once, in commit order.
  TestDir dir("reader-two-process");
  { CheckpointStore create(dir.path(), options_with(nullptr, 2)); }
  constexpr int kEpochs = 12;
  int ack[2];
  REQUIRE(::pipe(ack) == 0);
  const pid_t trainer = ::fork();
  REQUIRE(trainer >= 0);
  if (trainer == 0) {
    ::close(ack[1]);
    int status = 0;
    try {
      CheckpointStore store(dir.path(), options_with(nullptr, 2));
      for (int epoch = 1; epoch <= kEpochs; ++epoch) {
        char done = 0;
        if (epoch > 2 && ::read(ack[0], &done, 1) != 1) ::_exit(3);
        save_epoch(store, epoch, zip_payload(epoch));
      }
    } catch (const std::exception& error) {
      std::fprintf(stderr, "trainer: %s\n", error.what());
      status = 2;
    }
    ::_exit(status);
  }
  ::close(ack[0]);
  CheckpointReader reader(dir.path());
  std::vector<std::int64_t> seen;
  std::int64_t after = 0;
  while (seen.size() < static_cast<std::size_t>(kEpochs)) {
    auto row = reader.wait_for_new(after, std::chrono::seconds(60), WaitCondition{CheckpointKind::epoch, {}});
    REQUIRE(row);
    REQUIRE(row->commit_seq > after);
    after = row->commit_seq;
    auto pin = reader.pin(row->id, std::chrono::minutes(1), "evaluator");
    auto load = reader.load(row->id);
    REQUIRE(load);
    CHECK(load->skipped.empty());
    CHECK(payload_text(load->payload) == zip_payload(static_cast<int>(*row->epoch)));
    seen.push_back(*row->epoch);
    pin.release();
    const char done = 1;  // the trainer reads one per epoch it may rotate out (1 .. kEpochs - 2)
    if (*row->epoch <= kEpochs - 2) REQUIRE(::write(ack[1], &done, 1) == 1);
  }
  ::close(ack[1]);
  int status = 0;
  REQUIRE(::waitpid(trainer, &status, 0) == trainer);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::vector<std::int64_t> expected;
  for (int epoch = 1; epoch <= kEpochs; ++epoch) expected.push_back(epoch);
  CHECK(seen == expected);
  CHECK(pin_rows(dir.path()).empty());
}

TEST_CASE("a killed evaluator's pin row stays and stops holding at its expiry", "[reader][pin][two-process]") {
  TestDir dir("reader-killed-pin");
  auto rows = three_epochs(dir.path());
  const int status = run_in_child([&] {
    CheckpointReader reader(dir.path());
    auto pin = reader.pin(rows[2].id, std::chrono::milliseconds(300), "doomed evaluator");
    ::kill(::getpid(), SIGKILL);  // the destructor never runs
  });
  CHECK(status == 128 + SIGKILL);
  auto pins = pin_rows(dir.path());
  REQUIRE(pins.size() == 1);
  CHECK(pins[0].holder == "doomed evaluator");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (pin_rows(dir.path()).at(0).holds && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(!pin_rows(dir.path()).at(0).holds);
}

TEST_CASE("a pinned checkpoint survives rotation until its pin is released or expires", "[reader][pins][rotation]") {
  TestDir dir("reader-pin-rotation");
  CheckpointStore store(dir.path(), options_with(nullptr, 2));
  auto first = save_epoch(store, 1, zip_payload(1));
  CheckpointReader reader(dir.path());
  auto pin = reader.pin(first.id, std::chrono::minutes(10));
  save_epochs(store, 2, 4);
  REQUIRE(reader.load(first.id));
  pin.release();
  save_epoch(store, 5, zip_payload(5));
  CHECK(!reader.load(first.id));
  CHECK(!std::filesystem::exists(dir / "checkpoint_epoch_1.pth"));
}

TEST_CASE("ckpt ls, show and verify work on a directory this user cannot write", "[reader][readonly][cli]") {
  TestDir dir("reader-readonly-cli");
  three_epochs(dir.path());
  REQUIRE(!std::filesystem::exists(dir / "index.sqlite-shm"));
  ::chmod((dir / "index.sqlite").c_str(), 0444);
  ::chmod(dir.path().c_str(), 0555);
  // As nobody when root (runuser), since root ignores permission bits.
  const std::string as_user = ::geteuid() == 0 ? "runuser -u nobody -- " : "";
  auto run = [&](const std::string& args) { return run_command(as_user + CKPT_CLI + " " + args + " 2>&1"); };
  auto ls = run("ls " + shell_quote(dir.path().string()));
  auto verify = run("verify " + shell_quote(dir.path().string()));
  auto show = run("show " + shell_quote((dir / "checkpoint_epoch_2.pth").string()));
  const bool shm_created = std::filesystem::exists(dir / "index.sqlite-shm");
  ::chmod(dir.path().c_str(), 0755);
  ::chmod((dir / "index.sqlite").c_str(), 0644);
  CHECK(ls.exit_code == 0);
  CHECK_THAT(ls.output, Catch::Contains("checkpoint_epoch_3.pth"));
  CHECK(verify.exit_code == 0);
  CHECK_THAT(verify.output, Catch::Contains("3 ok"));
  CHECK(show.exit_code == 0);
  CHECK(!shm_created);
}
