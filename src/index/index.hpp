// The SQLite index of one checkpoint directory: schema migrations, the queries behind
// resume priority, best lookup and rotation, and the event log.
//
// Durability: the database runs in WAL mode or, where WAL cannot be used (a network file
// system: WAL's index needs memory shared on one host), with a rollback journal
// (Journal::rollback: journal_mode=TRUNCATE). In WAL mode a transaction begun with
// Durability::full is fsynced at commit (synchronous=FULL); one begun with
// Durability::deferred is made durable by the next full commit or checkpoint
// (synchronous=NORMAL), and a power loss before that may roll it back, never tear it. The
// store uses deferred commits only where recovery can redo the work from durable state
// (see docs/durability.md). With a rollback journal every commit is full, deferred ones
// too (synchronous=EXTRA): there NORMAL could let a power loss corrupt the database, not
// just roll a transaction back.
//
// SQLite errors are rethrown as IndexError naming the index file. Not thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ckpt/store.hpp"

namespace SQLite {
class Database;
class Statement;
}

namespace ckpt::index {

enum class Durability { full, deferred };

// Statuses of a row: their one home in C++, from which the queries are written. Their
// meanings are in docs/schema.md; migrations/0001_init.sql's CHECK constraint holds the
// copy the database enforces (index_test checks that the two agree).
namespace status {
inline constexpr std::string_view kPending = "pending";
inline constexpr std::string_view kCommitted = "committed";
inline constexpr std::string_view kConsumed = "consumed";
inline constexpr std::string_view kReplaced = "replaced";
inline constexpr std::string_view kAborted = "aborted";
inline constexpr std::string_view kDeleting = "deleting";
inline constexpr std::string_view kDeleted = "deleted";
inline constexpr std::string_view kQuarantined = "quarantined";
inline constexpr std::string_view kMissing = "missing";
inline constexpr std::string_view kAll[] = {kPending, kCommitted, kConsumed,    kReplaced, kAborted,
                                            kDeleting, kDeleted,  kQuarantined, kMissing};
}  // namespace status

// Keys of the `settings` table (docs/schema.md): their one home.
namespace settings {
inline constexpr char kMaxToKeep[] = "max_to_keep";  // the newest N the last writer kept
inline constexpr char kRetention[] = "retention";    // its rules, as to_string(RetentionRules)
}  // namespace settings

// The kind a `kind` column value names (to_string(CheckpointKind) is the other way).
// Throws IndexError naming the value and `where` (the index and row it came from) for any
// other value: a row of a kind this build does not know is not guessed at.
CheckpointKind parse_kind(std::string_view kind, std::string_view where);

class Index;

// BEGIN IMMEDIATE in the constructor; ROLLBACK in the destructor unless commit() ran.
// The destructor never throws.
class Transaction {
 public:
  Transaction(Index& index, Durability durability);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Index& index_;
  bool done_ = false;
};

class Index {
 public:
  enum class Mode {
    read_write,  // create if missing, switch to the Journal asked for, apply migrations
    read_only,   // never writes: for readers beside a running writer (tools, sqlite3)
    immutable,   // read_only with SQLite's immutable=1: no locks, no -shm, no -wal read;
                 // for a directory this user cannot write. Sees the main database file as
                 // it is: commits still in a -wal are not seen, later commits may or may
                 // not be, and a concurrent checkpoint of the WAL can make reads fail.
    pins,        // read-write, for a reader's pins only: never creates, migrates or
                 // switches journal mode; refuses an index without the pins table. On an
                 // index with a rollback journal every commit is synchronous=EXTRA.
  };
  // In read_only, immutable and pins modes a rollback-journal index left with a hot
  // journal (index.sqlite-journal, by a writer killed mid-transaction) cannot be read
  // read-only: IndexError saying so until a read-write connection rolls it back (the
  // next writer's open; a pins connection does it too). Immutable mode does not look at
  // the journal: it may then read a half-written transaction (SQLite may call that
  // corruption).

  enum class Locking {
    normal,     // WAL with its shared-memory index: readers read beside the writer
    exclusive,  // PRAGMA locking_mode=EXCLUSIVE before WAL is first used: the WAL index
                // lives in this process's heap (no -shm, which needs memory shared on one
                // host); the connection keeps the file locked, so no other reads beside it.
                // With a rollback journal: the first write takes the exclusive lock and
                // keeps it until the connection closes (readers get "database is locked").
  };

