#include <catch2/catch.hpp>

#include <algorithm>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include <chrono>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "support/fault_file_system.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"
#include "store/test_hooks.hpp"  // on_step, sqlite_vfs, fsync skips: test hooks

using namespace ckpt;
using namespace ckpt::test;

namespace {

std::vector<std::string> epoch_files(const std::filesystem::path& dir) {
  std::vector<std::string> files;
  for (const auto& name : file_names(dir)) {
    if (name.rfind("checkpoint_epoch_", 0) == 0) files.push_back(name);
  }
  return files;
}
}  // namespace

TEST_CASE("a saved payload loads back byte for byte with its row", "[store]") {
  TestDir dir("store");
  CheckpointStore store(dir.path());
  std::string bytes = zip_payload(1);
  auto record = save_bytes(store, CheckpointKind::epoch, 3, bytes, 0.5);
  CHECK(record.status == "committed");
  CHECK(record.file == "checkpoint_epoch_3.pth");
  CHECK(record.size == bytes.size());
  CHECK(record.hash == xxh3_of(dir / "checkpoint_epoch_3.pth"));
  CHECK(record.hash_algo == "xxh3-128");
  CHECK(record.metric == 0.5);
  CHECK(record.created_at.size() == 24);  // 2026-11-29T04:40:12.345Z
  auto loaded = store.load_latest();
  REQUIRE(loaded);
  CHECK(payload_text(*loaded) == bytes);
  CHECK(loaded->record.id == record.id);
}

