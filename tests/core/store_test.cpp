#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "ckpt/errors.hpp"
#include "ckpt/store.hpp"
#include "support/fault_file_system.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {
std::string payload_text(const VerifiedPayload& payload) { return std::string(payload.bytes.begin(), payload.bytes.end()); }

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

TEST_CASE("rotation keeps the highest epochs, not the newest saves", "[store]") {
  TestDir dir("store");
  CheckpointStore store(dir.path(), StoreOptions{2});
  save_epoch(store, 5, zip_payload(5));
  save_epoch(store, 6, zip_payload(6));
  save_epoch(store, 2, zip_payload(2));  // an older epoch saved late is the one rotated out
  CHECK(epoch_files(dir.path()) == std::vector<std::string>{"checkpoint_epoch_5.pth", "checkpoint_epoch_6.pth"});
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

TEST_CASE("an unconsumed interrupt checkpoint survives epoch saves (nobody resumed from it)", "[store]") {
  TestDir dir("store");
  CheckpointStore store(dir.path());
  save_bytes(store, CheckpointKind::interrupt, std::nullopt, zip_payload(2));
  save_epoch(store, 1, zip_payload(1));
  CHECK(store.latest()->kind == CheckpointKind::interrupt);
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
  StoreOptions options;
  options.file_system = fs;
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
  StoreOptions options;
  options.file_system = fs;
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
        StoreOptions options;
        options.max_to_keep = 1;
        options.file_system = fs;
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
          auto latest = store.load_latest();
          REQUIRE(latest);
          CHECK(payload_text(*latest) == zip_payload(latest->record.epoch == 2 ? 2 : 1));
        }
        fs->clear_faults();
        { CheckpointStore reopened(dir.path(), options); }
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
}