  // Read-write mode's journal (the others never change it). Switching an index out of
  // WAL checkpoints the -wal into the database and deletes the -wal (and -shm); it needs
  // the only connection to the index. Switching into WAL needs no other connection in a
  // transaction. Either refused: IndexError naming the file and the cause.
  enum class Journal {
    wal,       // journal_mode=WAL (persistent in the file)
    rollback,  // journal_mode=TRUNCATE: a commit truncates index.sqlite-journal to 0 and
               // fsyncs it (no directory entry changes per commit: no directory fsync
               // needed, unlike DELETE, whose commit is an unlink). Not persistent: a
               // later connection opens it as DELETE, which is still a rollback journal.
  };

  // Opens the database and refuses a schema newer than this build (never modifying it).
  // In read_write mode creates it if missing and applies missing migrations, each in
  // its own transaction; in read_only mode a missing or unmigrated index is an error.
  Index(std::filesystem::path path, Mode mode = Mode::read_write, const std::string& vfs = {},
        Locking locking = Locking::normal, Journal journal = Journal::wal);
  ~Index();

  const std::filesystem::path& path() const noexcept { return path_; }
  // SQLite's journal_mode of this connection ("wal", "truncate", "delete", ...), and its
  // synchronous level (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA) as the last begin() set it.
  std::string journal_mode();
  int synchronous_level();
  int schema_version();

  std::optional<std::string> setting(std::string_view key);
  void set_setting(std::string_view key, std::string_view value);

  // Inserts a row and returns its id. `record.id` is ignored; an empty `created_at` is now.
  std::int64_t insert(const CheckpointRecord& record);
  // Records a checkpoint's named metrics (position = order in `metrics`; NaN as NULL).
  void insert_metrics(std::int64_t checkpoint_id, const std::vector<std::pair<std::string, double>>& metrics);
  // Named metrics of one checkpoint, or of all (by id); empty before migration 0003.
  std::vector<NamedMetric> metrics(std::optional<std::int64_t> checkpoint_id = std::nullopt);
  // A checkpoint's shards (migration 0005), by rank.
  void insert_shards(std::int64_t checkpoint_id, const std::vector<ShardRecord>& shards);
  std::vector<ShardRecord> shards(std::int64_t checkpoint_id);
  // Whether any row has shards (the store then looks for shard files to remove).
  bool has_shards();
  // The shard files a row still needs: those of pending, committed, consumed, quarantined
  // and missing rows (a replaced, aborted or deleted checkpoint's are garbage).
  std::vector<std::string> needed_shard_files();
  // The live rows (file names) that have shard rows.
  std::vector<std::string> live_files_with_shards();
  void set_status(std::int64_t id, std::string_view new_status);
  void add_event(std::string_view event, std::optional<std::int64_t> checkpoint_id, std::string_view detail);

  std::optional<CheckpointRecord> find(std::int64_t id);
  // The committed or consumed row for a file name.
  std::optional<CheckpointRecord> live_row_for(std::string_view file);
  std::vector<CheckpointRecord> rows_with_status(std::string_view status);
  // Rows of a file name in a status, newest first.
  std::vector<CheckpointRecord> rows_for(std::string_view file, std::string_view status);
  std::vector<CheckpointRecord> live_rows();
  // The live rows holding exactly these bytes (size, hash and its algorithm), as live_rows
  // orders them: what a save may hard-link to instead of writing.
  std::vector<CheckpointRecord> live_rows_with(std::uint64_t size, const std::string& hash, const std::string& hash_algo);
  // Every row, oldest first (history included).
  std::vector<CheckpointRecord> all_rows();
  struct Event {
    std::int64_t id;
    std::string at;
    std::string event;
    std::optional<std::int64_t> checkpoint_id;
    std::string detail;
  };
  std::vector<Event> events();

  // Makes a pending row committed and gives it the next place in the commit order.
  void mark_committed(std::int64_t id);