TEST_CASE("rotation keeps exactly the max_to_keep highest epochs", "[store]") {
  TestDir dir("store");
  CheckpointStore store(dir.path(), StoreOptions{3});
  for (int epoch = 1; epoch <= 10; ++epoch) save_epoch(store, epoch, zip_payload(epoch));
  CHECK(epoch_files(dir.path()) ==
        std::vector<std::string>{"checkpoint_epoch_10.pth", "checkpoint_epoch_8.pth", "checkpoint_epoch_9.pth"});
  CHECK(store.live_checkpoints().size() == 3);
  CHECK(store.latest()->epoch == 10);
  auto events = index_events(dir.path());
  CHECK(std::count(events.begin(), events.end(), "rotated_out") == 7);
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a run restarted from an earlier state is resumed and kept; the abandoned run's epochs rotate out first",
          "[store][order]") {
  TestDir dir("store");
  {
    CheckpointStore store(dir.path(), StoreOptions{3});
    for (int epoch = 7; epoch <= 9; ++epoch) save_epoch(store, epoch, zip_payload(epoch));
    // The run is restarted from its epoch-2 state (e.g. a bad learning rate found):
    // its epoch 3 is the newest save. The guide's rule (highest epoch) would resume
    // epoch 9 and rotate the new epoch 3 out at once.
    auto restarted = save_epoch(store, 3, zip_payload(103));
    CHECK(std::filesystem::exists(dir / "checkpoint_epoch_3.pth"));
    CHECK(store.latest()->id == restarted.id);
    CHECK(epoch_files(dir.path()) ==
          std::vector<std::string>{"checkpoint_epoch_3.pth", "checkpoint_epoch_8.pth", "checkpoint_epoch_9.pth"});
    auto events = index_events(dir.path());
    CHECK(std::count(events.begin(), events.end(), "superseded") == 3);
    save_epoch(store, 4, zip_payload(104));
    CHECK(epoch_files(dir.path()) ==
          std::vector<std::string>{"checkpoint_epoch_3.pth", "checkpoint_epoch_4.pth", "checkpoint_epoch_9.pth"});
    events = index_events(dir.path());
    CHECK(std::count(events.begin(), events.end(), "superseded") == 3);  // epoch 4 continues 3's line
  }
  CheckpointStore reopened(dir.path(), StoreOptions{3});
  auto resumed = reopened.load_latest();
  REQUIRE(resumed);
  CHECK(resumed->record.epoch == 4);
  CHECK(payload_text(*resumed) == zip_payload(104));
  save_epoch(reopened, 5, zip_payload(105));
  CHECK(epoch_files(dir.path()) ==
        std::vector<std::string>{"checkpoint_epoch_3.pth", "checkpoint_epoch_4.pth", "checkpoint_epoch_5.pth"});
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("rotation keeps the most recently committed epochs; superseded ones go before older kept ones",
          "[store][order]") {
  TestDir dir("store");
  CheckpointStore store(dir.path(), StoreOptions{2});
  save_epochs(store, 5, 6);
  save_epoch(store, 2, zip_payload(2));  // saved last: kept, and 5 (superseded, older) goes
  CHECK(epoch_files(dir.path()) == std::vector<std::string>{"checkpoint_epoch_2.pth", "checkpoint_epoch_6.pth"});
  CHECK(store.latest()->epoch == 2);
  // gc applies the same order.
  CHECK(store.gc(1).front().epoch == 6);
  CHECK(epoch_files(dir.path()) == std::vector<std::string>{"checkpoint_epoch_2.pth"});
}

TEST_CASE("rotation deletes an abandoned run's epoch before an older epoch of the run that goes on",
          "[store][order]") {
  TestDir dir("store");
  CheckpointStore store(dir.path(), StoreOptions{2});
  save_epochs(store, 1, 2);
  save_epoch(store, 5, zip_payload(5));  // a run that went on to 5, abandoned ...
  save_epoch(store, 3, zip_payload(3));  // ... for one restarted from epoch 2's state
  // Newest 2 by commit alone would be {3, 5}; 5 is superseded by 3, so 2 (3's past) stays.
  CHECK(epoch_files(dir.path()) == std::vector<std::string>{"checkpoint_epoch_2.pth", "checkpoint_epoch_3.pth"});
  std::string five;
  for (const auto& event : CheckpointReader(dir.path()).events()) {
    if (event.event == "rotated_out" && event.detail.find("epoch 5") != std::string::npos) five = event.detail;
  }
  CHECK_THAT(five, Catch::Contains("beyond the newest 2 (superseded: a restarted run's)"));
}

TEST_CASE("an interrupt saved on a preemption warning, then more epochs: resume loads the newest epoch",
          "[store][order]") {
  TestDir dir("store");
  {
    CheckpointStore store(dir.path(), StoreOptions{3});
    for (int epoch = 1; epoch <= 4; ++epoch) save_epoch(store, epoch, zip_payload(epoch));
    save_bytes(store, CheckpointKind::interrupt, std::nullopt, zip_payload(100));  // SIGUSR1: preemption warned
    CHECK(store.latest()->kind == CheckpointKind::interrupt);  // the newest save, as the guide says
    for (int epoch = 5; epoch <= 9; ++epoch) save_epoch(store, epoch, zip_payload(epoch));  // ... but training went on
    // The interrupt can never be the resume point again: it is deleted like a consumed one.
    CHECK_FALSE(std::filesystem::exists(dir / "interrupt_checkpoint.pth"));
    CHECK(epoch_files(dir.path()) ==
          std::vector<std::string>{"checkpoint_epoch_7.pth", "checkpoint_epoch_8.pth", "checkpoint_epoch_9.pth"});
  }
  CheckpointStore reopened(dir.path(), StoreOptions{3});
  auto resumed = reopened.load_latest();
  REQUIRE(resumed);
  CHECK(resumed->record.epoch == 9);
  CHECK(payload_text(*resumed) == zip_payload(9));
  save_epoch(reopened, 10, zip_payload(10));  // the next save is kept, not rotated out
  CHECK(std::filesystem::exists(dir / "checkpoint_epoch_10.pth"));
  auto events = index_events(dir.path());
  CHECK(std::count(events.begin(), events.end(), "interrupt_obsolete") == 1);
}

TEST_CASE("max_to_keep 0 keeps every epoch; a negative value is refused", "[store]") {
  TestDir dir("store");
  {
    CheckpointStore store(dir.path(), StoreOptions{0});
    for (int epoch = 0; epoch < 12; ++epoch) save_epoch(store, epoch, zip_payload(epoch));
    CHECK(epoch_files(dir.path()).size() == 12);
  }
  try {
    CheckpointStore store(dir.path(), StoreOptions{-1});
    FAIL("accepted max_to_keep -1");
  } catch (const InvalidArgument& error) {
    CHECK_THAT(error.what(), Catch::Contains("max_to_keep") && Catch::Contains("-1"));
  }
}

TEST_CASE("saving an epoch that exists replaces it and retires the old row", "[store]") {
  TestDir dir("store");
  CheckpointStore store(dir.path());
  auto first = save_epoch(store, 4, zip_payload(1));
  auto second = save_epoch(store, 4, zip_payload(2));
  CHECK(read_bytes(dir / "checkpoint_epoch_4.pth") == zip_payload(2));
  auto rows = index_rows(dir.path());
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].status == "replaced");
  CHECK(rows[1].status == "committed");
  CHECK(store.latest()->id == second.id);
}

