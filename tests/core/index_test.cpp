#include <catch2/catch.hpp>

#include <SQLiteCpp/SQLiteCpp.h>

#include <fmt/format.h>

#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <functional>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "ckpt/version.hpp"
#include "index/index.hpp"
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
    for (int epoch = 1; epoch <= 4; ++epoch) {
      const std::string bytes = zip_payload(epoch);
      SaveRequest request;  // as the manager records a state's numbers
      request.epoch = epoch;
      request.metric = 0.8 + epoch * 0.01;
      request.metrics = {{"epoch", epoch}, {"train_loss", 1.0 / epoch}, {"val_acc", *request.metric}};
      request.size_hint = bytes.size();
      store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
    }
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

namespace {
// An index as ckpt 0.1 created it (schema version 1, migrations/0001_init.sql only).
SQLite::Database schema_1_index(const std::filesystem::path& dir) {
  std::ifstream init(std::string(CKPT_SOURCE_DIR) + "/migrations/0001_init.sql");
  std::string sql((std::istreambuf_iterator<char>(init)), std::istreambuf_iterator<char>());
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec(sql);
  db.exec("PRAGMA user_version = 1");
  return db;
}
}  // namespace

TEST_CASE("migration 2 orders an existing index's commits by its history; readers of an unmigrated index agree",
          "[index][order]") {
  TestDir dir("index");
  // A version-1 index of a restarted run: epochs 7, 8, 9, then 3 (saved last), one old
  // deleted row, one pending row.
  {
    SQLite::Database db = schema_1_index(dir.path());
    auto add = [&](int id, std::int64_t epoch, const std::string& status, bool with_file) {
      std::string file = "checkpoint_epoch_" + std::to_string(epoch) + ".pth";
      std::string bytes = zip_payload(static_cast<int>(epoch));
      std::string hash = "0";
      if (with_file) {
        write_bytes(dir / file, bytes);
        hash = xxh3_of(dir / file);
      }
      db.exec(fmt::format("INSERT INTO checkpoints (id, kind, epoch, file, size, hash, hash_algo, status) VALUES "
                          "({}, 'epoch', {}, '{}', {}, '{}', 'xxh3-128', '{}')",
                          id, epoch, file, bytes.size(), hash, status));
    };
    add(2, 7, "committed", true);
    add(3, 8, "committed", true);
    add(4, 9, "committed", true);
    add(5, 3, "committed", true);
    add(6, 4, "pending", false);
    add(1, 2, "deleted", false);
    for (int id : {1, 2, 3, 4, 5}) {
      db.exec(fmt::format("INSERT INTO events (event, checkpoint_id, detail) VALUES ('saved', {}, '')", id));
    }
  }
  CHECK(CheckpointReader(dir.path()).latest()->epoch == 3);  // read-only: no migration, same answer
  CheckpointStore store(dir.path(), StoreOptions{0});
  CHECK(store.latest()->epoch == 3);
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  CHECK(db.execAndGet("PRAGMA user_version").getInt() == index_schema_version());
  SQLite::Statement rows(db, "SELECT id, commit_seq FROM checkpoints ORDER BY id");
  std::vector<std::string> seqs;
  while (rows.executeStep()) {
    seqs.push_back(std::to_string(rows.getColumn(0).getInt()) + ":" +
                   (rows.getColumn(1).isNull() ? "-" : std::to_string(rows.getColumn(1).getInt())));
  }
  CHECK(seqs == std::vector<std::string>{"1:1", "2:2", "3:3", "4:4", "5:5", "6:-"});
  // The next commit follows them.
  CHECK(save_epoch(store, 4, zip_payload(44)).commit_seq == 6);
}