  // Resume: the most recently committed resumable row (a committed epoch checkpoint, or
  // a committed or consumed interrupt checkpoint), among those committed before
  // `committed_before` (a commit_seq) when given: the next candidate after that one.
  std::optional<CheckpointRecord> resume_candidate(std::optional<std::int64_t> committed_before = std::nullopt);
  std::optional<CheckpointRecord> best();
  // Retention's queries (store/retention_plan.cpp builds the plan from them).
  // Committed periodic (epoch-kind) rows in rotation's order: kept first are the most
  // recently committed that no later commit of a lower epoch superseded (a run restarted
  // from an earlier state supersedes the higher epochs of the run it abandoned), then the
  // superseded ones, most recently committed first. Step checkpoints are never superseded
  // (their epoch is the epoch they were taken in, not a run's position).
  struct RotationRow {
    CheckpointRecord record;
    bool superseded = false;
  };
  std::vector<RotationRow> rotation_order();
  // Pins that still hold (expires_at after now, SQLite's clock), by checkpoint.
  struct HeldPin {
    std::int64_t checkpoint_id = 0;
    std::string holder;
    std::string expires_at;
  };
  std::vector<HeldPin> held_pins();
  // A named metric of each committed periodic row that records it (nullopt: NaN); rows
  // without it are absent.
  std::vector<std::pair<std::int64_t, std::optional<double>>> periodic_metric(std::string_view name);
  // Every periodic row ever committed (rotated out, replaced and retired ones too) with
  // commit_seq >= `from_commit_seq`, in commit order: its id, commit_seq and created_at in
  // ms since the Unix epoch (nullopt when the text is not a time).
  struct CommitTime {
    std::int64_t id = 0;
    std::int64_t commit_seq = 0;
    std::optional<std::int64_t> created_ms;
  };
  std::vector<CommitTime> periodic_commit_times(std::int64_t from_commit_seq = 0);
  // Makes the `retention` table hold exactly `kept` (checkpoint id, policy): deletes the
  // pairs not in it and inserts the new ones, so a pass that changes little writes little.
  void replace_retention(const std::vector<std::pair<std::int64_t, std::string>>& kept);
  // The live periodic row best by a named metric (NULL/NaN never; ties: newest commit).
  std::optional<CheckpointRecord> best_by(std::string_view metric, bool minimize);
  // The most recently committed epoch row other than `except_id`.
  std::optional<CheckpointRecord> newest_epoch(std::int64_t except_id);
  // Committed epoch rows with an epoch >= `epoch`, lowest first.
  std::vector<CheckpointRecord> epochs_from(std::int64_t epoch);

  // Live (committed or consumed) rows committed after `commit_seq`, in commit order, at
  // most `limit` of them. Never a pending row.
  std::vector<CheckpointRecord> committed_after(std::int64_t commit_seq, int limit);

  // Pins (Mode::pins): each in its own IMMEDIATE transaction. expires_at is computed by
  // SQLite from its clock: now + ttl_ms, in the created_at format.
  struct Pin {
    std::int64_t id = 0;
    std::string expires_at;
  };
  // nullopt when no live row has `checkpoint_id` (checked in the same transaction).
  std::optional<Pin> insert_pin(std::int64_t checkpoint_id, std::string_view holder, std::int64_t ttl_ms);
  // The new expiry; nullopt when the pin's row is gone.
  std::optional<std::string> renew_pin(std::int64_t pin_id, std::int64_t ttl_ms);
  void delete_pin(std::int64_t pin_id);

  // Every row committed after `commit_seq`, in commit order, whatever its status is now
  // (a row rotated out, replaced or quarantined since keeps its commit_seq), at most
  // `limit` of them.
  std::vector<CheckpointRecord> commits_after(std::int64_t commit_seq, int limit);

  // Watch cursors (migration 0004's watch_cursors): nullopt when `name` has none (or the
  // index predates the table).
  std::optional<std::int64_t> watch_cursor(std::string_view name);
  // Mode::pins, one full (fsynced) IMMEDIATE transaction: sets cursor `name` to `to` if it
  // is at `from` (nullopt: it does not exist yet). False, changing nothing, otherwise.
  bool move_watch_cursor(std::string_view name, std::optional<std::int64_t> from, std::int64_t to);

  // Whether the index file was deleted or replaced since it was opened (this connection
  // would then write into a file no one can open again).
  bool file_moved();
  // Writes a consistent copy of the whole database to `target` (VACUUM INTO), which must
  // not exist. Not synced: the caller syncs it.
  void copy_to(const std::filesystem::path& target);

  // PRAGMA integrity_check: "ok", or SQLite's first complaint.
  std::string integrity_check();

 private:
  friend class Transaction;
  void begin(Durability durability);
  void migrate();
  void set_journal(Journal journal);
  template <typename Fn>
  auto guarded(std::string_view what, Fn&& fn) -> decltype(fn());
  SQLite::Statement& prepared(const std::string& sql);

  std::filesystem::path path_;
  std::unique_ptr<SQLite::Database> db_;
  // Declared after db_: destroyed before the connection closes.
  std::unordered_map<std::string, std::unique_ptr<SQLite::Statement>> statements_;
  std::optional<Durability> durability_;
  // A rollback journal: every commit is synchronous=EXTRA, whatever its Durability.
  bool rollback_journal_ = false;
  // SQL for the commit order, and the columns read_record reads.
  std::string commit_order_ = "commit_seq";
  bool has_named_metrics_ = true;  // migration 0003 (read-only views of older indexes lack it)
  std::string columns_;
  // The step column (migration 0004), NULL in a read-only view of an older index.
  std::string step_column_ = "step";
  bool has_pins_ = true;  // migration 0004
  bool has_shards_ = true;  // migration 0005
};

}  // namespace ckpt::index