TEST_CASE("an interrupt checkpoint is preferred, consumed on load, and deleted by the next epoch save",
          "[store]") {
  TestDir dir("store");
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 7, zip_payload(7));
    save_bytes(store, CheckpointKind::interrupt, std::nullopt, zip_payload(100));
    CHECK(store.latest()->kind == CheckpointKind::interrupt);
    auto resumed = store.load_latest();
    REQUIRE(resumed);
    CHECK(payload_text(*resumed) == zip_payload(100));
    CHECK(resumed->record.status == "consumed");
  }
  // The resumed run died before saving: the interrupt is still what a resume loads.
  {
    CheckpointStore store(dir.path());
    auto again = store.load_latest();
    REQUIRE(again);
    CHECK(payload_text(*again) == zip_payload(100));
    CHECK(std::filesystem::exists(dir / "interrupt_checkpoint.pth"));
    // Newer progress commits: the consumed interrupt goes.
    save_epoch(store, 8, zip_payload(8));
    CHECK_FALSE(std::filesystem::exists(dir / "interrupt_checkpoint.pth"));
    CHECK(store.latest()->epoch == 8);
  }
  CHECK(invariant_violations(dir.path()).empty());
  auto events = index_events(dir.path());
  CHECK(std::count(events.begin(), events.end(), "resumed_from") == 2);
  CHECK(std::count(events.begin(), events.end(), "consumed_obsolete") == 1);
}

TEST_CASE("a best save does not consume progress: the interrupt stays the resume point", "[store]") {
  TestDir dir("store");
  CheckpointStore store(dir.path());
  save_epoch(store, 1, zip_payload(1));
  save_bytes(store, CheckpointKind::interrupt, std::nullopt, zip_payload(2));
  store.load_latest();
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(3), 0.9);
  CHECK(store.latest()->kind == CheckpointKind::interrupt);
}

TEST_CASE("the best model is never rotated, and a best save leaves the resume point alone", "[store][order]") {
  TestDir dir("store");
  CheckpointStore store(dir.path(), StoreOptions{1});
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(50), 0.5);
  for (int epoch = 1; epoch <= 4; ++epoch) save_epoch(store, epoch, zip_payload(epoch));
  CHECK(read_bytes(dir / "best_model.pth") == zip_payload(50));
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(51), 0.6);
  CHECK(store.latest()->epoch == 4);
  CHECK(payload_text(*store.load_best()) == zip_payload(51));
}

TEST_CASE("best lookup returns the latest best and its metric", "[store]") {
  TestDir dir("store");
  CheckpointStore store(dir.path());
  CHECK_FALSE(store.best());
  CHECK_FALSE(store.load_best());
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(1), 0.7);
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(2), 0.8);
  CHECK(store.best()->metric == 0.8);
  CHECK(payload_text(*store.load_best()) == zip_payload(2));
}

TEST_CASE("an empty directory has nothing to resume from", "[store]") {
  TestDir dir("store");
  CheckpointStore store(dir.path() / "new" / "nested");
  CHECK_FALSE(store.latest());
  CHECK_FALSE(store.load_latest());
}

TEST_CASE("bad arguments are refused before anything is written", "[store]") {
  TestDir dir("store");
  CheckpointStore store(dir.path());
  auto write = [](ByteSink&) {};
  CHECK_THROWS_AS(store.save(CheckpointKind::epoch, std::nullopt, {}, 0, write), InvalidArgument);
  CHECK_THROWS_AS(store.save(CheckpointKind::best, 3, {}, 0, write), InvalidArgument);
  CHECK_THROWS_WITH(store.save(CheckpointKind::epoch, -2, {}, 0, write), Catch::Contains("epoch must be >= 0"));
  CHECK(index_rows(dir.path()).empty());
}

TEST_CASE("a second writer on a directory is refused, naming the holder", "[store][lock]") {
  TestDir dir("store");
  auto first = std::make_unique<CheckpointStore>(dir.path());
  try {
    CheckpointStore second(dir.path());
    FAIL("two writers on one directory");
  } catch (const LockedError& error) {
    CHECK(error.code() == ErrorCode::locked);
    CHECK_THAT(error.what(), Catch::Contains(fmt::format("pid {}", ::getpid())));
  }
  first.reset();
  CHECK_NOTHROW(CheckpointStore(dir.path()));
}

TEST_CASE("the writer lock is released when its process is killed", "[store][lock]") {
  TestDir dir("store");
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child == 0) {
    CheckpointStore store(dir.path());
    char byte = 1;
    (void)!::write(ready[1], &byte, 1);
    ::pause();
    ::_exit(0);
  }
  char byte;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  CHECK_THROWS_WITH(CheckpointStore(dir.path()), Catch::Contains(fmt::format("pid {}", child)));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  CHECK_NOTHROW(CheckpointStore(dir.path()));
}

