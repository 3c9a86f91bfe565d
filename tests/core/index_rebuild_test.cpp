// CheckpointStore::check_index and rebuild_index: the index rebuilt from the checkpoint
// files, with the old one kept aside, under the writer lock, through the FileSystem seam.
// A failed rename or directory fsync leaves a usable directory and an error naming the
// file; a power loss at any step of the rebuild, or just after it returned, leaves the
// old index (under its name or aside) and a directory a rebuild makes whole again.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "store/test_hooks.hpp"  // on_step, sqlite_vfs: test hooks
#include "support/fault_file_system.hpp"
#include "support/power_loss.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

const std::string kGarbage(8192, 'x');  // what the damaged index holds
constexpr std::size_t kFiles = 3;       // checkpoint files the rebuild adopts

// `dir` holds two epoch checkpoints and a best model, and an index that is not a database.
void prepare_damaged(const std::filesystem::path& dir) {
  std::filesystem::remove_all(dir);
  {
    CheckpointStore store(dir);
    save_epochs(store, 1, 2);
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(3), 0.5);
  }
  for (const char* suffix : {"-wal", "-shm"}) std::filesystem::remove(dir / (std::string("index.sqlite") + suffix));
  write_bytes(dir / "index.sqlite", kGarbage);
}

// The files named index.sqlite.old-* (not their -wal, -shm).
std::vector<std::filesystem::path> old_indexes(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("index.sqlite.old-", 0) == 0 && name.find("-wal") == std::string::npos &&
        name.find("-shm") == std::string::npos) {
      found.push_back(entry.path());
    }
  }
  return found;
}

// Whether the damaged index's bytes are still in `dir`, under its name or set aside.
bool old_index_kept(const std::filesystem::path& dir) {
  if (std::filesystem::exists(dir / "index.sqlite") && read_bytes(dir / "index.sqlite") == kGarbage) return true;
  for (const auto& old : old_indexes(dir)) {
    if (read_bytes(old) == kGarbage) return true;
  }
  return false;
}

std::size_t live_rows(const std::filesystem::path& dir) { return CheckpointReader(dir).checkpoints(false).size(); }

}  // namespace

TEST_CASE("a rebuild keeps a damaged index aside and indexes every checkpoint file", "[index][repair]") {
  TestDir dir("rebuild");
  prepare_damaged(dir.path());
  CHECK(CheckpointStore::check_index(dir.path()).state == IndexHealth::State::damaged);

  const IndexRebuild rebuilt = CheckpointStore::rebuild_index(dir.path());
  CHECK(rebuilt.found.state == IndexHealth::State::damaged);
  CHECK(rebuilt.recovery.adopted == static_cast<int>(kFiles));
  REQUIRE_FALSE(rebuilt.old_index.empty());
  CHECK(rebuilt.old_index.filename().string().rfind("index.sqlite.old-", 0) == 0);
  CHECK(read_bytes(rebuilt.old_index) == kGarbage);
  CHECK(CheckpointStore::check_index(dir.path()).state == IndexHealth::State::ok);
  CHECK(live_rows(dir.path()) == kFiles);

  SECTION("an index that is ok is kept, not moved aside") {
    const IndexRebuild again = CheckpointStore::rebuild_index(dir.path());
    CHECK(again.found.state == IndexHealth::State::ok);
    CHECK(again.old_index.empty());
    CHECK(old_indexes(dir.path()).size() == 1);
    CHECK(live_rows(dir.path()) == kFiles);
  }
}

TEST_CASE("a rebuild refuses while a writer holds the directory, and moves nothing", "[index][repair][lock]") {
  TestDir dir("rebuild");
  prepare_damaged(dir.path());
  // The writer opened before the index was damaged would be writing into it: simulated
  // by a store on a directory whose index is missing, which it creates.
  std::filesystem::remove(dir / "index.sqlite");
  CheckpointStore writer(dir.path());
  const std::string index_before = read_bytes(dir / "index.sqlite");
  CHECK_THROWS_AS(CheckpointStore::rebuild_index(dir.path(), {}, /*replace_newer=*/true), LockedError);
  CHECK(old_indexes(dir.path()).empty());
  CHECK(std::filesystem::exists(dir / "index.sqlite"));
}

TEST_CASE("a rebuild whose rename fails names the index and leaves it in place", "[index][repair][fault]") {
  TestDir dir("rebuild");
  prepare_damaged(dir.path());
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options = options_with(fs);
  fs->fail_nth(Op::rename, 1, EIO);
  try {
    CheckpointStore::rebuild_index(dir.path(), options);
    FAIL("the rebuild went on after its rename failed");
  } catch (const IoError& error) {
    CHECK_THAT(error.what(), Catch::Contains("index.sqlite") && Catch::Contains("could not move the old index aside"));
    CHECK(error.path() == dir / "index.sqlite");
  }
  CHECK(read_bytes(dir / "index.sqlite") == kGarbage);
  CHECK(old_indexes(dir.path()).empty());
  // Usable: the rebuild runs again.
  CHECK(CheckpointStore::rebuild_index(dir.path()).recovery.adopted == static_cast<int>(kFiles));
  CHECK(live_rows(dir.path()) == kFiles);
}

