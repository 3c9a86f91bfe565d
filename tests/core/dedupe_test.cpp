// One write per state: a save whose bytes a live checkpoint already holds becomes a hard
// link to that checkpoint's file (save_protocol.cpp, steps 1' and 3 to 7). What the link
// path saves (writes, fsyncs), what it records, and what shared files mean for rotation,
// quarantine and the file systems that cannot link.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <SQLiteCpp/SQLiteCpp.h>

#include "ckpt/errors.hpp"
#include "ckpt/store.hpp"
#include "support/captured_log.hpp"
#include "support/fault_file_system.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

struct stat stat_of(const std::filesystem::path& path) {
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st;
}

bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
  return stat_of(a).st_ino == stat_of(b).st_ino && stat_of(a).st_dev == stat_of(b).st_dev;
}

// Whether an event `event` whose detail contains `part` is in the index.
bool has_event(const std::filesystem::path& dir, const std::string& event, const std::string& part) {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, "SELECT detail FROM events WHERE event = ?");
  query.bind(1, event);
  while (query.executeStep()) {
    if (query.getColumn(0).getString().find(part) != std::string::npos) return true;
  }
  return false;
}

int count_of(const std::string& text, const std::string& part) {
  int n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

bool has_temp_file(const std::filesystem::path& dir) {
  for (const auto& name : file_names(dir)) {
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) return true;
  }
  return false;
}

// Overwrites one byte in place: every name of the file sees it.
void flip_byte_in_place(const std::filesystem::path& path, std::streamoff offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(offset);
  char byte = 0;
  file.get(byte);
  file.seekp(offset);
  file.put(static_cast<char>(byte ^ 0x5a));
}

SaveRequest best_request(bool likely_duplicate) {
  SaveRequest request;
  request.kind = CheckpointKind::best;
  request.metric = 0.9;
  request.likely_duplicate = likely_duplicate;
  return request;
}

// A writer of `bytes` that counts its runs.
PayloadWriter counting_writer(const std::string& bytes, int& runs) {
  return [&bytes, &runs](ByteSink& sink) {
    ++runs;
    sink.write(bytes.data(), bytes.size());
  };
}

}  // namespace