TEST_CASE("too little free space fails at once, names the file, and writes nothing", "[store][fault]") {
  TestDir dir("store");
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options = options_with(fs);
  CheckpointStore store(dir.path(), options);
  save_epoch(store, 1, zip_payload(1));
  fs->set_free_space(100000);
  std::string big = zip_payload(2, 500000);
  try {
    save_epoch(store, 2, big);
    FAIL("saved without space");
  } catch (const IoError& error) {
    CHECK(error.code() == ErrorCode::disk_full);
    CHECK_THAT(error.what(), Catch::Contains("checkpoint_epoch_2.pth") && Catch::Contains("free space"));
  }
  CHECK(file_names(dir.path()) == std::vector<std::string>{"checkpoint_epoch_1.pth", "index.lock", "index.sqlite",
                                                             "index.sqlite-shm", "index.sqlite-wal"});
  CHECK(index_rows(dir.path()).size() == 1);
}

TEST_CASE("a disk that fills up mid-write fails the save and keeps the previous checkpoint", "[store][fault]") {
  TestDir dir("store");
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options = options_with(fs);
  CheckpointStore store(dir.path(), options);
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(1), 0.1);
  fs->fail_nth(Op::write, 1, ENOSPC);
  try {
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(2), 0.2);
    FAIL("a failed write was not reported");
  } catch (const IoError& error) {
    CHECK(error.code() == ErrorCode::disk_full);
    CHECK_THAT(error.what(), Catch::Contains("best_model.pth") && Catch::Contains("No space left on device"));
  }
  CHECK(read_bytes(dir / "best_model.pth") == zip_payload(1));
  CHECK(store.best()->metric == 0.1);
  CHECK(payload_text(*store.load_best()) == zip_payload(1));
}

TEST_CASE("each failing file operation of a save leaves the old checkpoint or the new one, never neither",
          "[store][fault]") {
  for (Op op : {Op::create, Op::write, Op::sync, Op::rename, Op::sync_dir, Op::remove}) {
    for (int error : {EIO, ENOSPC, EACCES}) {
      DYNAMIC_SECTION("op " << static_cast<int>(op) << " errno " << error) {
        TestDir dir("fault");
        auto fs = std::make_shared<FaultFileSystem>();
        StoreOptions options = options_with(fs, 1);
        {
          CheckpointStore store(dir.path(), options);
          save_epoch(store, 1, zip_payload(1));
          fs->fail_nth(op, 1, error);
          bool failed = false;
          try {
            save_epoch(store, 2, zip_payload(2));
          } catch (const IoError& caught) {
            failed = true;
            CHECK(caught.os_error() == error);
          }
          // Only the rotation's unlink comes after the commit: the save itself succeeded.
          CHECK(failed == (op != Op::remove));
          if (op == Op::sync_dir) {
            // Whether the rename is durable cannot be known in this process: refused until reopened.
            CHECK_THROWS_MATCHES(store.load_latest(), IoError,
                                 Catch::Predicate<IoError>([](const IoError& e) { return e.code() == ErrorCode::needs_recovery; }));
          } else {
            auto latest = store.load_latest();
            REQUIRE(latest);
            CHECK(payload_text(*latest) == zip_payload(latest->record.epoch == 2 ? 2 : 1));
          }
        }
        fs->clear_faults();
        {
          CheckpointStore reopened(dir.path(), options);
          auto latest = reopened.load_latest();
          REQUIRE(latest);
          CHECK(payload_text(*latest) == zip_payload(latest->record.epoch == 2 ? 2 : 1));
        }
        CHECK(invariant_violations(dir.path()).empty());
      }
    }
  }
}

