#include <catch2/catch.hpp>

#include <SQLiteCpp/SQLiteCpp.h>

#include <fstream>
#include <regex>

#include "ckpt/errors.hpp"
#include "ckpt/store.hpp"
#include "ckpt/version.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

TEST_CASE("a new directory gets an index at the newest schema version in WAL mode", "[index]") {
  TestDir dir("index");
  { CheckpointStore store(dir.path()); }
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  CHECK(db.execAndGet("PRAGMA user_version").getInt() == index_schema_version());
  CHECK(db.execAndGet("PRAGMA journal_mode").getString() == "wal");
  CHECK(db.execAndGet("SELECT value FROM settings WHERE key = 'max_to_keep'").getString() == "5");
}

TEST_CASE("an index from a newer ckpt is refused with a clear error and left untouched", "[index]") {
  TestDir dir("index");
  {
    SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE future (x); PRAGMA user_version = 999;");
  }
  std::string before = read_bytes(dir / "index.sqlite");
  try {
    CheckpointStore store(dir.path());
    FAIL("opened an index with a newer schema");
  } catch (const IndexError& error) {
    CHECK(error.code() == ErrorCode::schema_too_new);
    CHECK_THAT(error.what(), Catch::Contains("index.sqlite") && Catch::Contains("999") && Catch::Contains("newer"));
  }
  CHECK(read_bytes(dir / "index.sqlite") == before);
}

TEST_CASE("an index that is not a database gives an error naming it, and no crash", "[index]") {
  TestDir dir("index");
  write_bytes(dir / "index.sqlite", std::string(8192, 'x'));
  try {
    CheckpointStore store(dir.path());
    FAIL("opened garbage as an index");
  } catch (const IndexError& error) {
    CHECK(error.code() == ErrorCode::corrupt);
    CHECK_THAT(error.what(), Catch::Contains("index.sqlite"));
  }
}

TEST_CASE("the history is append-only", "[index]") {
  TestDir dir("index");
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 1, zip_payload(1));
  }
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READWRITE);
  CHECK_THROWS_WITH(db.exec("DELETE FROM events"), Catch::Contains("append-only"));
  CHECK_THROWS_WITH(db.exec("UPDATE events SET event = 'x'"), Catch::Contains("append-only"));
}

// docs/schema.md's ```sql blocks are the recipes users copy; each must run as written
// through the real sqlite3 CLI against a directory with history.
TEST_CASE("every sqlite3 recipe in docs/schema.md runs through the sqlite3 CLI", "[index][docs]") {
  TestDir dir("recipes");
  {
    CheckpointStore store(dir.path(), StoreOptions{2});
    for (int epoch = 1; epoch <= 4; ++epoch) save_epoch(store, epoch, zip_payload(epoch));
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(10), 0.91);
    save_bytes(store, CheckpointKind::interrupt, std::nullopt, zip_payload(11));
    store.load_latest();
  }
  std::ifstream doc(std::string(CKPT_SOURCE_DIR) + "/docs/schema.md");
  REQUIRE(doc);
  std::string text((std::istreambuf_iterator<char>(doc)), std::istreambuf_iterator<char>());
  std::regex block("```sql\n([\\s\\S]*?)```");
  int recipes = 0;
  for (std::sregex_iterator it(text.begin(), text.end(), block), end; it != end; ++it) {
    std::string sql = (*it)[1];
    INFO(sql);
    auto result = run_command("sqlite3 -bail " + shell_quote((dir / "index.sqlite").string()) + " " + shell_quote(sql) + " 2>&1");
    CHECK(result.exit_code == 0);
    CHECK(result.output.find("Error") == std::string::npos);
    CHECK_FALSE(result.output.empty());
    ++recipes;
  }
  CHECK(recipes >= 5);
}
