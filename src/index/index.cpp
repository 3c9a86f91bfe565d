#include "index/index.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <utility>

#include "ckpt/errors.hpp"
#include "ckpt/version.hpp"
#include "index/migrations.hpp"

namespace ckpt::index {

namespace {

constexpr int kBusyTimeoutMs = 10'000;

// A path as the path part of an SQLite URI: '%', '?' and '#' escaped.
std::string uri_path(const std::filesystem::path& path) {
  std::string out;
  for (char c : std::filesystem::absolute(path).string()) {
    if (c == '%' || c == '?' || c == '#') {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out;
}
// Columns of read_record, in order; {seq} is the commit order (see commit_order_).
constexpr const char* kColumns =
    "id, kind, epoch, metric, file, size, hash, hash_algo, status, created_at, {seq}, {described}, {step}";
// The columns migration 0003 added, and what a read-only view of an older index reads instead.
constexpr const char* kDescribed = "metric_source, state_epoch, origin";
const std::string kDescribedBeforeMigration3 =
    fmt::format("NULL, CASE WHEN kind = '{}' THEN epoch END, '{}'", to_string(CheckpointKind::epoch), origins::kSaved);
// The column migration 0004 added; an older index's read-only view has no steps.
constexpr const char* kStep = "step";
constexpr const char* kStepBeforeMigration4 = "NULL";
// Before migration 0002 (a read-only view of an index no writer has migrated yet), the
// order of ids is the order of commits: one writer, saves one at a time.
const std::string kCommitOrderBeforeMigration2 =
    fmt::format("(CASE WHEN status IN ('{}', '{}') THEN NULL ELSE id END)", status::kPending, status::kAborted);

// The statuses and kinds the queries name, written from their C++ home (status::k*,
// to_string(CheckpointKind)) so that no query spells one itself. The migrations' CHECK
// constraints and partial index hold copies that must stay as they were applied;
// index_test checks that they agree with these constants.
const std::string kIsLive = fmt::format("status IN ('{}', '{}')", status::kCommitted, status::kConsumed);
const std::string kIsCommitted = fmt::format("status = '{}'", status::kCommitted);
const std::string kIsEpoch = fmt::format("kind = '{}'", to_string(CheckpointKind::epoch));
// A pins row that still holds its checkpoint (migration 0004: expiry in UTC ISO-8601 text,
// so text order is time order).
constexpr const char* kPinHolds = "pins.expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
const std::string kIsBest = fmt::format("kind = '{}'", to_string(CheckpointKind::best));

CheckpointRecord read_record(SQLite::Statement& row, const std::filesystem::path& index_path) {
  CheckpointRecord record;
  record.id = row.getColumn(0).getInt64();
  record.kind = parse_kind(row.getColumn(1).getString(), fmt::format("{}, checkpoint {}", index_path.string(), record.id));
  if (!row.getColumn(2).isNull()) record.epoch = row.getColumn(2).getInt64();
  if (!row.getColumn(3).isNull()) record.metric = row.getColumn(3).getDouble();
  record.file = row.getColumn(4).getString();
  record.size = static_cast<std::uint64_t>(row.getColumn(5).getInt64());
  record.hash = row.getColumn(6).getString();
  record.hash_algo = row.getColumn(7).getString();
  record.status = row.getColumn(8).getString();
  record.created_at = row.getColumn(9).getString();
  if (!row.getColumn(10).isNull()) record.commit_seq = row.getColumn(10).getInt64();
  if (!row.getColumn(11).isNull()) record.metric_source = row.getColumn(11).getString();
  if (!row.getColumn(12).isNull()) record.state_epoch = row.getColumn(12).getInt64();
  record.origin = row.getColumn(13).getString();
  if (!row.getColumn(14).isNull()) record.step = row.getColumn(14).getInt64();
  return record;
}

std::vector<CheckpointRecord> read_all(SQLite::Statement& statement, const std::filesystem::path& index_path) {
  std::vector<CheckpointRecord> records;
  while (statement.executeStep()) records.push_back(read_record(statement, index_path));
  return records;
}

std::optional<CheckpointRecord> read_first(SQLite::Statement& statement, const std::filesystem::path& index_path) {
  std::optional<CheckpointRecord> record;
  // Reset also when read_record throws (an unknown kind): see below.
  struct ResetOnExit {
    SQLite::Statement& statement;
    ~ResetOnExit() { (void)statement.tryReset(); }
  } reset_on_exit{statement};
  if (statement.executeStep()) record = read_record(statement, index_path);
  // Statements are cached: one left in the middle of its result would keep a read
  // snapshot open, and the WAL could not be checkpointed past it.
  return record;
}

// Binds `args` to parameters 1, 2, ... of a statement: text and integers; an empty
// optional leaves its parameter NULL (prepared() clears the bindings of a cached statement).
// A real is refused at compile time rather than converted to an integer (bind it directly).
void bind_one(SQLite::Statement& statement, int index, std::string_view text) { statement.bind(index, std::string(text)); }
void bind_one(SQLite::Statement& statement, int index, std::int64_t number) { statement.bind(index, static_cast<int64_t>(number)); }
void bind_one(SQLite::Statement& statement, int index, double real) = delete;
template <typename T>
void bind_one(SQLite::Statement& statement, int index, const std::optional<T>& maybe) {
  if (maybe) bind_one(statement, index, *maybe);
}
template <typename... Args>
SQLite::Statement& bound(SQLite::Statement& statement, const Args&... args) {
  int index = 0;
  (bind_one(statement, ++index, args), ...);
  return statement;
}

}  // namespace

CheckpointKind parse_kind(std::string_view kind, std::string_view where) {
  for (CheckpointKind known : {CheckpointKind::best, CheckpointKind::epoch, CheckpointKind::interrupt}) {
    if (kind == to_string(known)) return known;
  }
  throw IndexError(ErrorCode::index,
                   fmt::format("{}: unknown checkpoint kind '{}' (expected best, epoch or interrupt)", where, kind));
}

// Every SQLite call goes through here so that its exceptions leave as IndexError naming
// the index file and what was being done.
template <typename Fn>
auto Index::guarded(std::string_view what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const SQLite::Exception& e) {
    int code = e.getErrorCode() & 0xff;  // the primary result code of an extended one
    ErrorCode error = ErrorCode::index;
    if (e.getExtendedErrorCode() == SQLITE_READONLY_ROLLBACK) {
      throw IndexError(ErrorCode::index,
                       fmt::format("{}: {} failed: {}: {}-journal is a hot journal left by a writer killed in the "
                                   "middle of a transaction, which a read-only connection cannot roll back; the next "
                                   "writer to open the directory (a store, `ckpt gc`) rolls it back",
                                   path_.string(), what, e.what(), path_.string()),
                       path_);
    }
    if (code == SQLITE_BUSY) {
      throw IndexError(ErrorCode::index,
                       fmt::format("{}: {} failed: {} (waited {} s): another connection holds the index locked; a "
                                   "writer on a network file system or with a rollback journal in exclusive locking "
                                   "mode holds it exclusively until its store closes",
                                   path_.string(), what, e.what(), kBusyTimeoutMs / 1000),
                       path_);
    }
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) error = ErrorCode::corrupt;
    if (code == SQLITE_FULL) error = ErrorCode::disk_full;
    if (code == SQLITE_READONLY || code == SQLITE_PERM || code == SQLITE_CANTOPEN) error = ErrorCode::permission_denied;
    throw IndexError(error, fmt::format("{}: {} failed: {}", path_.string(), what, e.what()), path_);
  }
}

Transaction::Transaction(Index& index, Durability durability) : index_(index) { index_.begin(durability); }

Transaction::~Transaction() {
  if (done_) return;
  try {
    index_.db_->exec("ROLLBACK");
  } catch (...) {
    // Destructors never throw. A failed rollback leaves SQLite to roll back when the
    // connection closes, which it always does for an open transaction.
  }
}

void Transaction::commit() {
  index_.guarded("commit", [&] { index_.prepared("COMMIT").exec(); });
  done_ = true;
}

void Index::begin(Durability durability) {
  guarded("begin transaction", [&] {
    // synchronous cannot change inside a transaction, so it is set per transaction here.
    // With a rollback journal NORMAL skips a journal sync a power loss can need to undo a
    // half-written database, and FULL does not sync the directory after DELETE mode's
    // unlink (the commit); EXTRA does both, for every commit.
    if (durability_ != durability) {
      const char* pragma = rollback_journal_           ? "PRAGMA synchronous=EXTRA"
                           : durability == Durability::full ? "PRAGMA synchronous=FULL"
                                                            : "PRAGMA synchronous=NORMAL";
      prepared(pragma).executeStep();
      durability_ = durability;
    }
    prepared("BEGIN IMMEDIATE").exec();
  });
}

Index::Index(std::filesystem::path path, Mode mode, const std::string& vfs, Locking locking, Journal journal)
    : path_(std::move(path)) {
  guarded("open", [&] {
    int flags = SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE;
    std::string name = path_.string();
    if (mode == Mode::read_only) flags = SQLite::OPEN_READONLY;
    if (mode == Mode::pins) flags = SQLite::OPEN_READWRITE;
    if (mode == Mode::immutable) {
      flags = SQLite::OPEN_READONLY | SQLite::OPEN_URI;
      name = "file:" + uri_path(path_) + "?immutable=1";
    }
    db_ = std::make_unique<SQLite::Database>(name, flags, kBusyTimeoutMs, vfs);
    // Must precede the first read: a WAL database read once in normal mode has mapped -shm.
    if (locking == Locking::exclusive) db_->exec("PRAGMA locking_mode=EXCLUSIVE");
  });
  // The schema version is checked before anything writes: an index from a newer ckpt
  // must come out of this untouched (switching to WAL is a write).
  int version = schema_version();
  if (version > static_cast<int>(kMigrationCount)) {
    throw IndexError(ErrorCode::schema_too_new,
                     fmt::format("{}: index schema version {} is newer than this ckpt ({}) supports (up to {}); "
                                 "upgrade ckpt to use this directory",
                                 path_.string(), version, CKPT_VERSION_STRING, kMigrationCount),
                     path_);
  }
  if (mode == Mode::pins) {
    if (version < 4) {
      throw IndexError(ErrorCode::index,
                       fmt::format("{}: index schema version {} has no pins table (a writer of this ckpt "
                                   "version migrates it when it opens the directory)",
                                   path_.string(), version),
                       path_);
    }
    // The index's own journal, as schema_version's read found it: never switched here
    // (a switch out of WAL would need every reader closed; into WAL, is the writer's to
    // decide). A rollback journal here is DELETE mode, a new connection's default.
    rollback_journal_ = journal_mode() != "wal";
    columns_ = fmt::format(kColumns, fmt::arg("seq", commit_order_), fmt::arg("described", kDescribed),
                           fmt::arg("step", kStep));
    return;
  }
  if (mode == Mode::read_only || mode == Mode::immutable) {
    if (version == 0) {
      throw IndexError(ErrorCode::index, fmt::format("{}: not a ckpt index (no schema)", path_.string()), path_);
    }
    if (version < 2) commit_order_ = kCommitOrderBeforeMigration2;
    has_named_metrics_ = version >= 3;
    has_pins_ = version >= 4;
    has_shards_ = version >= 5;
    step_column_ = version >= 4 ? kStep : kStepBeforeMigration4;
    columns_ = fmt::format(kColumns, fmt::arg("seq", commit_order_),
                           fmt::arg("described", has_named_metrics_ ? kDescribed : kDescribedBeforeMigration3),
                           fmt::arg("step", step_column_));
    return;
  }
  set_journal(journal);
  guarded("configure", [&] { db_->exec("PRAGMA foreign_keys=ON"); });
  migrate();
  columns_ = fmt::format(kColumns, fmt::arg("seq", commit_order_), fmt::arg("described", kDescribed),
                         fmt::arg("step", kStep));
}

Index::~Index() = default;

// PRAGMA journal_mode=X returns the mode in force after it: the old one when SQLite could
// not switch (another connection open on a WAL index), which is no error to SQLite.
void Index::set_journal(Journal journal) {
  const std::string wanted = journal == Journal::wal ? "wal" : "truncate";
  const std::string before = journal_mode();
  std::string after;
  std::string cause = "another connection has it open (a reader: `ckpt ls`, `ckpt watch`, a CheckpointReader, "
                      "sqlite3); close it and open the store again";
  try {
    after = guarded("set journal mode", [&] {
      return db_->execAndGet(fmt::format("PRAGMA journal_mode={}", wanted)).getString();
    });
  } catch (const IndexError& error) {
    // Busy (a reader in a transaction) is the same refusal; anything else is its own cause.
    if (error.code() != ErrorCode::index) throw;
    if (std::string_view(error.what()).find("database is locked") == std::string_view::npos) cause = error.what();
    after = before;
  }
  if (after != wanted) {
    throw IndexError(ErrorCode::index,
                     fmt::format("{}: could not switch the index from journal mode {} to {}: {}", path_.string(),
                                 before, wanted, cause),
                     path_);
  }
  rollback_journal_ = journal == Journal::rollback;
}

std::string Index::journal_mode() {
  return guarded("read journal mode", [&] { return db_->execAndGet("PRAGMA journal_mode").getString(); });
}

int Index::synchronous_level() {
  return guarded("read synchronous", [&] { return db_->execAndGet("PRAGMA synchronous").getInt(); });
}

// Statements are compiled once per connection and reused: compiling SQL text was about a
// third of a small save's CPU time. The returned statement is reset, bindings cleared.
SQLite::Statement& Index::prepared(const std::string& sql) {
  auto& cached = statements_[sql];
  if (!cached) {
    cached = std::make_unique<SQLite::Statement>(*db_, sql);
  } else {
    // tryReset, not reset: sqlite3_reset returns the error of the statement's last step,
    // and a statement that failed once (a full disk, a busy database) must be usable
    // again, not fail forever with its old error.
    (void)cached->tryReset();
    cached->clearBindings();
  }
  return *cached;
}

int Index::schema_version() {
  return guarded("read schema version", [&] { return db_->execAndGet("PRAGMA user_version").getInt(); });
}

void Index::migrate() {
  for (std::size_t i = static_cast<std::size_t>(schema_version()); i < kMigrationCount; ++i) {
    const Migration& migration = kMigrations[i];
    guarded(fmt::format("migration {}", migration.name), [&] {
      Transaction transaction(*this, Durability::full);
      db_->exec(migration.sql);
      db_->exec(fmt::format("PRAGMA user_version={}", migration.number));
      transaction.commit();
    });
  }
}

std::optional<std::string> Index::setting(std::string_view key) {
  return guarded("read setting", [&]() -> std::optional<std::string> {
    SQLite::Statement& query = prepared("SELECT value FROM settings WHERE key = ?");
    query.bind(1, std::string(key));
    std::optional<std::string> value;
    if (query.executeStep()) value = query.getColumn(0).getString();
    query.reset();
    return value;
  });
}

void Index::set_setting(std::string_view key, std::string_view value) {
  guarded("write setting", [&] {
    bound(prepared("INSERT INTO settings (key, value) VALUES (?, ?) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
          key, value)
        .exec();
  });
}

std::int64_t Index::insert(const CheckpointRecord& record) {
  return guarded("insert checkpoint", [&] {
    // A row inserted as committed (adopted by recovery) takes its place in the commit order now.
    // An empty created_at is now; an adopted file's is its modification time.
    SQLite::Statement& statement = prepared(
        "INSERT INTO checkpoints (kind, epoch, metric, file, size, hash, hash_algo, status, commit_seq, "
        "metric_source, state_epoch, origin, created_at, step) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, CASE WHEN ?8 = '" + std::string(status::kCommitted) + "' "
        "THEN (SELECT COALESCE((SELECT commit_seq FROM checkpoints WHERE commit_seq IS NOT NULL ORDER BY commit_seq DESC LIMIT 1), 0) + 1) END, "
        "?9, ?10, ?11, COALESCE(?12, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), ?13)");
    statement.bind(1, std::string(to_string(record.kind)));
    if (record.epoch) statement.bind(2, static_cast<int64_t>(*record.epoch));
    if (record.metric) statement.bind(3, *record.metric);
    statement.bind(4, record.file);
    statement.bind(5, static_cast<int64_t>(record.size));
    statement.bind(6, record.hash);
    statement.bind(7, record.hash_algo);
    statement.bind(8, record.status);
    if (!record.metric_source.empty()) statement.bind(9, record.metric_source);
    if (record.state_epoch) statement.bind(10, static_cast<int64_t>(*record.state_epoch));
    statement.bind(11, record.origin.empty() ? std::string(origins::kSaved) : record.origin);
    if (!record.created_at.empty()) statement.bind(12, record.created_at);
    if (record.step) statement.bind(13, static_cast<int64_t>(*record.step));
    statement.exec();
    return db_->getLastInsertRowid();
  });
}

void Index::insert_shards(std::int64_t checkpoint_id, const std::vector<ShardRecord>& shards) {
  guarded("record shards", [&] {
    SQLite::Statement& statement = prepared(
        "INSERT INTO shards (checkpoint_id, rank, world_size, file, size, hash, hash_algo, block_size, "
        "block_hashes, placement) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const auto& shard : shards) {
      statement.reset();
      statement.clearBindings();
      statement.bind(1, static_cast<int64_t>(checkpoint_id));
      statement.bind(2, shard.rank);
      statement.bind(3, shard.world_size);
      statement.bind(4, shard.file);
      statement.bind(5, static_cast<int64_t>(shard.size));
      statement.bind(6, shard.hash);
      statement.bind(7, shard.hash_algo);
      statement.bind(8, static_cast<int64_t>(shard.block_size));
      statement.bind(9, shard.block_hashes);
      statement.bind(10, shard.placement);
      statement.exec();
    }
  });
}

std::vector<ShardRecord> Index::shards(std::int64_t checkpoint_id) {
  if (!has_shards_) return {};
  return guarded("list shards", [&] {
    SQLite::Statement& query = prepared(
        "SELECT checkpoint_id, rank, world_size, file, size, hash, hash_algo, block_size, block_hashes, placement "
        "FROM shards WHERE checkpoint_id = ? ORDER BY rank");
    query.bind(1, static_cast<int64_t>(checkpoint_id));
    std::vector<ShardRecord> shards;
    while (query.executeStep()) {
      ShardRecord shard;
      shard.checkpoint_id = query.getColumn(0).getInt64();
      shard.rank = query.getColumn(1).getInt();
      shard.world_size = query.getColumn(2).getInt();
      shard.file = query.getColumn(3).getString();
      shard.size = static_cast<std::uint64_t>(query.getColumn(4).getInt64());
      shard.hash = query.getColumn(5).getString();
      shard.hash_algo = query.getColumn(6).getString();
      shard.block_size = static_cast<std::uint64_t>(query.getColumn(7).getInt64());
      shard.block_hashes = query.getColumn(8).getString();
      shard.placement = query.getColumn(9).getString();
      shards.push_back(std::move(shard));
    }
    return shards;
  });
}

bool Index::has_shards() {
  if (!has_shards_) return false;
  return guarded("look for shards", [&] {
    SQLite::Statement& query = prepared("SELECT EXISTS (SELECT 1 FROM shards)");
    const bool any = query.executeStep() && query.getColumn(0).getInt() != 0;
    // A statement left on its row keeps its read transaction (and WAL snapshot) open; a
    // later write on this connection would then fail once another connection had written.
    query.reset();
    return any;
  });
}

std::vector<std::string> Index::needed_shard_files() {
  if (!has_shards_) return {};
  return guarded("list needed shards", [&] {
    SQLite::Statement& query = prepared(fmt::format(
        "SELECT shards.file FROM shards JOIN checkpoints ON checkpoints.id = shards.checkpoint_id "
        "WHERE checkpoints.status IN ('{}', '{}', '{}', '{}', '{}')",
        status::kPending, status::kCommitted, status::kConsumed, status::kQuarantined, status::kMissing));
    std::vector<std::string> files;
    while (query.executeStep()) files.push_back(query.getColumn(0).getString());
    return files;
  });
}

std::vector<std::string> Index::live_files_with_shards() {
  if (!has_shards_) return {};
  return guarded("list sharded checkpoints", [&] {
    SQLite::Statement& query = prepared(fmt::format(
        "SELECT file FROM checkpoints WHERE {} AND EXISTS (SELECT 1 FROM shards WHERE checkpoint_id = checkpoints.id)",
        kIsLive));
    std::vector<std::string> files;
    while (query.executeStep()) files.push_back(query.getColumn(0).getString());
    return files;
  });
}

void Index::insert_metrics(std::int64_t checkpoint_id, const std::vector<std::pair<std::string, double>>& metrics) {
  guarded("record metrics", [&] {
    SQLite::Statement& statement =
        prepared("INSERT OR REPLACE INTO metrics (checkpoint_id, position, name, value) VALUES (?, ?, ?, ?)");
    int position = 0;
    for (const auto& [name, value] : metrics) {
      statement.reset();
      statement.clearBindings();
      statement.bind(1, static_cast<int64_t>(checkpoint_id));
      statement.bind(2, position++);
      statement.bind(3, name);
      if (!std::isnan(value)) statement.bind(4, value);
      statement.exec();
    }
  });
}

std::vector<NamedMetric> Index::metrics(std::optional<std::int64_t> checkpoint_id) {
  if (!has_named_metrics_) return {};
  return guarded("list metrics", [&] {
    SQLite::Statement& query =
        prepared(checkpoint_id ? "SELECT checkpoint_id, name, value FROM metrics WHERE checkpoint_id = ? ORDER BY position"
                               : "SELECT checkpoint_id, name, value FROM metrics ORDER BY checkpoint_id, position");
    if (checkpoint_id) query.bind(1, static_cast<int64_t>(*checkpoint_id));
    std::vector<NamedMetric> metrics;
    while (query.executeStep()) {
      NamedMetric metric;
      metric.checkpoint_id = query.getColumn(0).getInt64();
      metric.name = query.getColumn(1).getString();
      metric.value = query.getColumn(2).isNull() ? std::numeric_limits<double>::quiet_NaN() : query.getColumn(2).getDouble();
      metrics.push_back(std::move(metric));
    }
    return metrics;
  });
}

void Index::set_status(std::int64_t id, std::string_view new_status) {
  guarded("update checkpoint status", [&] {
    bound(prepared("UPDATE checkpoints SET status = ?, "
                   "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?"),
          new_status, id)
        .exec();
  });
}

// The next commit_seq is read from the top of checkpoints_by_commit_seq (ORDER BY ...
// LIMIT 1 on the partial index: one step; MAX() here would scan a whole index).
void Index::mark_committed(std::int64_t id) {
  guarded("commit checkpoint", [&] {
    SQLite::Statement& statement = prepared(
        "UPDATE checkpoints SET status = '" + std::string(status::kCommitted) + "', "
        "commit_seq = (SELECT COALESCE((SELECT commit_seq FROM checkpoints WHERE commit_seq IS NOT NULL ORDER BY commit_seq DESC LIMIT 1), 0) + 1), "
        "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?");
    bound(statement, id).exec();
  });
}

void Index::add_event(std::string_view event, std::optional<std::int64_t> checkpoint_id, std::string_view detail) {
  guarded("record event", [&] {
    bound(prepared("INSERT INTO events (event, checkpoint_id, detail) VALUES (?, ?, ?)"), event, checkpoint_id, detail)
        .exec();
  });
}

std::optional<CheckpointRecord> Index::find(std::int64_t id) {
  return guarded("find checkpoint", [&] {
    SQLite::Statement& query = prepared(fmt::format("SELECT {} FROM checkpoints WHERE id = ?", columns_));
    query.bind(1, static_cast<int64_t>(id));
    return read_first(query, path_);
  });
}

std::optional<CheckpointRecord> Index::live_row_for(std::string_view file) {
  return guarded("find live checkpoint", [&] {
    SQLite::Statement& query = prepared(fmt::format("SELECT {} FROM checkpoints WHERE file = ? AND {}", columns_, kIsLive));
    query.bind(1, std::string(file));
    return read_first(query, path_);
  });
}

std::vector<CheckpointRecord> Index::rows_with_status(std::string_view status) {
  return guarded("list checkpoints", [&] {
    SQLite::Statement& query = prepared(fmt::format("SELECT {} FROM checkpoints WHERE status = ? ORDER BY id", columns_));
    query.bind(1, std::string(status));
    return read_all(query, path_);
  });
}

std::vector<CheckpointRecord> Index::rows_for(std::string_view file, std::string_view status) {
  return guarded("list checkpoints", [&] {
    SQLite::Statement& query = prepared(fmt::format("SELECT {} FROM checkpoints WHERE file = ? AND status = ? ORDER BY id DESC", columns_));
    query.bind(1, std::string(file));
    query.bind(2, std::string(status));
    return read_all(query, path_);
  });
}

std::vector<CheckpointRecord> Index::live_rows() {
  return guarded("list checkpoints", [&] {
    SQLite::Statement& query = prepared(fmt::format("SELECT {} FROM checkpoints WHERE {} ORDER BY kind, epoch, id", columns_, kIsLive));
    return read_all(query, path_);
  });
}

std::vector<CheckpointRecord> Index::live_rows_with(std::uint64_t size, const std::string& hash,
                                                    const std::string& hash_algo) {
  return guarded("find checkpoints by content", [&] {
    SQLite::Statement& query = prepared(fmt::format(
        "SELECT {} FROM checkpoints WHERE {} AND size = ? AND hash = ? AND hash_algo = ? ORDER BY kind, epoch, id",
        columns_, kIsLive));
    query.bind(1, static_cast<int64_t>(size));
    query.bind(2, hash);
    query.bind(3, hash_algo);
    return read_all(query, path_);
  });
}

std::vector<CheckpointRecord> Index::committed_after(std::int64_t commit_seq, int limit) {
  return guarded("list new checkpoints", [&] {
    SQLite::Statement& query = prepared(fmt::format("SELECT {0} FROM checkpoints WHERE {2} AND {1} > ? "
                                                    "ORDER BY {1} LIMIT ?",
                                                    columns_, commit_order_, kIsLive));
    query.bind(1, static_cast<int64_t>(commit_seq));
    query.bind(2, limit);
    return read_all(query, path_);
  });
}

namespace {
// SQLite's date modifier for now + ttl_ms ("+1.500 seconds").
std::string ttl_modifier(std::int64_t ttl_ms) {
  return fmt::format("+{}.{:03} seconds", ttl_ms / 1000, ttl_ms % 1000);
}
}  // namespace

std::optional<Index::Pin> Index::insert_pin(std::int64_t checkpoint_id, std::string_view holder, std::int64_t ttl_ms) {
  return guarded("pin checkpoint", [&]() -> std::optional<Pin> {
    Transaction transaction(*this, Durability::full);
    SQLite::Statement& insert = prepared(fmt::format(
        "INSERT INTO pins (checkpoint_id, holder, expires_at) SELECT id, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) "
        "FROM checkpoints WHERE id = ? AND {}",
        kIsLive));
    insert.bind(1, std::string(holder));
    insert.bind(2, ttl_modifier(ttl_ms));
    insert.bind(3, static_cast<int64_t>(checkpoint_id));
    if (insert.exec() == 0) return std::nullopt;
    Pin pin;
    pin.id = db_->getLastInsertRowid();
    SQLite::Statement& read = prepared("SELECT expires_at FROM pins WHERE id = ?");
    read.bind(1, static_cast<int64_t>(pin.id));
    if (read.executeStep()) pin.expires_at = read.getColumn(0).getString();
    transaction.commit();
    return pin;
  });
}

std::optional<std::string> Index::renew_pin(std::int64_t pin_id, std::int64_t ttl_ms) {
  return guarded("renew pin", [&]() -> std::optional<std::string> {
    Transaction transaction(*this, Durability::full);
    SQLite::Statement& update =
        prepared("UPDATE pins SET expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) WHERE id = ?");
    update.bind(1, ttl_modifier(ttl_ms));
    update.bind(2, static_cast<int64_t>(pin_id));
    if (update.exec() == 0) return std::nullopt;
    SQLite::Statement& read = prepared("SELECT expires_at FROM pins WHERE id = ?");
    read.bind(1, static_cast<int64_t>(pin_id));
    std::optional<std::string> expires;
    if (read.executeStep()) expires = read.getColumn(0).getString();
    transaction.commit();
    return expires;
  });
}

void Index::delete_pin(std::int64_t pin_id) {
  guarded("release pin", [&] {
    Transaction transaction(*this, Durability::full);
    SQLite::Statement& remove = prepared("DELETE FROM pins WHERE id = ?");
    remove.bind(1, static_cast<int64_t>(pin_id));
    remove.exec();
    transaction.commit();
  });
}

std::vector<CheckpointRecord> Index::commits_after(std::int64_t commit_seq, int limit) {
  return guarded("list commits", [&] {
    SQLite::Statement& query = prepared(
        fmt::format("SELECT {0} FROM checkpoints WHERE {1} > ? ORDER BY {1} LIMIT ?", columns_, commit_order_));
    query.bind(1, static_cast<int64_t>(commit_seq));
    query.bind(2, limit);
    return read_all(query, path_);
  });
}

std::optional<std::int64_t> Index::watch_cursor(std::string_view name) {
  if (!has_pins_) return std::nullopt;
  return guarded("read watch cursor", [&]() -> std::optional<std::int64_t> {
    SQLite::Statement& query = prepared("SELECT last_commit_seq FROM watch_cursors WHERE name = ?");
    query.bind(1, std::string(name));
    if (!query.executeStep()) return std::nullopt;
    return query.getColumn(0).getInt64();
  });
}

bool Index::move_watch_cursor(std::string_view name, std::optional<std::int64_t> from, std::int64_t to) {
  return guarded("move watch cursor", [&] {
    Transaction transaction(*this, Durability::full);
    int changed = 0;
    if (from) {
      SQLite::Statement& update = prepared(
          "UPDATE watch_cursors SET last_commit_seq = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
          "WHERE name = ? AND last_commit_seq = ?");
      update.bind(1, static_cast<int64_t>(to));
      update.bind(2, std::string(name));
      update.bind(3, static_cast<int64_t>(*from));
      changed = update.exec();
    } else {
      SQLite::Statement& insert =
          prepared("INSERT INTO watch_cursors (name, last_commit_seq) VALUES (?, ?) ON CONFLICT (name) DO NOTHING");
      insert.bind(1, std::string(name));
      insert.bind(2, static_cast<int64_t>(to));
      changed = insert.exec();
    }
    transaction.commit();
    return changed == 1;
  });
}

std::vector<CheckpointRecord> Index::all_rows() {
  return guarded("list checkpoints", [&] {
    SQLite::Statement& query = prepared(fmt::format("SELECT {} FROM checkpoints ORDER BY id", columns_));
    return read_all(query, path_);
  });
}

std::vector<Index::Event> Index::events() {
  return guarded("list events", [&] {
    SQLite::Statement& query = prepared("SELECT id, at, event, checkpoint_id, detail FROM events ORDER BY id");
    std::vector<Event> events;
    while (query.executeStep()) {
      Event event;
      event.id = query.getColumn(0).getInt64();
      event.at = query.getColumn(1).getString();
      event.event = query.getColumn(2).getString();
      if (!query.getColumn(3).isNull()) event.checkpoint_id = query.getColumn(3).getInt64();
      event.detail = query.getColumn(4).getString();
      events.push_back(std::move(event));
    }
    return events;
  });
}

std::optional<CheckpointRecord> Index::resume_candidate(std::optional<std::int64_t> committed_before) {
  return guarded("find resume candidate", [&]() -> std::optional<CheckpointRecord> {
    // One index range scan per (status, kind) that can be resumed from, newest commit
    // first; the newest of the three wins. (One query with status IN and kind IN would
    // sort every live row, which is every row of a directory that keeps all epochs.)
    static const std::pair<std::string_view, std::string_view> kResumable[] = {
        {status::kCommitted, to_string(CheckpointKind::epoch)},
        {status::kCommitted, to_string(CheckpointKind::interrupt)},
        {status::kConsumed, to_string(CheckpointKind::interrupt)}};
    SQLite::Statement& query = prepared(fmt::format("SELECT {0} FROM checkpoints WHERE status = ? AND kind = ? "
                                                    "AND {1} < ? ORDER BY {1} DESC LIMIT 1",
                                                    columns_, commit_order_));
    std::optional<CheckpointRecord> newest;
    for (const auto& [row_status, kind] : kResumable) {
      query.reset();
      query.bind(1, std::string(row_status));
      query.bind(2, std::string(kind));
      query.bind(3, static_cast<int64_t>(committed_before.value_or(std::numeric_limits<std::int64_t>::max())));
      auto record = read_first(query, path_);
      if (record && (!newest || record->commit_seq > newest->commit_seq)) newest = std::move(record);
    }
    return newest;
  });
}

std::optional<CheckpointRecord> Index::best() {
  return guarded("find best checkpoint", [&] {
    SQLite::Statement& query = prepared(fmt::format("SELECT {0} FROM checkpoints WHERE {2} AND {3} ORDER BY {1} DESC LIMIT 1",
                                                    columns_, commit_order_, kIsCommitted, kIsBest));
    return read_first(query, path_);
  });
}

std::vector<Index::RotationRow> Index::rotation_order() {
  return guarded("order checkpoints for rotation", [&] {
    // Newest first, in the order of the (status, kind, commit_seq) index: no sort. An epoch
    // checkpoint (not a step checkpoint) whose epoch is not below the lowest epoch of the
    // epoch checkpoints committed after it belongs to a run that was restarted from an
    // earlier state (superseded). Computed here in one pass rather than by a window
    // function in SQL, which sorted the rows again on every save.
    SQLite::Statement& query = prepared(
        fmt::format("SELECT {0} FROM checkpoints WHERE {2} AND {3} ORDER BY {1} DESC", columns_, commit_order_,
                    kIsCommitted, kIsEpoch));
    std::vector<RotationRow> rows;
    std::optional<std::int64_t> later_min;
    while (query.executeStep()) {
      RotationRow row;
      row.record = read_record(query, path_);
      const auto& r = row.record;
      if (!r.step && r.epoch) {
        row.superseded = later_min && *later_min <= *r.epoch;
        later_min = later_min ? std::min(*later_min, *r.epoch) : *r.epoch;
      }
      rows.push_back(std::move(row));
    }
    std::stable_partition(rows.begin(), rows.end(), [](const RotationRow& row) { return !row.superseded; });
    return rows;
  });
}

std::vector<Index::HeldPin> Index::held_pins() {
  if (!has_pins_) return {};
  return guarded("list pins", [&] {
    SQLite::Statement& query = prepared(fmt::format(
        "SELECT checkpoint_id, holder, MAX(expires_at) FROM pins WHERE {} GROUP BY checkpoint_id, holder "
        "ORDER BY checkpoint_id, holder",
        kPinHolds));
    std::vector<HeldPin> pins;
    while (query.executeStep()) {
      pins.push_back(HeldPin{query.getColumn(0).getInt64(), query.getColumn(1).getString(), query.getColumn(2).getString()});
    }
    return pins;
  });
}

std::vector<std::pair<std::int64_t, std::optional<double>>> Index::periodic_metric(std::string_view name) {
  if (!has_named_metrics_) return {};
  return guarded("read a metric for retention", [&] {
    SQLite::Statement& query = prepared(fmt::format(
        "SELECT c.id, m.value FROM checkpoints c JOIN metrics m ON m.checkpoint_id = c.id "
        "WHERE c.{} AND c.{} AND m.name = ? ORDER BY c.id",
        kIsCommitted, kIsEpoch));
    query.bind(1, std::string(name));
    std::vector<std::pair<std::int64_t, std::optional<double>>> values;
    while (query.executeStep()) {
      std::optional<double> value;
      if (!query.getColumn(1).isNull()) value = query.getColumn(1).getDouble();
      values.emplace_back(query.getColumn(0).getInt64(), value);
    }
    return values;
  });
}

std::vector<Index::CommitTime> Index::periodic_commit_times(std::int64_t from_commit_seq) {
  return guarded("read commit times", [&] {
    // julianday() is NULL for text that is not a time; 2440587.5 is the Unix epoch's.
    SQLite::Statement& query = prepared(fmt::format(
        "SELECT id, {1}, CAST(ROUND((julianday(created_at) - 2440587.5) * 86400000.0) AS INTEGER) "
        "FROM checkpoints WHERE {0} AND {1} >= ? ORDER BY {1}",
        kIsEpoch, commit_order_));
    query.bind(1, static_cast<int64_t>(from_commit_seq));
    std::vector<CommitTime> times;
    while (query.executeStep()) {
      CommitTime time;
      time.id = query.getColumn(0).getInt64();
      time.commit_seq = query.getColumn(1).getInt64();
      if (!query.getColumn(2).isNull()) time.created_ms = query.getColumn(2).getInt64();
      times.push_back(time);
    }
    return times;
  });
}

void Index::replace_retention(const std::vector<std::pair<std::int64_t, std::string>>& kept) {
  guarded("record retention", [&] {
    std::set<std::pair<std::int64_t, std::string>> wanted(kept.begin(), kept.end());
    std::vector<std::pair<std::int64_t, std::string>> stale;
    SQLite::Statement& stored = prepared("SELECT checkpoint_id, policy FROM retention");
    while (stored.executeStep()) {
      auto pair = std::make_pair(stored.getColumn(0).getInt64(), stored.getColumn(1).getString());
      if (wanted.erase(pair) == 0) stale.push_back(std::move(pair));
    }
    stored.reset();
    SQLite::Statement& remove = prepared("DELETE FROM retention WHERE checkpoint_id = ? AND policy = ?");
    for (const auto& [id, policy] : stale) {
      remove.reset();
      remove.clearBindings();
      bound(remove, id, std::string_view(policy)).exec();
    }
    SQLite::Statement& insert = prepared("INSERT INTO retention (checkpoint_id, policy) VALUES (?, ?)");
    for (const auto& [id, policy] : wanted) {  // what is left: not stored yet
      insert.reset();
      insert.clearBindings();
      bound(insert, id, std::string_view(policy)).exec();
    }
  });
}

std::optional<CheckpointRecord> Index::best_by(std::string_view metric, bool minimize) {
  if (!has_named_metrics_) return std::nullopt;
  return guarded("find the best checkpoint by a metric", [&] {
    SQLite::Statement& query = prepared(fmt::format(
        "SELECT {0} FROM checkpoints JOIN metrics m ON m.checkpoint_id = checkpoints.id "
        "WHERE {2} AND {3} AND m.name = ? AND m.value IS NOT NULL "
        "ORDER BY CASE WHEN ? THEN m.value ELSE -m.value END, {1} DESC LIMIT 1",
        columns_, commit_order_, kIsCommitted, kIsEpoch));
    query.bind(1, std::string(metric));
    query.bind(2, minimize ? 1 : 0);
    return read_first(query, path_);
  });
}

std::optional<CheckpointRecord> Index::newest_epoch(std::int64_t except_id) {
  return guarded("find the newest epoch checkpoint", [&] {
    SQLite::Statement& query = prepared(fmt::format("SELECT {0} FROM checkpoints WHERE {2} AND {3} AND id != ? "
                                                    "ORDER BY {1} DESC LIMIT 1",
                                                    columns_, commit_order_, kIsCommitted, kIsEpoch));
    query.bind(1, static_cast<int64_t>(except_id));
    return read_first(query, path_);
  });
}

std::vector<CheckpointRecord> Index::epochs_from(std::int64_t epoch) {
  return guarded("find superseded checkpoints", [&] {
    SQLite::Statement& query = prepared(fmt::format("SELECT {} FROM checkpoints WHERE {} AND {} AND epoch >= ? ORDER BY epoch",
                                                    columns_, kIsCommitted, kIsEpoch));
    query.bind(1, static_cast<int64_t>(epoch));
    return read_all(query, path_);
  });
}

bool Index::file_moved() {
  return guarded("check the index file", [&] {
    int moved = 0;
    int rc = sqlite3_file_control(db_->getHandle(), "main", SQLITE_FCNTL_HAS_MOVED, &moved);
    return rc == SQLITE_OK && moved != 0;
  });
}

void Index::copy_to(const std::filesystem::path& target) {
  guarded("copy the index", [&] {
    SQLite::Statement statement(*db_, "VACUUM INTO ?");
    statement.bind(1, target.string());
    statement.exec();
  });
}

std::string Index::integrity_check() {
  return guarded("check integrity", [&] { return db_->execAndGet("PRAGMA integrity_check").getString(); });
}

}  // namespace ckpt::index