TEST_CASE("a payload writer that throws abandons the save cleanly", "[store]") {
  TestDir dir("store");
  CheckpointStore store(dir.path());
  save_epoch(store, 1, zip_payload(1));
  CHECK_THROWS_WITH(store.save(CheckpointKind::epoch, 2, {}, 10,
                               [](ByteSink& sink) {
                                 sink.write("abc", 3);
                                 throw std::runtime_error("serializer failed");
                               }),
                    "serializer failed");
  CHECK(epoch_files(dir.path()) == std::vector<std::string>{"checkpoint_epoch_1.pth"});
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("the SHA-256 option records sha256 hashes and verifies them on load", "[store][hash]") {
  TestDir dir("store");
  StoreOptions options;
  options.hash_algorithm = HashAlgorithm::sha256;
  CheckpointStore store(dir.path(), options);
  auto record = save_epoch(store, 1, zip_payload(1));
  CHECK(record.hash_algo == "sha256");
  CHECK(record.hash.size() == 64);
  CHECK(store.load_latest());
  // One bit of the newest file's stored data flipped, size unchanged: only the hash can
  // tell. The load falls back to epoch 1 and quarantines the damaged file.
  save_epoch(store, 2, zip_payload(2));
  flip_byte(dir / "checkpoint_epoch_2.pth");
  auto loaded = store.load_latest();
  REQUIRE(loaded);
  CHECK(loaded->record.epoch == 1);
  CHECK(std::filesystem::exists(dir / "quarantine"));
}

namespace {

// Another connection to the index makes the store's commits fail, as a full disk, an
// I/O error or a busy database would: a trigger refuses to mark any row committed.
void fail_commits(const std::filesystem::path& dir, bool on) {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READWRITE, 10000);
  if (on) {
    db.exec("CREATE TRIGGER test_fail_commit BEFORE UPDATE OF status ON checkpoints "
            "WHEN NEW.status = 'committed' BEGIN SELECT RAISE(ABORT, 'injected: database or disk is full'); END");
  } else {
    db.exec("DROP TRIGGER test_fail_commit");
  }
}

bool is_needs_recovery(const std::function<void()>& call) {
  try {
    call();
  } catch (const IoError& error) {
    return error.code() == ErrorCode::needs_recovery;
  }
  return false;
}

}  // namespace

TEST_CASE("a commit that fails after the rename is retried by the next call: the new checkpoint is not lost",
          "[store][fault][no-return]") {
  TestDir dir("store");
  CheckpointStore store(dir.path());
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(1), 0.1);
  fail_commits(dir.path(), true);
  CHECK_THROWS_WITH(save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(2), 0.2),
                    Catch::Contains("injected"));
  // The name holds the new bytes; their row is pending. The store must not call them
  // corrupt: it refuses work while the commit still fails ...
  CHECK(read_bytes(dir / "best_model.pth") == zip_payload(2));
  try {
    store.load_best();
    FAIL("a load went ahead with an unresolved save");
  } catch (const IoError& error) {
    CHECK_THAT(error.what(), Catch::Contains("best_model.pth") && Catch::Contains("injected"));
  }
  CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
  // ... and resolves it first once the commit can succeed.
  fail_commits(dir.path(), false);
  auto best = store.load_best();
  REQUIRE(best);
  CHECK(payload_text(*best) == zip_payload(2));
  CHECK(best->record.metric == 0.2);
  CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a commit that fails after the rename is rolled forward by the next open", "[store][fault][no-return]") {
  TestDir dir("store");
  {
    CheckpointStore store(dir.path());
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(1), 0.1);
    fail_commits(dir.path(), true);
    CHECK_THROWS(save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(2), 0.2));
    CHECK_THROWS(store.load_best());
    fail_commits(dir.path(), false);
  }
  CheckpointStore reopened(dir.path());
  auto best = reopened.load_best();
  REQUIRE(best);
  CHECK(payload_text(*best) == zip_payload(2));
  CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
}