TEST_CASE("a save of bytes an epoch checkpoint holds links to its file: nothing synced, a 'linked' event",
          "[store][dedupe]") {
  TestDir dir("dedupe-link");
  auto fs = std::make_shared<FaultFileSystem>();
  const std::string state = zip_payload(5, 64 * 1024);
  {
    CheckpointStore store(dir.path(), options_with(fs));
    auto epoch = save_epoch(store, 5, state);
    const int syncs = fs->count(Op::sync);
    auto best = save_bytes(store, CheckpointKind::best, std::nullopt, state, 0.9);
    CHECK(fs->count(Op::sync) == syncs);  // the temp file was removed unsynced
    CHECK(fs->count(Op::link) == 1);
    CHECK(best.hash == epoch.hash);
    CHECK(payload_text(*store.load_best()) == state);
  }
  CHECK(same_file(dir / "best_model.pth", dir / "checkpoint_epoch_5.pth"));
  CHECK(stat_of(dir / "best_model.pth").st_nlink == 2);
  CHECK(has_event(dir.path(), "linked", "best_model.pth: a hard link to checkpoint_epoch_5.pth"));
  CHECK_FALSE(has_temp_file(dir.path()));
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("likely_duplicate: the writer hashes into no file, and a match links without writing a byte",
          "[store][dedupe]") {
  TestDir dir("dedupe-flag");
  auto fs = std::make_shared<FaultFileSystem>();
  const std::string state = zip_payload(6, 64 * 1024);
  CheckpointStore store(dir.path(), options_with(fs));
  save_epoch(store, 6, state);
  const int creates = fs->count(Op::create), writes = fs->count(Op::write);
  int runs = 0;
  store.save(best_request(true), counting_writer(state, runs));
  CHECK(runs == 1);
  CHECK(fs->count(Op::create) == creates);
  CHECK(fs->count(Op::write) == writes);
  CHECK(same_file(dir / "best_model.pth", dir / "checkpoint_epoch_6.pth"));

  SECTION("a wrong guess runs the writer again and writes the file") {
    const std::string other = zip_payload(7, 64 * 1024);
    runs = 0;
    store.save(best_request(true), counting_writer(other, runs));
    CHECK(runs == 2);
    CHECK(payload_text(*store.load_best()) == other);
    CHECK_FALSE(same_file(dir / "best_model.pth", dir / "checkpoint_epoch_6.pth"));
  }
}

TEST_CASE("without the flag the payload is written to its temp file once and compared before the fsync",
          "[store][dedupe]") {
  TestDir dir("dedupe-default");
  const std::string state = zip_payload(8);
  CheckpointStore store(dir.path());
  save_epoch(store, 1, state);
  int runs = 0;
  store.save(best_request(false), counting_writer(state, runs));
  CHECK(runs == 1);
  CHECK(same_file(dir / "best_model.pth", dir / "checkpoint_epoch_1.pth"));
}

TEST_CASE("renaming onto a name that already is a link to the same file leaves no temp name behind",
          "[store][dedupe]") {
  // POSIX rename() of two links to one file does nothing and keeps both names.
  TestDir dir("dedupe-same-inode");
  const std::string state = zip_payload(9);
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 1, state);
    save_bytes(store, CheckpointKind::best, std::nullopt, state, 0.5);
    save_bytes(store, CheckpointKind::best, std::nullopt, state, 0.6);
    CHECK_FALSE(has_temp_file(dir.path()));
    CHECK(store.best()->metric == 0.6);
  }
  CHECK(stat_of(dir / "best_model.pth").st_nlink == 2);
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("rotating out or removing one name of a shared file keeps the other intact and loadable",
          "[store][dedupe]") {
  TestDir dir("dedupe-rotation");
  const std::string state = zip_payload(10);
  {
    CheckpointStore store(dir.path(), StoreOptions{1});
    save_epoch(store, 1, state);
    save_bytes(store, CheckpointKind::best, std::nullopt, state, 0.5);
    save_epoch(store, 2, zip_payload(11));  // rotates epoch 1 out
    CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_1.pth"));
    CHECK(payload_text(*store.load_best()) == state);

    auto epoch3 = save_epoch(store, 3, zip_payload(12));
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(12), 0.7);
    store.remove(store.best()->id);
    CHECK(payload_text(*store.load_latest()) == zip_payload(12));
    CHECK(store.latest()->id == epoch3.id);
  }
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a shared file found corrupt is quarantined under each of its names, and the log says why",
          "[store][dedupe][corruption]") {
  TestDir dir("dedupe-corrupt");
  const std::string state = zip_payload(13);
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 1, zip_payload(14));
    save_epoch(store, 2, state);
    save_bytes(store, CheckpointKind::best, std::nullopt, state, 0.5);
  }
  flip_byte_in_place(dir / "checkpoint_epoch_2.pth", 100);  // both names see it
  CapturedLog log;
  CheckpointStore store(dir.path());
  auto loaded = store.load_latest();
  REQUIRE(loaded);
  CHECK(loaded->record.epoch == 1);
  CHECK_FALSE(store.best());
  CHECK_FALSE(std::filesystem::exists(dir / "best_model.pth"));
  CHECK(std::distance(std::filesystem::directory_iterator(dir / "quarantine"), {}) == 2);
  CHECK(log.text().find("shares its bytes with checkpoint_epoch_2.pth, found corrupt: corrupt too") !=
        std::string::npos);
}

