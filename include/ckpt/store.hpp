// CheckpointStore: the torch-free core of ckpt.
//
// A directory of checkpoint payloads plus `index.sqlite`, the transactional record of
// what each file is (kind, epoch, metric, size, hash) and what happened to it (events).
// The store writes payload bytes durably, decides resume priority, best lookup and
// rotation by SQL queries, verifies hashes on load, and repairs the directory after a
// crash when it opens. It never sees a tensor: the caller streams payload bytes in
// (PayloadWriter) and gets verified bytes back. CheckpointManager is the libtorch-facing
// layer over it; tools and tests that need no tensors use it directly and start fast.
//
// Durability (see docs/durability.md for the full contract):
//   - A save that returned survives a process crash (kill -9) and a power loss.
//   - A save that failed or was killed leaves, under its file name, either the previous
//     checkpoint or the new one, complete and matching its index row.
//   - A process crash or power loss during a save loses only that save.
//
// Thread safety: a CheckpointStore is used from one thread at a time (one per directory
// and thread, or guarded by the caller). Its own background worker (save_async) is the one
// extra thread: it holds the store's internal mutex for each save it runs, and every
// public call waits for the saves in flight and then takes that mutex, so the caller
// never sees a half-done save. in_flight() alone takes only the queue's small mutex and
// never waits for a save. Exactly one store may write a directory at a time: the constructor takes an
// advisory lock on the directory (FileSystem::lock_exclusive; index.lock names the
// holder) and throws LockedError naming the holder if it is taken. A child forked
// without exec does not inherit the lock and must not use the parent's store.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/file_system.hpp"
#include "ckpt/payload_io.hpp"
#include "ckpt/retention.hpp"