TEST_CASE("a failed directory fsync commits nothing, deletes nothing, and only a reopen decides the save",
          "[store][fault][no-return]") {
  TestDir dir("store");
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options = options_with(fs, 1);
  {
    CheckpointStore store(dir.path(), options);
    save_epoch(store, 1, zip_payload(1));
    fs->fail_nth(Op::sync_dir, 1, EIO);
    try {
      save_epoch(store, 2, zip_payload(2));
      FAIL("a failed directory fsync was not reported");
    } catch (const IoError& error) {
      CHECK(error.os_error() == EIO);
      CHECK_THAT(error.what(), Catch::Contains("Input/output error"));
    }
    // Epoch 1 is still committed and on disk (rotation did not run); epoch 2 is pending.
    CHECK(read_bytes(dir / "checkpoint_epoch_1.pth") == zip_payload(1));
    for (const auto& row : index_rows(dir.path())) {
      if (row.file == "checkpoint_epoch_1.pth") CHECK(row.status == "committed");
      if (row.file == "checkpoint_epoch_2.pth") CHECK(row.status == "pending");
    }
    // A later fsync that succeeds would not prove the rename durable: the store refuses
    // every call, even once the file system works again, until it is reopened.
    CHECK(is_needs_recovery([&] { store.load_latest(); }));
    CHECK(is_needs_recovery([&] { save_epoch(store, 3, zip_payload(3)); }));
    CHECK(is_needs_recovery([&] { store.gc(); }));
    CHECK(read_bytes(dir / "checkpoint_epoch_1.pth") == zip_payload(1));
  }
  CheckpointStore reopened(dir.path(), options);
  CHECK(reopened.last_recovery().rolled_forward == 1);
  auto latest = reopened.load_latest();
  REQUIRE(latest);
  CHECK(payload_text(*latest) == zip_payload(2));
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a rename that fails without happening is rolled back at once; the store goes on", "[store][fault][no-return]") {
  TestDir dir("store");
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options = options_with(fs);
  CheckpointStore store(dir.path(), options);
  save_epoch(store, 1, zip_payload(1));
  fs->fail_nth(Op::rename, 1, EIO);
  CHECK_THROWS_AS(save_epoch(store, 2, zip_payload(2)), IoError);
  auto latest = store.load_latest();
  REQUIRE(latest);
  CHECK(payload_text(*latest) == zip_payload(1));
  save_epoch(store, 3, zip_payload(3));
  CHECK(store.latest()->epoch == 3);
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a rename that fails after happening is found by content, synced and committed", "[store][fault][no-return]") {
  TestDir dir("store");
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options = options_with(fs, 1);
  {
    CheckpointStore store(dir.path(), options);
    save_epoch(store, 1, zip_payload(1));
    fs->fail_nth_after_doing(Op::rename, 1, EIO);
    const int syncs_before = fs->count(Op::sync_dir);
    // The name holds the new bytes: the store syncs the directory (the rename's own sync
    // never ran) and commits, so the save is acknowledged after all.
    auto record = save_epoch(store, 2, zip_payload(2));
    CHECK(record.status == "committed");
    CHECK(fs->count(Op::sync_dir) == syncs_before + 1);
    CHECK(payload_text(*store.load_latest()) == zip_payload(2));
    CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_1.pth"));  // rotated as usual
  }
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a read error on the newest checkpoint is not corruption: the file stays and the load falls back",
          "[store][fault]") {
  TestDir dir("store");
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options = options_with(fs);
  CheckpointStore store(dir.path(), options);
  save_epochs(store, 1, 2);
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(3), 0.3);
  fs->fail_nth(Op::read, 1, EIO);
  auto latest = store.load_latest();
  REQUIRE(latest);
  CHECK(payload_text(*latest) == zip_payload(1));
  CHECK(read_bytes(dir / "checkpoint_epoch_2.pth") == zip_payload(2));
  CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
  CHECK(store.latest()->epoch == 2);  // still committed: the next load reads it
  CHECK(payload_text(*store.load_latest()) == zip_payload(2));

  fs->fail_nth(Op::read, 1, EIO);
  try {
    store.load_best();
    FAIL("a read error on the best model was not reported");
  } catch (const IoError& error) {
    CHECK(error.os_error() == EIO);
    CHECK_THAT(error.what(), Catch::Contains("best_model.pth") && Catch::Contains("Input/output error"));
  }
  CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
  CHECK(payload_text(*store.load_best()) == zip_payload(3));
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a load never quarantines a file that holds the bytes of a pending row", "[store][fault][no-return]") {
  TestDir dir("store");
  {
    CheckpointStore store(dir.path());
    save_epochs(store, 1, 2);
    // What a save cut short after its rename leaves, seen by a store that did not make it.
    write_bytes(dir / "checkpoint_epoch_2.pth", zip_payload(22));
    SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READWRITE, 10000);
    db.exec(fmt::format("INSERT INTO checkpoints (kind, epoch, file, size, hash, hash_algo, status) VALUES "
                        "('epoch', 2, 'checkpoint_epoch_2.pth', {}, '{}', 'xxh3-128', 'pending')",
                        zip_payload(22).size(), xxh3_of(dir / "checkpoint_epoch_2.pth")));
    auto latest = store.load_latest();
    REQUIRE(latest);
    CHECK(latest->record.epoch == 1);
    CHECK(read_bytes(dir / "checkpoint_epoch_2.pth") == zip_payload(22));
    CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
  }
  CheckpointStore reopened(dir.path());
  CHECK(payload_text(*reopened.load_latest()) == zip_payload(22));
}