TEST_CASE("where the file system cannot link, saves write the bytes and the log says so once",
          "[store][dedupe][fault]") {
  const int error = GENERATE(EPERM, EXDEV, EMLINK, EOPNOTSUPP, ENOSYS);
  TestDir dir("dedupe-unsupported");
  auto fs = std::make_shared<FaultFileSystem>();
  fs->fail_nth(Op::link, 1, error);
  CapturedLog log;
  CheckpointStore store(dir.path(), options_with(fs));
  for (int epoch = 1; epoch <= 2; ++epoch) {
    const std::string state = zip_payload(20 + epoch);
    save_epoch(store, epoch, state);
    save_bytes(store, CheckpointKind::best, std::nullopt, state, epoch);
    CHECK(payload_text(*store.load_best()) == state);
    CHECK_FALSE(same_file(dir / "best_model.pth", dir / ("checkpoint_epoch_" + std::to_string(epoch) + ".pth")));
  }
  CHECK(fs->count(Op::link) == 1);  // not asked again
  CHECK(count_of(log.text(), "no hard links here") == 1);
  CHECK(log.text().find(std::strerror(error)) != std::string::npos);

  SECTION("and a corrupt copy is only that copy: the other is intact and kept") {
    flip_byte_in_place(dir / "best_model.pth", 100);
    CHECK_FALSE(store.load_best());
    CHECK(payload_text(*store.load_latest()) == zip_payload(22));
    CHECK(log.text().find("it is a separate copy and still intact") != std::string::npos);
  }
}

TEST_CASE("a link that fails with an I/O error falls back to writing for that save only", "[store][dedupe][fault]") {
  TestDir dir("dedupe-link-eio");
  auto fs = std::make_shared<FaultFileSystem>();
  CapturedLog log;
  CheckpointStore store(dir.path(), options_with(fs));
  save_epoch(store, 1, zip_payload(30));
  fs->fail_nth(Op::link, 1, EIO);
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(30), 0.1);
  CHECK_FALSE(same_file(dir / "best_model.pth", dir / "checkpoint_epoch_1.pth"));
  CHECK(log.text().find("writing the bytes instead") != std::string::npos);
  CHECK(log.text().find(std::strerror(EIO)) != std::string::npos);
  save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(30), 0.2);
  CHECK(same_file(dir / "best_model.pth", dir / "checkpoint_epoch_1.pth"));
}

TEST_CASE("a file that no longer holds its row's bytes is never linked to", "[store][dedupe][corruption]") {
  TestDir dir("dedupe-stale-source");
  const std::string state = zip_payload(31);
  CapturedLog log;
  CheckpointStore store(dir.path());
  save_epoch(store, 1, state);
  flip_byte_in_place(dir / "checkpoint_epoch_1.pth", 200);
  save_bytes(store, CheckpointKind::best, std::nullopt, state, 0.3);
  CHECK_FALSE(same_file(dir / "best_model.pth", dir / "checkpoint_epoch_1.pth"));
  CHECK(payload_text(*store.load_best()) == state);
  CHECK(log.text().find("not linking to it") != std::string::npos);
}

TEST_CASE("each failing file operation of a linked save leaves the old best model or the new one, never neither",
          "[store][dedupe][fault]") {
  for (Op op : {Op::link, Op::rename, Op::sync_dir, Op::remove, Op::read}) {
    for (int error : {EIO, ENOSPC, EACCES}) {
      DYNAMIC_SECTION("op " << static_cast<int>(op) << " errno " << error) {
        TestDir dir("dedupe-fault");
        auto fs = std::make_shared<FaultFileSystem>();
        const std::string old_best = zip_payload(40), state = zip_payload(41);
        {
          CheckpointStore store(dir.path(), options_with(fs));
          save_bytes(store, CheckpointKind::best, std::nullopt, old_best, 0.1);
          save_epoch(store, 1, state);
          fs->fail_nth(op, 1, error);
          try {
            store.save(best_request(op == Op::read), [&state](ByteSink& sink) { sink.write(state.data(), state.size()); });
          } catch (const IoError& caught) {
            CHECK(caught.os_error() == error);
          }
          fs->clear_faults();
        }
        {
          CheckpointStore reopened(dir.path(), options_with(fs));
          auto best = reopened.load_best();
          REQUIRE(best);
          CHECK((payload_text(*best) == old_best || payload_text(*best) == state));
          CHECK(payload_text(*reopened.load_latest()) == state);
        }
        CHECK(invariant_violations(dir.path()).empty());
      }
    }
  }
}