namespace ckpt {

enum class CheckpointKind { best, epoch, interrupt };
// "best", "epoch", "interrupt": the values of the index's `kind` column.
std::string_view to_string(CheckpointKind kind) noexcept;

// The values of CheckpointRecord::origin (the index's `origin` column; docs/schema.md).
namespace origins {
inline constexpr char kSaved[] = "saved";        // by a save call (also one recovery rolled forward)
inline constexpr char kAdopted[] = "adopted";    // a complete file found without a row
inline constexpr char kExternal[] = "external";  // another writer's save under a committed name
inline constexpr const char* kAll[] = {kSaved, kAdopted, kExternal};
}  // namespace origins

// One row of the index's `checkpoints` table.
struct CheckpointRecord {
  std::int64_t id = 0;
  CheckpointKind kind = CheckpointKind::epoch;
  std::optional<std::int64_t> epoch;
  std::optional<double> metric;
  std::string file;  // name relative to the checkpoint directory
  std::uint64_t size = 0;
  std::string hash;
  std::string hash_algo;
  std::string status;      // see docs/schema.md for the lifecycle
  std::string created_at;  // UTC, ISO-8601 with milliseconds
  // Position in the directory's order of commits (1, 2, ...): what "newest" means for
  // resume and rotation. 0 for a row that was never committed (pending, aborted).
  std::int64_t commit_seq = 0;
  // Where `metric` came from, in words: "the save's argument", "val_acc in the state",
  // "epoch 12, the same content"; empty when there is no metric.
  std::string metric_source;
  // The epoch the checkpoint's state is of: an epoch checkpoint's own epoch; for the best
  // model and an interrupt checkpoint the state's `epoch` entry (or the save's argument),
  // when known.
  std::optional<std::int64_t> state_epoch;
  // How the row came to be (docs/schema.md): "saved" by a save call (also one recovery
  // rolled forward), "adopted" (a complete file found without a row: copied in, or
  // written by another program), "external" (a complete file another writer saved under
  // a committed name, replacing that row's bytes).
  std::string origin = origins::kSaved;
  // The global training step the checkpoint is of, when its save gave one (the index's
  // `step` column; NULL in indexes before schema 4). An epoch-kind row with a step is a
  // step checkpoint, named checkpoint_step_<step>.pth; its `epoch` is then only recorded.
  std::optional<std::int64_t> step;
};

// A named number of a checkpoint's state (a top-level int or float entry: val_acc,
// train_loss, ...), recorded in the index's `metrics` table.
struct NamedMetric {
  std::int64_t checkpoint_id = 0;
  std::string name;
  double value = 0;
};

// One rank's shard of a multi-rank checkpoint (ckpt::distributed): a row of the index's
// `shards` table (docs/schema.md, "Shards"). The checkpoint's own row is its manifest.
struct ShardRecord {
  std::int64_t checkpoint_id = 0;
  int rank = 0;
  int world_size = 1;
  std::string file;  // relative to the checkpoint directory
  std::uint64_t size = 0;
  std::string hash;  // of the whole file
  std::string hash_algo;
  // The file's bytes in blocks of block_size (the last shorter), each block's xxh3-64 as
  // 16 hex digits, concatenated: what a load reading only some byte ranges checks them by.
  std::uint64_t block_size = 0;
  std::string block_hashes;
  std::string placement = "[]";  // JSON: where this shard's sharded tensors sit (schema.md)
};

// What retention (ckpt/retention.hpp) decides for one live periodic checkpoint.
struct RetentionDecision {
  CheckpointRecord record;
  // Why it stays, one entry per rule that keeps it: "newest", "resume point",
  // "pinned by <holder> until <UTC>", "newest 5", "top 3 by val_loss (min)",
  // "top 3 by val_loss (min): not judged, no val_loss", "every 10 epochs",
  // "every 1000 steps", "one per 3600 s". Empty: it is deleted.
  std::vector<std::string> kept_by;
  // When deleted, why no rule keeps it: "beyond the newest 5; rank 4 by val_loss (min),
  // 0.52; epoch 7 is not a multiple of 10".
  std::string delete_reason;
  bool kept() const noexcept { return !kept_by.empty(); }
};

// What a save records besides the payload.
//
// Step checkpoints (docs/schema.md, "Steps"): a save of kind epoch with `step` set is
// named checkpoint_step_<step>.pth, whatever its `epoch` (recorded, not in the name). It is the periodic kind: it rotates with the epoch checkpoints and competes
// with them for resume, both by commit order. The best model and the interrupt
// checkpoint may carry a step too; it is recorded only, their names do not change.
struct SaveRequest {
  CheckpointKind kind = CheckpointKind::epoch;
  // kind epoch: epoch set (a step checkpoint's too: the index requires an epoch of every
  // periodic row); best, interrupt: epoch unset (their state's epoch goes in
  // state_epoch). Each >= 0.
  std::optional<std::int64_t> epoch;
  std::optional<std::int64_t> step;  // the global step (CheckpointRecord::step)
  std::optional<double> metric;       // the index's `metric` column (best lookup, `ckpt ls`)
  std::string metric_source;          // see CheckpointRecord::metric_source
  std::optional<std::int64_t> state_epoch;
  std::vector<std::pair<std::string, double>> metrics;  // named metrics, in order
  std::uint64_t size_hint = 0;        // expected payload size, checked against free space
  // The caller expects the payload to equal a live checkpoint's (the same state saved
  // again under another name: the guide's best model after its epoch checkpoint). The
  // store then runs the writer first into a sink that only hashes, and on a match links
  // the name to that file without writing anything; otherwise it runs the writer again
  // and saves as usual. A wrong guess costs one hashing pass of the payload, never a
  // wrong file. The writer must produce the same bytes each time it runs.
  bool likely_duplicate = false;
  // A multi-rank checkpoint's shards (ckpt::distributed), one per rank 0..world_size-1,
  // each already written and synced by its rank under its shard_file name in this
  // directory: recorded with the row in one transaction, so that nothing sees the
  // checkpoint without all of them. Each file must be there with its recorded size, else
  // the save throws IoError naming the rank and the file before anything is written.
  // Superseded, rotated out or removed, a checkpoint's shard files go with it.
  std::vector<ShardRecord> shards;
};

// Writes one payload to the sink. It may throw; the save is then abandoned cleanly.
using PayloadWriter = std::function<void(ByteSink&)>;

// Decodes a payload from a source. The store checks the whole file's hash against the
// index once it returns; the decoded result must not be used if the load then fails.
using PayloadReader = std::function<void(PayloadSource&, const CheckpointRecord&)>;

// StoreOptions::index_journal.
enum class IndexJournal { automatic, wal, rollback };

struct StoreOptions {
  // Epoch checkpoints kept by rotation: the `max_to_keep` most recently committed
  // (epochs a restarted run superseded go first; docs/durability.md). 0 keeps all.
  // Stored in the index so that tools apply the same rule.
  int max_to_keep = 5;
  // Rules that keep periodic checkpoints beyond the newest max_to_keep (top k by a
  // metric, every N epochs or steps, one per interval: ckpt/retention.hpp). Stored in
  // the index beside max_to_keep. Rules with max_to_keep 0 are InvalidArgument.
  RetentionRules retention;
  HashAlgorithm hash_algorithm = HashAlgorithm::xxh3_128;
  // The file-system seam; nullptr means FileSystem::posix().
  std::shared_ptr<FileSystem> file_system;
  // A writer refuses a directory on a network file system (NFS, SMB/CIFS, Ceph, AFS, 9P,
  // Lustre, GPFS, FUSE, ...: FileSystem::file_system_type) with an IoError naming this
  // option, because there the writer lock may not exclude writers on other hosts,
  // directory fsync may not be durable, and SQLite's WAL needs memory shared on one host.
  // With true it proceeds, logs a warning, and opens the index with
  // PRAGMA locking_mode=EXCLUSIVE, with the journal index_journal picks (a rollback
  // journal unless told otherwise): then nothing else, not `ckpt ls` nor sqlite3, can
  // read the index while this store is open ("database is locked"). Make sure only one
  // host ever writes the directory.
  bool allow_network_file_system = false;
  // The index's journal (docs/durability.md, "Network file systems"):
  //   automatic: a rollback journal on a network file system, WAL elsewhere.
  //   wal: SQLite's write-ahead log. On a network file system (allowed above) with
  //     locking_mode=EXCLUSIVE set before WAL is first used, so its index lives in this
  //     process's memory (no -shm); that relies on the server's byte-range locks as much
  //     as a rollback journal does, and a crash leaves a -wal the next writer must read.
  //   rollback: SQLite's rollback journal (journal_mode=TRUNCATE, index.sqlite-journal),
  //     on any file system; locking_mode=EXCLUSIVE on a network one. Each commit writes
  //     the old pages to the journal and fsyncs it, writes the database and fsyncs it,
  //     then truncates the journal and fsyncs that: every commit is durable when it
  //     returns, the deferred ones of WAL mode too (a save costs a few more fsyncs). A
  //     process crash loses only the transaction in progress: the next open rolls the
  //     hot journal back (a read-only reader cannot, and refuses the index until then).
  //     A power loss loses nothing committed and at most the transaction in progress, on
  //     storage that honours fsync (on NFS: COMMIT; the claim is as good as the server).
  //     An I/O error during a commit fails it (IndexError); SQLite rolls it back from the
  //     journal, or the next open does; committed transactions are untouched.
  // An index in the other mode is converted when the store opens: out of WAL the -wal is
  // checkpointed into index.sqlite and deleted, which needs every other connection
  // closed (a reader's: `ckpt ls`, `ckpt watch`, a CheckpointReader), else IndexError.
  IndexJournal index_journal = IndexJournal::automatic;
  // Saves submitted by save_async and not finished (queued or being written) at most;
  // the next save_async blocks until one finishes. >= 1, else InvalidArgument.
  int max_in_flight = 1;
};

// A save submitted by save_async that has not finished (CheckpointStore::in_flight).
struct InFlightSave {
  std::uint64_t ticket = 0;  // its place in submission order (1, 2, ...)
  CheckpointKind kind = CheckpointKind::epoch;
  std::optional<std::int64_t> epoch;
  std::optional<std::int64_t> step;
  std::string file;  // the name it is saved under
  // false: queued, nothing written yet. true: the worker is running the save protocol;
  // its pending row (status 'pending', shown by `ckpt ls` as being written) exists from
  // step 3 (docs/durability.md) until it commits.
  bool started = false;
};

// The bytes of a checkpoint whose hash matched its committed row.
struct VerifiedPayload {
  CheckpointRecord record;
  std::vector<char> bytes;
};

// What recovery found and did when the store opened (also logged and recorded as events).
struct RecoveryReport {
  int rolled_forward = 0;       // pending saves whose rename had happened: committed
  int rolled_back = 0;          // pending saves whose rename had not happened: aborted
  int deletions_finished = 0;   // obsolete files whose deletion was cut short
  int temp_files_removed = 0;
  int adopted = 0;              // checkpoint files without a row, valid: now committed
  int external_saves = 0;       // committed names another writer saved anew (valid): adopted
  int left_unloadable = 0;      // files without a row the restricted reader refuses: left alone
  int quarantined = 0;          // files moved into quarantine/
  int missing = 0;              // committed rows whose file was gone or of the wrong size
  int shards_removed = 0;       // shard files no row needs (RepairAction::remove_shard_file)
  bool anything_done() const;
};

// One step of recovery or repair, as planned before anything is changed.
struct RepairAction {
  enum class Type {
    roll_forward,           // a save whose rename happened: commit it
    roll_back,              // a save whose rename did not happen: abort it, keep the old file
    finish_deletion,        // an obsolete file whose deletion was cut short
    remove_temp_file,       // a leftover *.tmp
    mark_missing,           // a committed row whose file is gone
    quarantine_checkpoint,  // a committed row whose file has another size or hash
    delete_again,           // a file with no row whose bytes match a deleted row (undone deletion)
    adopt,                  // a complete checkpoint file with no row
    adopt_external,         // a committed name holding another writer's complete, valid save
    quarantine_file,        // a damaged checkpoint file with no row
    leave_unloadable,       // a complete file with no row that would not load (e.g. a numpy
                            // scalar in it): not adopted, left as it is
    leave_unreadable,       // a file that could not be read (EIO): it and its row are left as they are
    remove_shard_file,      // a multi-rank checkpoint's shard no row needs: its save never
                            // committed, or its checkpoint was replaced or deleted
  };
  Type type;
  std::optional<std::int64_t> checkpoint_id;
  std::string file;
  std::string reason;
  std::uint64_t size = 0;  // adopt: what the file holds
  std::string hash;
};
std::string_view to_string(RepairAction::Type type) noexcept;

// The state of a directory's index (CheckpointStore::check_index).
struct IndexHealth {
  enum class State {
    ok,        // opens, passes PRAGMA integrity_check, and every row and event reads
    missing,   // no index.sqlite
    damaged,   // not a database, fails the integrity check, or a row does not read
    too_new,   // written by a newer ckpt (schema version above this build's)
  };
  State state = State::ok;
  std::string detail;  // damaged, too_new: why (SQLite's report, which may span lines)
};

// What CheckpointStore::rebuild_index did.
struct IndexRebuild {
  IndexHealth found;                 // the index as it was under the writer lock
  std::filesystem::path old_index;   // where it was moved aside; empty when it was missing or ok
  RecoveryReport recovery;           // what adopting the directory's files did
};

class CheckpointStore {
 public:
  // Opens (creating if needed) the directory and its index, takes the writer lock,
  // applies pending index migrations, and recovers from any interrupted save.
  // Throws LockedError, IndexError (schema too new, not a database), IoError (also for a
  // network file system unless allow_network_file_system), InvalidArgument
  // (max_to_keep < 0, max_in_flight < 1, a retention rule validate() refuses).
  explicit CheckpointStore(std::filesystem::path dir, StoreOptions options = {});
  // Waits for the asynchronous saves in flight; never throws (failures never raised are
  // logged). So does a move assignment for the store it replaces.
  ~CheckpointStore();
  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;
  CheckpointStore(CheckpointStore&&) noexcept;
  CheckpointStore& operator=(CheckpointStore&&) noexcept;