TEST_CASE("a decoder that fails on damaged bytes does not stop the hash from deciding", "[store][corruption]") {
  // Whatever the decoder throws on bytes that are not what was committed (a format
  // error, or any other error from deep in a payload), the hash decides: quarantine and
  // fall back.
  for (bool format_error : {true, false}) {
    TestDir dir("store");
    CheckpointStore store(dir.path());
    save_epochs(store, 1, 2);
    std::string damaged = zip_payload(2);
    damaged[0] ^= 0x01;  // the local header's signature: a zip reader gives up at once
    write_bytes(dir / "checkpoint_epoch_2.pth", damaged);
    int runs = 0;
    std::optional<CheckpointRecord> loaded;
    CHECK_NOTHROW(loaded = store.load_latest([&](PayloadSource& source, const CheckpointRecord&) {
      ++runs;
      char magic[2];
      source.read_at(0, magic, 2);
      if (magic[0] != 'P' || magic[1] != 'K') {
        if (format_error) throw FormatError(ErrorCode::format, "not a zip archive");
        throw std::runtime_error("decoder: unexpected value");
      }
    }));
    REQUIRE(loaded);
    CHECK(loaded->epoch == 1);
    CHECK(runs == 2);
    CHECK(std::filesystem::exists(dir / "quarantine"));
    CHECK(invariant_violations(dir.path()).empty());
  }
}

TEST_CASE("an index deleted while the store runs is noticed at the next save and recreated, history kept",
          "[store][fault]") {
  TestDir dir("store");
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 1, zip_payload(1));
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(2), 0.75);
    for (const char* name : {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"}) std::filesystem::remove(dir / name);
    save_epoch(store, 2, zip_payload(3));
    CHECK(std::filesystem::exists(dir / "index.sqlite"));
    CHECK(store.latest()->epoch == 2);
  }
  CheckpointStore reopened(dir.path());
  CHECK_FALSE(reopened.last_recovery().anything_done());
  CHECK(reopened.best()->metric == 0.75);  // an adopted file would have no metric
  CHECK(payload_text(*reopened.load_latest()) == zip_payload(3));
  auto events = index_events(dir.path());
  CHECK(std::count(events.begin(), events.end(), "index_recreated") == 1);
  CHECK(std::count(events.begin(), events.end(), "new_best") == 1);
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a copy of the index left by a crash while it was being recreated is taken at the next open",
          "[store][fault]") {
  TestDir dir("store");
  {
    CheckpointStore store(dir.path());
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(2), 0.75);
  }
  // What ensure_index_present leaves when the process dies after syncing its copy and
  // before the copy takes the index's name: a copy, and no index.
  std::filesystem::rename(dir / "index.sqlite", dir / "index.sqlite.recreated");
  CheckpointStore reopened(dir.path());
  CHECK_FALSE(std::filesystem::exists(dir / "index.sqlite.recreated"));
  CHECK(reopened.last_recovery().adopted == 0);
  CHECK(reopened.best()->metric == 0.75);
}

TEST_CASE("a file recovery cannot read is left undecided; the rest of the directory opens", "[store][fault][recovery]") {
  TestDir dir("store");
  { CheckpointStore store(dir.path()); save_epoch(store, 1, zip_payload(1)); }
  // A save cut short after its rename: recovery must read the file to decide it.
  REQUIRE(run_in_child([&] {
            StoreOptions options;
            store::test_hooks(options).on_step = [](std::string_view step) {
              if (step == "renamed") ::_exit(42);
            };
            CheckpointStore store(dir.path(), options);
            save_epoch(store, 2, zip_payload(2));
          }) == 42);
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options = options_with(fs);
  fs->fail_nth(Op::read, 1, EIO);
  {
    CheckpointStore store(dir.path(), options);  // does not fail the open
    CHECK(store.latest()->epoch == 1);
    CHECK(read_bytes(dir / "checkpoint_epoch_2.pth") == zip_payload(2));
    CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
  }
  CheckpointStore healed(dir.path());
  CHECK(healed.last_recovery().rolled_forward == 1);
  CHECK(payload_text(*healed.load_latest()) == zip_payload(2));
}

