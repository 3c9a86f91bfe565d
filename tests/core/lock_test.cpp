// The writer lock: it cannot be bypassed by deleting index.lock or by renaming the
// directory away and creating another at its path, a child forked without
// exec does not keep it, it excludes older ckpt versions that lock only index.lock, and a
// network file system is refused unless allowed (then the index runs without shared
// memory).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include <cerrno>
#include <map>
#include <sstream>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "support/captured_log.hpp"
#include "support/fault_file_system.hpp"
#include "ckpt/file_system.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

std::string pid_text(pid_t pid) { return fmt::format("pid {} ", pid); }

// The real file system, reporting another type (a network mount, say).
class TypedFileSystem final : public FileSystemWrapper {
 public:
  explicit TypedFileSystem(FileSystemType type) : type_(std::move(type)) {}
  FileSystemType file_system_type(const std::filesystem::path&) override { return type_; }

 private:
  FileSystemType type_;
};

StoreOptions on_nfs(bool allowed) {
  StoreOptions options;
  options.file_system = std::make_shared<TypedFileSystem>(FileSystemType{"nfs", true});
  options.allow_network_file_system = allowed;
  return options;
}

// A child that does nothing but wait (no exec), as a data-loader worker would.
struct SleepingChild {
  pid_t pid = -1;
  int release[2] = {-1, -1};

  SleepingChild() {
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(release) == 0);
    std::fflush(nullptr);
    pid = ::fork();
    if (pid == 0) {
      ::close(release[1]);
      char byte = 1;
      (void)!::write(ready[1], &byte, 1);
      (void)!::read(release[0], &byte, 1);  // until the parent lets go
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(release[0]);
    char byte;
    REQUIRE(::read(ready[0], &byte, 1) == 1);
    ::close(ready[0]);
  }
  bool alive() const { return ::kill(pid, 0) == 0; }
  ~SleepingChild() {
    ::close(release[1]);
    ::waitpid(pid, nullptr, 0);
  }
};

}  // namespace

TEST_CASE("deleting index.lock does not let a second writer in; the refusal still names the holder", "[store][lock]") {
  TestDir dir("lock");
  auto trainer = std::make_unique<CheckpointStore>(dir.path());
  save_epoch(*trainer, 1, zip_payload(1));
  std::filesystem::remove(dir / "index.lock");
  try {
    CheckpointStore second(dir.path());
    FAIL("a second writer got in after index.lock was deleted");
  } catch (const LockedError& error) {
    CHECK(error.code() == ErrorCode::locked);
    CHECK_THAT(error.what(), Catch::Contains(pid_text(::getpid())));
  }
  CHECK_FALSE(std::filesystem::exists(dir / "index.lock"));  // a refused writer creates nothing
  trainer.reset();

  // The next writer recreates it, naming itself.
  CheckpointStore next(dir.path());
  CHECK_THAT(read_bytes(dir / "index.lock"), Catch::StartsWith(pid_text(::getpid())));
  CHECK(next.latest()->epoch == 1);
}

TEST_CASE("ckpt gc is refused while a trainer holds the lock, also after index.lock was deleted", "[cli][lock]") {
  TestDir dir("lock");
  auto trainer = std::make_unique<CheckpointStore>(dir.path(), StoreOptions{5});
  for (int epoch = 1; epoch <= 3; ++epoch) save_epoch(*trainer, epoch, zip_payload(epoch));
  std::filesystem::remove(dir / "index.lock");
  auto gc = run_command(std::string(CKPT_CLI) + " gc --keep 1 " + shell_quote(dir.path().string()) + " 2>&1");
  CHECK(gc.exit_code == 3);
  CHECK_THAT(gc.output, Catch::Contains("locked") && Catch::Contains(pid_text(::getpid())));
  for (int epoch = 1; epoch <= 3; ++epoch) CHECK(std::filesystem::exists(dir / fmt::format("checkpoint_epoch_{}.pth", epoch)));
  CHECK(index_rows(dir.path()).size() == 3);
  trainer.reset();
  CHECK(run_command(std::string(CKPT_CLI) + " gc --keep 1 " + shell_quote(dir.path().string()) + " 2>&1").exit_code == 0);
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_2.pth"));
}