  // Durably saves a payload under the kind's file name (best_model.pth,
  // checkpoint_epoch_N.pth, interrupt_checkpoint.pth), replacing any file of that name
  // atomically. When the payload's bytes equal a live checkpoint's (size and hash, and
  // that file still hashes to them), the name becomes a hard link to that file and the
  // bytes are not written again ('linked' event; docs/durability.md, "Shared files");
  // where the file system cannot link, the bytes are written (logged once per store). `size_hint` is the expected payload size, checked against free space
  // before anything is written. Epoch saves then rotate and delete the interrupt
  // checkpoint they supersede. Returns the committed row.
  // A failure after the pending row leaves the save to be resolved by content: the store
  // then resolves it at the start of the next call, or refuses every call with IoError
  // (ErrorCode::needs_recovery) until the directory is reopened (docs/durability.md,
  // "Failures past the point of no return").
  // REQUIRES: epoch set (>= 0) exactly when kind == epoch (step checkpoints: the
  // SaveRequest overload).
  CheckpointRecord save(CheckpointKind kind, std::optional<std::int64_t> epoch,
                        std::optional<double> metric, std::uint64_t size_hint,
                        const PayloadWriter& write_payload);
  // As above, with the step, named metrics and state epoch the row records; a request
  // with a step saves checkpoint_step_<step>.pth. Throws InvalidArgument for a request
  // SaveRequest's rules refuse (naming the directory and the rule).
  CheckpointRecord save(const SaveRequest& request, const PayloadWriter& write_payload);
  // As above, for the one save an earlier failure must not stop: the interrupt checkpoint
  // (CheckpointManager::save_interrupt_checkpoint). Waits for the asynchronous saves in
  // flight like every call, then saves even if some of them failed, and leaves their
  // failures to wait() and the calls after it (each raised once, oldest first).
  CheckpointRecord save_despite_failures(const SaveRequest& request, const PayloadWriter& write_payload);