TEST_CASE("files adopted into a rebuilt index keep the order they were written in", "[store][order][recovery]") {
  TestDir dir("store");
  {
    CheckpointStore store(dir.path(), StoreOptions{0});
    for (int epoch : {7, 8, 9, 3, 4}) save_epoch(store, epoch, zip_payload(epoch));
  }
  // Written a minute apart, in the order saved (the coarse file clock may tie quick saves).
  auto when = std::filesystem::file_time_type::clock::now() - std::chrono::hours(1);
  for (int epoch : {7, 8, 9, 3, 4}) {
    when += std::chrono::minutes(1);
    std::filesystem::last_write_time(dir / ("checkpoint_epoch_" + std::to_string(epoch) + ".pth"), when);
  }
  for (const char* name : {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"}) std::filesystem::remove(dir / name);
  CheckpointStore rebuilt(dir.path(), StoreOptions{0});
  CHECK(rebuilt.last_recovery().adopted == 5);
  CHECK(rebuilt.latest()->epoch == 4);  // by epoch number it would be 9, of the abandoned run
}

TEST_CASE("test hooks set on a copy of the options leave the original's alone", "[store]") {
  TestDir dir("hooks");
  StoreOptions plain;
  std::vector<std::string> steps;
  StoreOptions hooked = plain;
  store::test_hooks(hooked).on_step = [&](std::string_view step) { steps.emplace_back(step); };
  StoreOptions copy = hooked;
  int copy_steps = 0;
  store::test_hooks(copy).on_step = [&](std::string_view) { ++copy_steps; };
  CHECK(plain.file_system == nullptr);
  {
    CheckpointStore store(dir.path(), hooked);
    save_epoch(store, 1, zip_payload(1));
  }
  CHECK(std::find(steps.begin(), steps.end(), "renamed") != steps.end());
  CHECK(copy_steps == 0);
  steps.clear();
  {
    CheckpointStore store(dir.path(), plain);
    save_epoch(store, 2, zip_payload(2));
  }
  CHECK(steps.empty());
}

namespace {
// Whether `file` was moved into dir/quarantine/ (as <file>.<UTC stamp>-<pid>).
bool quarantined(const std::filesystem::path& dir, const std::string& file) {
  if (std::filesystem::exists(dir / file) || !std::filesystem::exists(dir / "quarantine")) return false;
  for (const auto& name : file_names(dir / "quarantine")) {
    if (name.rfind(file + ".", 0) == 0) return true;
  }
  return false;
}
}  // namespace

TEST_CASE("verify, then apply: apply runs once, on the verified file only, after its hash matched",
          "[store][corruption][restore]") {
  TestDir dir("store");
  CheckpointStore store(dir.path());
  save_epochs(store, 1, 3);
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(7), 0.7);
  // One bit of the newest epoch's data flipped: the verifier sees both candidates, the
  // applier only the one whose hash matched, and sees all of its bytes.
  flip_byte(dir / "checkpoint_epoch_3.pth");
  std::vector<std::string> verified, applied;
  std::string applied_bytes;
  auto verify = [&](PayloadSource&, const CheckpointRecord& record) { verified.push_back(record.file); };
  auto apply = [&](PayloadSource& source, const CheckpointRecord& record) {
    applied.push_back(record.file);
    applied_bytes.resize(source.size());
    source.read_at(0, applied_bytes.data(), applied_bytes.size());
  };
  auto loaded = store.load_latest(verify, apply);
  REQUIRE(loaded);
  CHECK(loaded->epoch == 2);
  CHECK(verified == std::vector<std::string>{"checkpoint_epoch_3.pth", "checkpoint_epoch_2.pth"});
  CHECK(applied == std::vector<std::string>{"checkpoint_epoch_2.pth"});
  CHECK(applied_bytes == zip_payload(2));
  CHECK(quarantined(dir.path(), "checkpoint_epoch_3.pth"));

  verified.clear();
  applied.clear();
  REQUIRE(store.load_best(verify, apply));
  CHECK(applied == std::vector<std::string>{"best_model.pth"});
  CHECK(applied_bytes == zip_payload(7));
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("verify, then apply: an applier that fails leaves the file, its row and the interrupt checkpoint as they were",
          "[store][fault][restore]") {
  TestDir dir("store");
  CheckpointStore store(dir.path());
  save_epochs(store, 1, 1);
  save_bytes(store, CheckpointKind::interrupt, std::nullopt, zip_payload(9));
  auto noop = [](PayloadSource&, const CheckpointRecord&) {};
  auto failing = [](PayloadSource&, const CheckpointRecord& record) {
    throw IoError(ErrorCode::io, record.file + ": injected failure while applying");
  };
  CHECK_THROWS_WITH(store.load_latest(noop, failing), Catch::Contains("interrupt_checkpoint.pth"));
  CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
  // Not consumed, no resume recorded: the next load resumes from it again.
  CHECK(store.latest()->status == "committed");
  auto events = index_events(dir.path());
  CHECK(std::count(events.begin(), events.end(), "resumed_from") == 0);
  auto loaded = store.load_latest(noop, noop);
  REQUIRE(loaded);
  CHECK(loaded->kind == CheckpointKind::interrupt);
  CHECK(store.latest()->status == "consumed");
  CHECK(invariant_violations(dir.path()).empty());
}
