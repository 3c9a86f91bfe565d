// The index's journal (StoreOptions::index_journal): WAL or SQLite's rollback journal
// (journal_mode=TRUNCATE), what each leaves beside index.sqlite, conversion between them
// keeping every row (a leftover -wal included), a hot journal left by a killed process
// rolled back by the next writer, and what readers see beside a writer in rollback mode.
// The kill -9 torture in rollback mode is in kill_test.cpp.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "ckpt/errors.hpp"
#include "ckpt/file_system.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "index/index.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

StoreOptions with_journal(IndexJournal journal) {
  StoreOptions options;
  options.index_journal = journal;
  return options;
}

bool has_file(const std::filesystem::path& dir, const std::string& name) {
  auto files = file_names(dir);
  return std::find(files.begin(), files.end(), name) != files.end();
}

// Bytes 18 and 19 of the database header: 2 in WAL mode, 1 with a rollback journal.
int header_version(const std::filesystem::path& index) {
  std::string bytes = read_bytes(index);
  REQUIRE(bytes.size() >= 100);
  CHECK(bytes[18] == bytes[19]);
  return bytes[18];
}

// journal_mode as a new sqlite3 connection reports it: "wal" is persistent in the file; a
// rollback journal's mode is per connection, so a new one reports its default, "delete".
std::string outside_journal_mode(const std::filesystem::path& index) {
  SQLite::Database db(index.string(), SQLite::OPEN_READONLY);
  return db.execAndGet("PRAGMA journal_mode").getString();
}

// A child saving with a WAL index that dies without closing it: its commits stay in the
// -wal (none reached the 1000-page automatic checkpoint).
void leave_wal_behind(const std::filesystem::path& dir, std::int64_t first, std::int64_t last) {
  REQUIRE(run_in_child([&] {
            CheckpointStore store(dir, with_journal(IndexJournal::wal));
            save_epochs(store, first, last);
            ::_exit(0);  // no destructor: the -wal is neither checkpointed nor removed
          }) == 0);
}

}  // namespace

TEST_CASE("in rollback mode a store saves and reloads through a truncated journal, with no -wal or -shm",
          "[store][journal]") {
  TestDir dir("journal");
  {
    CheckpointStore store(dir.path(), with_journal(IndexJournal::rollback));
    save_epochs(store, 1, 3);
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(100));
    // journal_mode=TRUNCATE: the journal stays, emptied (and fsynced) by each commit;
    // DELETE mode would have unlinked it.
    REQUIRE(has_file(dir.path(), "index.sqlite-journal"));
    CHECK(std::filesystem::file_size(dir / "index.sqlite-journal") == 0);
    CHECK_FALSE(has_file(dir.path(), "index.sqlite-wal"));
    CHECK_FALSE(has_file(dir.path(), "index.sqlite-shm"));
    CHECK(header_version(dir / "index.sqlite") == 1);
    CHECK(outside_journal_mode(dir / "index.sqlite") == "delete");
    // Readers beside a local writer in rollback mode read between its transactions.
    CheckpointReader reader(dir.path());
    CHECK(reader.checkpoints().size() == 4);
    CHECK(reader.load_latest()->payload.record.epoch == 3);
  }
  CHECK_FALSE(has_file(dir.path(), "index.sqlite-wal"));
  CHECK(invariant_violations(dir.path()).empty());
  CheckpointStore reopened(dir.path(), with_journal(IndexJournal::rollback));
  CHECK(reopened.load_latest()->record.epoch == 3);
  CHECK(payload_text(*reopened.load_best()) == zip_payload(100));
}