TEST_CASE("an index from before commit order, with an interrupt older than later epochs, resumes the newest epoch",
          "[index][order]") {
  // Written by ckpt 0.1 (schema 1), whose rule kept an unresumed interrupt checkpoint as
  // the resume point whatever came after: epoch 1, an interrupt, then epochs 2 and 3.
  TestDir dir("index");
  {
    SQLite::Database db = schema_1_index(dir.path());
    int id = 0;
    auto add = [&](const char* kind, std::optional<std::int64_t> epoch, const std::string& file, int seed) {
      write_bytes(dir / file, zip_payload(seed));
      db.exec(fmt::format("INSERT INTO checkpoints (id, kind, epoch, file, size, hash, hash_algo, status) VALUES "
                          "({}, '{}', {}, '{}', {}, '{}', 'xxh3-128', 'committed')",
                          ++id, kind, epoch ? std::to_string(*epoch) : "NULL", file, zip_payload(seed).size(),
                          xxh3_of(dir / file)));
      db.exec(fmt::format("INSERT INTO events (event, checkpoint_id, detail) VALUES ('saved', {}, '')", id));
    };
    add("epoch", 1, "checkpoint_epoch_1.pth", 1);
    add("interrupt", std::nullopt, "interrupt_checkpoint.pth", 100);
    add("epoch", 2, "checkpoint_epoch_2.pth", 2);
    add("epoch", 3, "checkpoint_epoch_3.pth", 3);
  }
  CHECK(CheckpointReader(dir.path()).latest()->epoch == 3);  // unmigrated, read-only
  CheckpointStore store(dir.path());
  auto resumed = store.load_latest();
  REQUIRE(resumed);
  CHECK(resumed->record.epoch == 3);
  CHECK(payload_text(*resumed) == zip_payload(3));
}

TEST_CASE("migration 3 describes existing rows from their history; readers of an older index see the same", "[index]") {
  TestDir dir("index");
  {
    SQLite::Database db = schema_1_index(dir.path());
    auto add = [&](int id, const char* kind, const char* epoch, const std::string& file, const char* metric,
                   const char* event) {
      write_bytes(dir / file, zip_payload(id));
      db.exec(fmt::format("INSERT INTO checkpoints (id, kind, epoch, metric, file, size, hash, hash_algo, status) VALUES "
                          "({}, '{}', {}, {}, '{}', {}, '{}', 'xxh3-128', 'committed')",
                          id, kind, epoch, metric, file, zip_payload(id).size(), xxh3_of(dir / file)));
      db.exec(fmt::format("INSERT INTO events (event, checkpoint_id, detail) VALUES ('{}', {}, '')", event, id));
    };
    add(1, "epoch", "1", "checkpoint_epoch_1.pth", "0.5", "saved");
    add(2, "best", "NULL", "best_model.pth", "0.4", "adopted");  // its metric was the file's best_acc
  }
  auto check = [](const std::vector<CheckpointRecord>& rows, bool migrated) {
    REQUIRE(rows.size() == 2);
    const CheckpointRecord& best = rows[0].kind == CheckpointKind::best ? rows[0] : rows[1];
    const CheckpointRecord& epoch = rows[0].kind == CheckpointKind::best ? rows[1] : rows[0];
    CHECK(epoch.state_epoch == 1);
    CHECK(epoch.origin == "saved");
    CHECK(epoch.metric_source == (migrated ? "the save's argument" : ""));
    CHECK(best.origin == (migrated ? "adopted" : "saved"));  // an unmigrated index does not say
    CHECK(best.metric_source.empty());                       // unknown
    CHECK_FALSE(best.state_epoch);
  };
  check(CheckpointReader(dir.path()).checkpoints(), false);
  CHECK(CheckpointReader(dir.path()).metrics().empty());
  { CheckpointStore store(dir.path()); }
  check(CheckpointReader(dir.path()).checkpoints(), true);
}

namespace {

// The quoted words of `sql` between `from` and `to`, SQL comments removed.
std::set<std::string> quoted_words(const std::string& sql, const std::string& from, const std::string& to) {
  const auto begin = sql.find(from);
  REQUIRE(begin != std::string::npos);
  const auto end = sql.find(to, begin + from.size());
  REQUIRE(end != std::string::npos);
  const std::string part = std::regex_replace(sql.substr(begin, end - begin), std::regex("--[^\n]*"), "");
  std::set<std::string> words;
  const std::regex quoted("'([a-z_]+)'");
  for (auto it = std::sregex_iterator(part.begin(), part.end(), quoted); it != std::sregex_iterator(); ++it) {
    words.insert((*it)[1].str());
  }
  return words;
}

}  // namespace