  // Asynchronous saves (docs/durability.md, "Asynchronous saves"). Queues the save and
  // returns; the store's background worker (started by the first call) runs save()'s
  // protocol for it, in submission order. Nothing is acknowledged by this call: a save is
  // acknowledged once wait(), or any later call that waits for the saves in flight (all
  // but save_async, in_flight() and the accessors dir(), index_path(), max_to_keep();
  // with max_in_flight 1 also the next save_async), returns without raising its failure.
  // Blocks first while max_in_flight saves
  // are in flight (back-pressure). `write_payload` runs on the worker and must keep what
  // it writes alive and unchanged until the save finishes (it is destroyed then, on the
  // worker, before the slot is freed), and must not call this store (it would wait for
  // itself).
  // Throws, before queueing: InvalidArgument for a request save() would refuse so (kind
  // and epoch), or an empty writer; the oldest failure of an earlier asynchronous save not
  // raised yet (this save is then not queued).
  void save_async(SaveRequest request, PayloadWriter write_payload);
  // Blocks until every save submitted so far has committed or failed, then raises the
  // oldest failure not raised yet, if any. Each failure of an asynchronous save is logged
  // when it happens and raised exactly once, as the exception the save threw (an IoError
  // naming the file and the cause, ...), by wait() or the next call below; several are
  // raised one per call, oldest first (call wait() until it returns to see them all).
  // A call that raises an earlier failure does nothing else. Later saves still run after
  // one fails: each is a save of its own, as a loop of save() calls that caught each
  // failure would have done. The destructor waits too, and logs failures never raised.
  void wait();
  // What is queued or being written now, oldest first. Never waits, never raises an
  // earlier failure: the caller may poll it while a save is written.
  std::vector<InFlightSave> in_flight() const;