TEST_CASE("a WAL index with a leftover -wal is converted to a rollback journal and back, keeping every row",
          "[store][journal]") {
  TestDir dir("journal");
  leave_wal_behind(dir.path(), 1, 3);
  REQUIRE(has_file(dir.path(), "index.sqlite-wal"));
  REQUIRE(std::filesystem::file_size(dir / "index.sqlite-wal") > 0);
  CHECK(header_version(dir / "index.sqlite") == 2);

  {
    CheckpointStore store(dir.path(), with_journal(IndexJournal::rollback));
    // The -wal's commits were checkpointed into index.sqlite before the switch deleted it.
    CHECK_FALSE(has_file(dir.path(), "index.sqlite-wal"));
    CHECK_FALSE(has_file(dir.path(), "index.sqlite-shm"));
    CHECK(header_version(dir / "index.sqlite") == 1);
    CHECK(store.live_checkpoints().size() == 3);
    save_epoch(store, 4, zip_payload(4));
  }
  CHECK(index_rows(dir.path()).size() == 4);
  CHECK(outside_journal_mode(dir / "index.sqlite") == "delete");

  {
    CheckpointStore store(dir.path(), with_journal(IndexJournal::wal));
    CHECK(header_version(dir / "index.sqlite") == 2);
    CHECK(store.live_checkpoints().size() == 4);
    save_epoch(store, 5, zip_payload(5));
  }
  CHECK(outside_journal_mode(dir / "index.sqlite") == "wal");
  // automatic on a local disk: WAL, as before this option existed.
  {
    CheckpointStore store(dir.path());
    CHECK(store.load_latest()->record.epoch == 5);
    CHECK(header_version(dir / "index.sqlite") == 2);
  }
  CHECK(index_rows(dir.path()).size() == 5);
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("switching a WAL index to a rollback journal while a reader has it open fails naming the file",
          "[store][journal]") {
  TestDir dir("journal");
  {
    CheckpointStore store(dir.path());
    save_epochs(store, 1, 2);
  }
  CheckpointReader reader(dir.path());
  REQUIRE(reader.checkpoints().size() == 2);
  try {
    CheckpointStore store(dir.path(), with_journal(IndexJournal::rollback));
    FAIL("switched out of WAL beside an open reader");
  } catch (const IndexError& error) {
    CHECK_THAT(error.what(), Catch::Contains((dir / "index.sqlite").string()) &&
                                 Catch::Contains("could not switch the index from journal mode wal to truncate") &&
                                 Catch::Contains("CheckpointReader"));
  }
  // Nothing lost: the reader still reads, and a writer in WAL mode opens.
  CHECK(reader.checkpoints().size() == 2);
  CHECK(header_version(dir / "index.sqlite") == 2);
}

TEST_CASE("a hot journal left by a process killed mid-transaction is rolled back by the next writer's open",
          "[store][journal][crash]") {
  TestDir dir("journal");
  {
    CheckpointStore store(dir.path(), with_journal(IndexJournal::rollback));
    save_epochs(store, 1, 2);
  }
  const std::string before = read_bytes(dir / "index.sqlite");
  // A writer killed in a transaction large enough to spill pages into index.sqlite: the
  // database file then holds half a transaction, and only the journal can undo it.
  const int status = run_in_child([&] {
    SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READWRITE);
    db.exec("PRAGMA journal_mode=TRUNCATE");
    db.exec("PRAGMA cache_size=2");
    db.exec("BEGIN IMMEDIATE");
    db.exec("UPDATE checkpoints SET status = 'deleted'");
    for (int i = 0; i < 200; ++i) {
      db.exec(fmt::format("INSERT INTO events (at, event, detail) VALUES ('now', 'junk', '{}')",
                          std::string(2000, 'x')));
    }
    ::raise(SIGKILL);
  });
  REQUIRE(status == 128 + SIGKILL);
  REQUIRE(has_file(dir.path(), "index.sqlite-journal"));
  const std::string journal = read_bytes(dir / "index.sqlite-journal");
  REQUIRE(journal.size() > 28);
  CHECK(journal.substr(0, 8) != std::string(8, '\0'));  // a live header: hot
  CHECK(read_bytes(dir / "index.sqlite") != before);     // the spill reached the database

  // A read-only reader cannot roll it back and says so.
  try {
    CheckpointReader reader(dir.path());
    (void)reader.checkpoints();
    FAIL("a read-only reader read past a hot journal");
  } catch (const IndexError& error) {
    CHECK_THAT(error.what(), Catch::Contains((dir / "index.sqlite").string()) && Catch::Contains("hot journal") &&
                                 Catch::Contains("next writer"));
  }

  {
    CheckpointStore store(dir.path(), with_journal(IndexJournal::rollback));
    CHECK(store.live_checkpoints().size() == 2);
    CHECK(store.load_latest()->record.epoch == 2);
  }
  auto events = index_events(dir.path());
  CHECK(std::none_of(events.begin(), events.end(), [](const std::string& e) { return e.find("junk") != std::string::npos; }));
  CHECK(std::filesystem::file_size(dir / "index.sqlite-journal") == 0);
  CHECK(invariant_violations(dir.path()).empty());
  CheckpointReader reader(dir.path());
  CHECK(reader.checkpoints().size() == 2);
}

TEST_CASE("with a rollback journal every commit is synchronous=EXTRA, deferred ones too; WAL keeps NORMAL for them",
          "[index][journal]") {
  TestDir dir("journal");
  using index::Durability;
  using index::Index;
  for (Index::Journal journal : {Index::Journal::rollback, Index::Journal::wal}) {
    const bool rollback = journal == Index::Journal::rollback;
    INFO((rollback ? "rollback" : "wal"));
    Index index(dir / "index.sqlite", Index::Mode::read_write, {}, Index::Locking::normal, journal);
    CHECK(index.journal_mode() == (rollback ? "truncate" : "wal"));
    for (Durability durability : {Durability::deferred, Durability::full, Durability::deferred}) {
      index::Transaction transaction(index, durability);
      index.add_event("test", std::nullopt, "");
      transaction.commit();
      CHECK(index.synchronous_level() == (rollback ? 3 : durability == Durability::full ? 2 : 1));
    }
  }
  // A pins connection never switches the journal; on a rollback-journal index it commits
  // with EXTRA (its journal is DELETE mode, whose commit is an unlink).
  { Index writer(dir / "index.sqlite", Index::Mode::read_write, {}, Index::Locking::normal, Index::Journal::rollback); }
  Index pins(dir / "index.sqlite", Index::Mode::pins);
  CHECK(pins.journal_mode() == "delete");
  CHECK(pins.move_watch_cursor("test", std::nullopt, 1));
  CHECK(pins.synchronous_level() == 3);
}