// The statuses, kinds and origins have one home in C++ (index::status,
// to_string(CheckpointKind), origins::k*), from which the queries are written; the
// migrations hold frozen copies, applied to existing databases, which must say the same.
TEST_CASE("the schema's CHECK constraints and partial index name exactly the statuses and kinds the code uses",
          "[index]") {
  TestDir dir("index");
  { CheckpointStore store(dir.path()); }
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  const std::string table = db.execAndGet("SELECT sql FROM sqlite_master WHERE name = 'checkpoints'").getString();
  const std::string live = db.execAndGet("SELECT sql FROM sqlite_master WHERE name = 'checkpoints_live_file'").getString();

  std::set<std::string> statuses;
  for (std::string_view status : index::status::kAll) statuses.emplace(status);
  CHECK(statuses.size() == std::size(index::status::kAll));
  CHECK(quoted_words(table, "CHECK (status IN (", "created_at") == statuses);

  std::set<std::string> kinds;
  for (CheckpointKind kind : {CheckpointKind::best, CheckpointKind::epoch, CheckpointKind::interrupt}) {
    kinds.emplace(to_string(kind));
    CHECK(index::parse_kind(to_string(kind), "test") == kind);
  }
  CHECK(quoted_words(table, "CHECK (kind IN (", "epoch ") == kinds);

  std::set<std::string> origin_values(std::begin(origins::kAll), std::end(origins::kAll));
  CHECK(quoted_words(table, "CHECK (origin IN (", ")") == origin_values);

  CHECK(quoted_words(live, "WHERE", ")") ==
        std::set<std::string>{std::string(index::status::kCommitted), std::string(index::status::kConsumed)});
}

TEST_CASE("an index row of an unknown kind is refused with an error naming the value and the row", "[index]") {
  TestDir dir("index");
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 1, zip_payload(1));
  }
  {
    SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READWRITE);
    // Only another program (or a newer ckpt) could write one: the CHECK constraint is
    // switched off to do it.
    db.exec("PRAGMA ignore_check_constraints = ON");
    db.exec("UPDATE checkpoints SET kind = 'bogus', epoch = NULL WHERE file = 'checkpoint_epoch_1.pth'");
  }
  auto refuses = [&](const std::function<void()>& read) {
    try {
      read();
      FAIL("read a row of kind 'bogus'");
    } catch (const IndexError& error) {
      CHECK_THAT(error.what(), Catch::Contains("'bogus'") && Catch::Contains("index.sqlite") &&
                                   Catch::Contains("checkpoint 1"));
    }
  };
  refuses([&] { (void)CheckpointReader(dir.path()).checkpoints(true); });
  refuses([&] { CheckpointStore store(dir.path()); });
}

namespace {
// The first ```sql block after `lead` in docs/schema.md.
std::string schema_recipe(const std::string& lead) {
  std::ifstream doc(std::string(CKPT_SOURCE_DIR) + "/docs/schema.md");
  std::string text((std::istreambuf_iterator<char>(doc)), std::istreambuf_iterator<char>());
  const auto at = text.find(lead);
  REQUIRE(at != std::string::npos);
  std::smatch block;
  const std::string rest = text.substr(at);
  REQUIRE(std::regex_search(rest, block, std::regex("```sql\n([\\s\\S]*?)```")));
  return block[1];
}

std::string run_sqlite3(const std::filesystem::path& dir, const std::string& sql) {
  auto result = run_command("sqlite3 -bail " + shell_quote((dir / "index.sqlite").string()) + " " + shell_quote(sql) + " 2>&1");
  INFO(result.output);
  CHECK(result.exit_code == 0);
  return result.output;
}
}  // namespace