TEST_CASE("a child forked without exec neither keeps the writer lock nor is named as its holder", "[store][lock]") {
  TestDir dir("lock");
  auto parent = std::make_unique<CheckpointStore>(dir.path());
  SleepingChild child;

  // While the parent holds it, the holder is the parent, with or without index.lock
  // (then the kernel's lock table names the pid).
  CHECK_THROWS_WITH(CheckpointStore(dir.path()), Catch::Contains(pid_text(::getpid())) &&
                                                     !Catch::Contains(pid_text(child.pid)));
  std::filesystem::remove(dir / "index.lock");
  CHECK_THROWS_WITH(CheckpointStore(dir.path()), Catch::Contains(pid_text(::getpid())) &&
                                                     !Catch::Contains(pid_text(child.pid)));

  // Once the parent lets go, the lock is free although the child still lives.
  parent.reset();
  REQUIRE(child.alive());
  CheckpointStore next(dir.path());
  save_epoch(next, 1, zip_payload(1));
  CHECK_THAT(read_bytes(dir / "index.lock"), Catch::StartsWith(pid_text(::getpid())));
  REQUIRE(child.alive());
}

TEST_CASE("the writer lock excludes older ckpt versions, which flock index.lock only", "[store][lock]") {
  TestDir dir("lock");
  { CheckpointStore create(dir.path()); }
  SECTION("an older writer holds index.lock") {
    int old_writer = ::open((dir / "index.lock").c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(old_writer >= 0);
    REQUIRE(::flock(old_writer, LOCK_EX | LOCK_NB) == 0);
    CHECK_THROWS_AS(CheckpointStore(dir.path()), LockedError);
    ::close(old_writer);
    CHECK_NOTHROW(CheckpointStore(dir.path()));
  }
  SECTION("this version holds it") {
    CheckpointStore store(dir.path());
    int old_writer = ::open((dir / "index.lock").c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(old_writer >= 0);
    CHECK(::flock(old_writer, LOCK_EX | LOCK_NB) != 0);
    CHECK(errno == EWOULDBLOCK);
    ::close(old_writer);
  }
}

TEST_CASE("a store refuses a network file system by default, naming the setting", "[store][lock]") {
  TestDir dir("lock");
  try {
    CheckpointStore store(dir.path(), on_nfs(false));
    FAIL("opened a store on a network file system");
  } catch (const IoError& error) {
    CHECK_THAT(error.what(), Catch::Contains("network file system (nfs)") &&
                                 Catch::Contains("StoreOptions::allow_network_file_system"));
  }
  CHECK(file_names(dir.path()).empty());  // neither the lock nor the index was created
}

TEST_CASE("allowed on a network file system, a store warns and keeps the index out of shared memory", "[store][lock]") {
  TestDir dir("lock");
  CapturedLog log;
  const IndexJournal journal = GENERATE(IndexJournal::automatic, IndexJournal::wal);
  INFO("index_journal " << (journal == IndexJournal::wal ? "wal" : "automatic"));
  {
    StoreOptions options = on_nfs(true);
    options.index_journal = journal;
    CheckpointStore store(dir.path(), options);
    save_epoch(store, 1, zip_payload(1));
    CHECK_THAT(log.text(), Catch::Contains("[warning]") && Catch::Contains("network file system (nfs)") &&
                               Catch::Contains(journal == IndexJournal::wal ? "with WAL" : "with a rollback journal"));
    // automatic: a rollback journal (database header version 1), no -wal; wal:
    // locking_mode=EXCLUSIVE before WAL. Either way no -shm file, and no reader beside
    // the writer.
    auto files = file_names(dir.path());
    CHECK(std::find(files.begin(), files.end(), "index.sqlite-shm") == files.end());
    CHECK((std::find(files.begin(), files.end(), "index.sqlite-wal") == files.end()) ==
          (journal == IndexJournal::automatic));
    CHECK(read_bytes(dir / "index.sqlite").at(18) == (journal == IndexJournal::wal ? 2 : 1));
    SQLite::Database reader((dir / "index.sqlite").string(), SQLite::OPEN_READONLY, /*busyTimeoutMs=*/100);
    CHECK_THROWS_AS(reader.execAndGet("SELECT count(*) FROM checkpoints"), SQLite::Exception);
  }
  CHECK(invariant_violations(dir.path()).empty());
  CheckpointStore local(dir.path());
  CHECK(local.load_latest()->record.epoch == 1);
}

TEST_CASE("a reader beside a rollback-journal writer on a network file system is refused, told the writer holds "
          "the index exclusively",
          "[store][lock][journal]") {
  TestDir dir("lock");
  CheckpointStore store(dir.path(), on_nfs(true));
  save_epoch(store, 1, zip_payload(1));
  // SQLite's busy timeout (10 s) runs out: the exclusive lock is held until the store closes.
  try {
    CheckpointReader reader(dir.path());
    (void)reader.checkpoints();
    FAIL("read beside an exclusive writer");
  } catch (const IndexError& error) {
    CHECK_THAT(error.what(), Catch::Contains((dir / "index.sqlite").string()) &&
                                 Catch::Contains("database is locked") && Catch::Contains("holds it exclusively"));
  }
}

TEST_CASE("statfs names the test directory's file system and calls it local", "[lock]") {
  TestDir dir("lock");
  FileSystemType type = FileSystem::posix()->file_system_type(dir.path());
  INFO("test directory is on " << type.name);
  CHECK_FALSE(type.network);
  CHECK_FALSE(type.name.empty());
  // A type without a name here is shown by its magic number; procfs is one.
  CHECK(FileSystem::posix()->file_system_type("/proc").name == "0x9fa0");
  // The test wrappers ask the real file system.
  CHECK(FaultFileSystem().file_system_type(dir.path()).name == type.name);
  CHECK_THROWS_AS(FileSystem::posix()->file_system_type(dir / "missing"), IoError);
}

namespace {

// Every file of `dir` with its bytes.
std::map<std::string, std::string> snapshot(const std::filesystem::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& name : file_names(dir)) files[name] = read_bytes(dir / name);
  return files;
}

std::vector<std::string> epochs_in_index(const std::filesystem::path& dir) {
  std::vector<std::string> epochs;
  for (const auto& row : index_rows(dir)) epochs.push_back(row.file + " " + row.status);
  return epochs;
}

}  // namespace

TEST_CASE("a store whose directory was renamed away and replaced refuses to write; the new writer's files are untouched",
          "[store][lock]") {
  TestDir root("lock");
  const std::filesystem::path dir = root / "ckpts";
  const std::filesystem::path old_dir = root / "ckpts.old";
  auto a = std::make_unique<CheckpointStore>(dir);
  const CheckpointRecord a_first = save_epoch(*a, 1, zip_payload(1));

  // mv ckpts ckpts.old && mkdir ckpts, then a second trainer there: it gets the lock of
  // the new directory.
  std::filesystem::rename(dir, old_dir);
  std::filesystem::create_directory(dir);
  auto b = std::make_unique<CheckpointStore>(dir);
  save_epoch(*b, 5, zip_payload(5));
  const auto b_files = snapshot(dir);
  const auto a_files = snapshot(old_dir);

  try {
    save_epoch(*a, 2, zip_payload(2));
    FAIL("the store wrote into a directory it no longer locks");
  } catch (const LockedError& error) {
    CHECK(error.code() == ErrorCode::locked);
    CHECK_THAT(error.what(), Catch::Contains(dir.string()) && Catch::Contains("moved or replaced") &&
                                 Catch::Contains("reopen the store"));
  }
  CHECK_THROWS_AS(a->gc(0), LockedError);
  CHECK_THROWS_AS(a->gc(1), LockedError);
  CHECK_THROWS_AS(a->remove(a_first.id), LockedError);
  CHECK(snapshot(dir) == b_files);
  CHECK(snapshot(old_dir) == a_files);

  // B goes on as if A did not exist.
  save_epoch(*b, 6, zip_payload(6));
  b.reset();
  a.reset();
  CHECK(epochs_in_index(dir) == std::vector<std::string>{"checkpoint_epoch_5.pth committed",
                                                          "checkpoint_epoch_6.pth committed"});
  CHECK(invariant_violations(dir).empty());
  CHECK(epochs_in_index(old_dir) == std::vector<std::string>{"checkpoint_epoch_1.pth committed"});
  CHECK(invariant_violations(old_dir).empty());
}

TEST_CASE("a store whose directory was renamed away (nothing at its path) refuses to write", "[store][lock]") {
  TestDir root("lock");
  const std::filesystem::path dir = root / "ckpts";
  CheckpointStore store(dir);
  save_epoch(store, 1, zip_payload(1));
  std::filesystem::rename(dir, root / "moved");
  CHECK_THROWS_AS(save_epoch(store, 2, zip_payload(2)), LockedError);
  CHECK_FALSE(std::filesystem::exists(dir));  // nothing was recreated at the old path
}