TEST_CASE("a rebuild whose rename of the index fails puts its -wal and -shm back beside it", "[index][repair][fault]") {
  TestDir dir("rebuild");
  prepare_damaged(dir.path());
  write_bytes(dir / "index.sqlite-wal", "frames committed to the old index");
  write_bytes(dir / "index.sqlite-shm", "its shared memory");
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options = options_with(fs);
  fs->fail_nth(Op::rename, 3, EIO);  // -wal and -shm moved, then index.sqlite fails
  CHECK_THROWS_WITH(CheckpointStore::rebuild_index(dir.path(), options),
                    Catch::Contains("could not move the old index aside") && Catch::Contains("nothing was rebuilt") &&
                        !Catch::Contains("could not move back"));
  CHECK(read_bytes(dir / "index.sqlite") == kGarbage);
  CHECK(read_bytes(dir / "index.sqlite-wal") == "frames committed to the old index");
  // -shm is SQLite's scratch (the health check under the lock may rewrite it): beside the
  // index again is what matters.
  CHECK(std::filesystem::exists(dir / "index.sqlite-shm"));
  CHECK(old_indexes(dir.path()).empty());
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    CHECK(entry.path().filename().string().find(".old-") == std::string::npos);
  }
}

TEST_CASE("a rebuild whose directory fsync fails names the index, keeps it aside, and the directory opens",
          "[index][repair][fault]") {
  TestDir dir("rebuild");
  prepare_damaged(dir.path());
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options = options_with(fs);
  fs->fail_nth(Op::sync_dir, 1, EIO);
  try {
    CheckpointStore::rebuild_index(dir.path(), options);
    FAIL("the rebuild went on after its directory fsync failed");
  } catch (const IoError& error) {
    CHECK_THAT(error.what(), Catch::Contains("index.sqlite") && Catch::Contains("directory fsync failed") &&
                                 Catch::Contains("index.sqlite.old-"));
  }
  CHECK_FALSE(std::filesystem::exists(dir / "index.sqlite"));
  REQUIRE(old_indexes(dir.path()).size() == 1);
  CHECK(read_bytes(old_indexes(dir.path()).front()) == kGarbage);
  // Usable: an open creates the index and adopts the files.
  { CheckpointStore store(dir.path()); }
  CHECK(live_rows(dir.path()) == kFiles);
}

// The mutation check: without the directory fsync after the old index is moved aside
// (index_rebuild.cpp, move_index_aside), a power loss at the first adoption undoes the
// move while the new index survives, and the old index is lost: this test fails there.
TEST_CASE("a power loss during or just after a rebuild keeps the old index or the rebuilt one, never neither",
          "[index][repair][power-loss]") {
  constexpr int kPowerLost = 42;
  constexpr int kPowerLostAfter = 44;
  TestDir dir("rebuild");
  int steps_swept = 0;
  for (int lose_at = 1;; ++lose_at) {
    INFO("power lost at step " << lose_at << " of the rebuild");
    prepare_damaged(dir.path());
    const int status = run_in_child([&] {
      auto fs = std::make_shared<PowerLossFileSystem>();
      StoreOptions options = options_with(fs);
      store::TestHooks& hooks = store::test_hooks(options);
      hooks.sqlite_vfs = register_power_loss_vfs();
      int steps = 0;
      hooks.on_step = [&](std::string_view) {
        if (++steps != lose_at) return;
        fs->lose_unsynced();
        lose_unsynced_sqlite_writes();
        ::_exit(kPowerLost);
      };
      CheckpointStore::rebuild_index(dir.path(), options);
      fs->lose_unsynced();
      lose_unsynced_sqlite_writes();
      ::_exit(kPowerLostAfter);
    });
    REQUIRE((status == kPowerLost || status == kPowerLostAfter));
    CHECK(old_index_kept(dir.path()));
    if (status == kPowerLostAfter) {
      // What returned is durable: the rebuilt index, with every file.
      CHECK(CheckpointStore::check_index(dir.path()).state == IndexHealth::State::ok);
      CHECK(live_rows(dir.path()) == kFiles);
      break;
    }
    ++steps_swept;
    // Usable: a rebuild (of a damaged index) or an open (of a new one) makes it whole.
    CheckpointStore::rebuild_index(dir.path());
    CHECK(live_rows(dir.path()) == kFiles);
    CHECK(old_index_kept(dir.path()));
  }
  // index_moved_aside, index_aside_synced, and a recover_orphan per file at least.
  CHECK(steps_swept >= 2 + static_cast<int>(kFiles));
}