  // Every call below (and save()) first waits for the asynchronous saves in flight, then
  // raises the oldest failure not raised yet (see wait()) instead of doing its work. So
  // saves keep their order and queries see every submitted save committed or failed.

  // The checkpoint a resume would load: the most recently committed epoch or interrupt
  // checkpoint. A query, no file is read.
  std::optional<CheckpointRecord> latest() const;
  // The committed best model, if any. A query, no file is read.
  std::optional<CheckpointRecord> best() const;
  // Committed and consumed checkpoints, ordered by kind then epoch.
  std::vector<CheckpointRecord> live_checkpoints() const;
  // The named metrics of a checkpoint, in the order they were recorded.
  std::vector<NamedMetric> metrics_of(std::int64_t checkpoint_id) const;
  // The shards of a multi-rank checkpoint, by rank; empty for a single-file checkpoint.
  std::vector<ShardRecord> shards_of(std::int64_t checkpoint_id) const;

  // Loads the resume candidate through `read_payload`, hashing the whole file in the
  // same pass, and checks the hash once the reader returns. A file that is missing or
  // does not match is marked in the index, moved into quarantine/ and logged as an
  // error, and the next candidate in commit order (newest first) is tried (so the reader
  // may run more than once; only its last run counts). An error the reader throws on a
  // file whose hash matches is rethrown. A file that cannot be read (IoError) is left as
  // it is, logged, and the next candidate tried. An interrupt checkpoint is marked
  // consumed; its file stays until the next epoch or interrupt save commits.
  // Returns the loaded row, or nullopt when no candidate is left.
  std::optional<CheckpointRecord> load_latest(const PayloadReader& read_payload);
  // The same for the best model; nullopt when there is none (or it was corrupt). Throws
  // IoError when its file cannot be read (nothing is changed then).
  std::optional<CheckpointRecord> load_best(const PayloadReader& read_payload);