// The two recipes for named metrics, against hand-computed answers: NaN and a missing
// metric are never best, a tie goes to the most recently committed, only live periodic
// checkpoints compete (not the best model, not a rotated-out one), and the curve keeps
// every committed periodic checkpoint, rotated out or not, in commit order.
TEST_CASE("the schema's best-by-metric and metric-curve recipes give the expected rows", "[index][docs][steps]") {
  TestDir dir("recipes-steps");
  {
    CheckpointStore store(dir.path(), StoreOptions{4});
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto save = [&](std::optional<std::int64_t> epoch, std::optional<std::int64_t> step,
                    std::vector<std::pair<std::string, double>> metrics, int seed, CheckpointKind kind = CheckpointKind::epoch) {
      const std::string bytes = zip_payload(seed);
      SaveRequest request;
      request.kind = kind;
      request.epoch = epoch;
      request.step = step;
      request.metrics = std::move(metrics);
      request.size_hint = bytes.size();
      store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
    };
    save(1, std::nullopt, {{"train_loss", 0.9}, {"val_acc", 0.5}}, 1);  // rotated out by the fifth save
    save(1, 1500, {{"train_loss", 0.4}, {"val_acc", nan}}, 2);
    save(2, std::nullopt, {{"train_loss", 0.3}, {"val_acc", 0.7}}, 3);
    save(2, 3000, {{"train_loss", 0.3}, {"val_acc", 0.65}}, 4);  // ties epoch 2, newer
    save(3, 3500, {{"val_acc", 0.72}}, 5);                       // no train_loss
    save(std::nullopt, std::nullopt, {{"train_loss", 0.01}, {"val_acc", 0.99}}, 6, CheckpointKind::best);
  }
  const std::string best = schema_recipe("The best periodic (epoch or step) checkpoint");
  CHECK(run_sqlite3(dir.path(), best) == "checkpoint_step_3000.pth|2|3000|0.3\n");
  const std::string by_max = std::regex_replace(best, std::regex("\\('train_loss', 'min'\\)"), "('val_acc', 'max')");
  REQUIRE(by_max != best);
  CHECK(run_sqlite3(dir.path(), by_max) == "checkpoint_step_3500.pth|3|3500|0.72\n");
  const std::string by_min_acc = std::regex_replace(best, std::regex("\\('train_loss', 'min'\\)"), "('val_acc', 'min')");
  CHECK(run_sqlite3(dir.path(), by_min_acc) == "checkpoint_step_3000.pth|2|3000|0.65\n");  // not the NaN
  CHECK(run_sqlite3(dir.path(), schema_recipe("One metric's curve over the run")) ==
        "|1|0.5\n"
        "1500|1|\n"
        "|2|0.7\n"
        "3000|2|0.65\n"
        "3500|3|0.72\n");
}

TEST_CASE("a read-only view of a schema 3 index (before steps) reads every row with no step", "[index][steps]") {
  TestDir dir("index");
  {
    SQLite::Database db = schema_1_index(dir.path());
    for (const char* migration : {"0002_commit_order.sql", "0003_named_metrics.sql"}) {
      std::ifstream file(std::string(CKPT_SOURCE_DIR) + "/migrations/" + migration);
      db.exec(std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>()));
    }
    db.exec("PRAGMA user_version = 3");
    write_bytes(dir / "checkpoint_epoch_1.pth", zip_payload(1));
    db.exec(fmt::format("INSERT INTO checkpoints (kind, epoch, metric, file, size, hash, hash_algo, status, commit_seq, "
                        "state_epoch) VALUES ('epoch', 1, 0.5, 'checkpoint_epoch_1.pth', {}, '{}', 'xxh3-128', "
                        "'committed', 1, 1)",
                        zip_payload(1).size(), xxh3_of(dir / "checkpoint_epoch_1.pth")));
  }
  {
    CheckpointReader reader(dir.path());
    auto rows = reader.checkpoints();
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].epoch == 1);
    CHECK_FALSE(rows[0].step);
    REQUIRE(reader.latest());
    CHECK(reader.latest()->file == "checkpoint_epoch_1.pth");
  }
  {
    SQLite::Database db((dir / "index.sqlite").string());
    CHECK(db.execAndGet("PRAGMA user_version").getInt() == 3);  // the reader migrated nothing
  }
  // A writer migrates it; the old row still has no step, and a step save has one.
  CheckpointStore store(dir.path());
  SaveRequest request;
  request.epoch = 2;
  request.step = 50;
  const std::string bytes = zip_payload(2);
  store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
  auto rows = CheckpointReader(dir.path()).checkpoints();
  REQUIRE(rows.size() == 2);
  for (const auto& row : rows) CHECK(row.step == (row.file == "checkpoint_step_50.pth" ? std::optional<std::int64_t>(50) : std::nullopt));
}