  // Verify, then apply (restore in place, ckpt/restore.hpp): as above with `verify` as the
  // reader, and, once a candidate's hash has matched its row, `apply` run on that file
  // read afresh (not hashed again: it checks what it reads, e.g. each record's CRC-32).
  // `verify` must change nothing the caller keeps; only `apply` may. What `apply` throws
  // passes through as it is, and then nothing is marked: the file verified, so it is
  // neither quarantined nor consumed, and no 'resumed_from' is recorded.
  std::optional<CheckpointRecord> load_latest(const PayloadReader& verify, const PayloadReader& apply);
  std::optional<CheckpointRecord> load_best(const PayloadReader& verify, const PayloadReader& apply);

  // As above, returning the verified bytes.
  std::optional<VerifiedPayload> load_latest();
  std::optional<VerifiedPayload> load_best();

  // Applies retention now: the store's policy, with `keep` for max_to_keep when given
  // (0 keeps all; with rules, 0 is InvalidArgument), and deletes what no rule keeps,
  // recorded as 'rotated_out' with the reason. Returns the removed rows.
  std::vector<CheckpointRecord> gc(std::optional<int> keep = std::nullopt);
  // The same with a whole policy for this run (the stored one is not changed), returning
  // the decision that removed each (its row and delete_reason).
  std::vector<RetentionDecision> gc(const RetentionPolicy& policy);
  // What retention decides now for each live periodic checkpoint, most recently
  // committed first (the store's policy, or `policy`). Changes nothing.
  std::vector<RetentionDecision> retention_plan(const std::optional<RetentionPolicy>& policy = std::nullopt) const;
  // The live periodic (epoch or step) checkpoint best by a named metric: NaN and a
  // missing metric are never best, among equal values the most recently committed wins.
  // nullopt when no live periodic checkpoint has a number for it. A query.
  std::optional<CheckpointRecord> best_by(std::string_view metric, MetricMode mode) const;
  // Removes one committed or consumed checkpoint and its file ('removed' event).
  // Throws InvalidArgument when there is no such live row.
  CheckpointRecord remove(std::int64_t id);

  const std::filesystem::path& dir() const noexcept;
  std::filesystem::path index_path() const;
  int max_to_keep() const noexcept;
  RetentionPolicy retention() const;  // max_to_keep and the rules, as opened
  const RecoveryReport& last_recovery() const noexcept;

  // What a full repair of `dir` would do, without the lock and without changing
  // anything: the recovery an open performs, plus a rehash of every committed file
  // (`verify_hashes`). Throws IndexError for a missing, damaged or too new index.
  static std::vector<RepairAction> plan_repair(const std::filesystem::path& dir, bool verify_hashes = true,
                                               StoreOptions options = {});
  // Carries out a full repair now (recovery plus rehashing every committed file;
  // mismatches are quarantined) and returns what was done.
  std::vector<RepairAction> repair();

  // The state of `dir`'s index, read without the lock and without changing anything.
  static IndexHealth check_index(const std::filesystem::path& dir, StoreOptions options = {});
  // Rebuilds the index of `dir` from its checkpoint files, holding the writer lock
  // throughout: checks the index again under the lock; unless it is ok, moves
  // index.sqlite and its -wal and -shm aside as index.sqlite.old-<UTC stamp> (never
  // deleted) and syncs the directory; then opens as the constructor does, which creates
  // a new index and adopts every complete checkpoint file (RecoveryReport), and syncs the
  // directory again. The new index records options.max_to_keep. An index that is ok is
  // kept (only the open's recovery runs).
  // A process crash during the moves leaves each of the old index's files under its name
  // or aside, never lost (run the rebuild again, or rename them back); a power loss before
  // the first directory fsync may also undo moves already made. After that fsync the old
  // index stays aside and the new one holds what was adopted before the crash (the next
  // open adopts the rest). Once this returns, both survive a power loss.
  // Throws LockedError (a writer holds the directory); IndexError (schema_too_new) for an
  // index from a newer ckpt unless `replace_newer`; IoError naming the file when moving
  // it aside fails (the old index stays in place: sidecars already moved are put back,
  // and the message names any that could not be) or
  // the directory fsync fails (the old index is aside and there is no index: the next
  // open or rebuild creates one); otherwise what the constructor throws.
  static IndexRebuild rebuild_index(const std::filesystem::path& dir, StoreOptions options = {},
                                    bool replace_newer = false);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckpt
