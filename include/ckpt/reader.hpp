// CheckpointReader: read-only access to a checkpoint directory's index and files.
//
// For tools and scripts beside a running trainer: it never takes the writer lock, never
// writes, never recovers (a reader sees the directory as the last commit left it; the
// writer repairs on its next open). SQLite's WAL mode lets it read while the writer
// writes. Torch-free: a program that links only ckpt::core starts in milliseconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/file_system.hpp"
#include "ckpt/store.hpp"

namespace ckpt {

struct CheckpointEvent {
  std::int64_t id = 0;
  std::string at;     // UTC, ISO-8601
  std::string event;  // saved, new_best, rotated_out, resumed_from, ... (docs/schema.md)
  std::optional<std::int64_t> checkpoint_id;
  std::string detail;
};

struct VerifyResult {
  CheckpointRecord record;
  bool ok = false;
  std::string problem;  // empty when ok: "missing", "size 10 != 20", "hash ... != ...",
                        // "would not load: <the restricted reader's refusal>"
};

struct ReaderOptions {
  // How the index is opened (docs/durability.md, "Readers").
  //   automatic: shared when this user can write the index's directory (or the -shm and
  //     -wal files already exist and are readable), else immutable.
  //   shared: SQLite read-only beside a running writer; sees each new commit. Needs a
  //     writable directory or existing readable -shm and -wal files.
  //   immutable: SQLite's immutable=1: no locks, no -shm; the reader sees the index as it
  //     was when opened (later commits are not seen, wait_for_new only times out), and a
  //     writer committing meanwhile may make its reads fail or be inconsistent.
  enum class Access { automatic, shared, immutable } access = Access::automatic;
  std::shared_ptr<FileSystem> file_system;  // nullptr: FileSystem::posix()
};

// A candidate a verified load passed over, and why ("checkpoint_epoch_3.pth: xxh3_128
// hash ..., index recorded ...", "checkpoint_epoch_3.pth: missing").
struct SkippedCheckpoint {
  CheckpointRecord record;
  std::string problem;
};

// What a reader's verified load returns: the bytes whose whole-file hash matched the row,
// and the newer candidates it skipped on the way (newest first).
struct ReaderLoad {
  VerifiedPayload payload;
  std::vector<SkippedCheckpoint> skipped;
};

// A lease on a checkpoint recorded in the index's `pins` table: while it holds
// (expires_at > now), rotation does not delete the checkpoint. Move-only; the destructor
// releases it (deletes the row) and never throws; a process that dies leaves the row,
// which stops holding at expires_at. Times are UTC from this host's clock.
class CheckpointPin {
 public:
  CheckpointPin() noexcept;
  ~CheckpointPin();
  CheckpointPin(CheckpointPin&&) noexcept;
  CheckpointPin& operator=(CheckpointPin&&) noexcept;
  CheckpointPin(const CheckpointPin&) = delete;
  CheckpointPin& operator=(const CheckpointPin&) = delete;

  // False for a default-constructed, moved-from or released pin.
  bool active() const noexcept;
  std::int64_t id() const noexcept;             // the pins row's id
  std::int64_t checkpoint_id() const noexcept;
  const std::string& holder() const noexcept;
  const std::string& expires_at() const noexcept;  // UTC, ISO-8601 with milliseconds
  // Moves the expiry to now + ttl. Throws InvalidArgument (ttl <= 0, or the pin is not
  // active), IndexError when the row is gone (the checkpoint's pin expired and a writer
  // removed it) or the index cannot be written.
  void renew(std::chrono::milliseconds ttl);
  // Deletes the row; a no-op when not active. Throws IndexError when it cannot.
  void release();

 private:
  friend class CheckpointReader;
  struct State;
  explicit CheckpointPin(std::unique_ptr<State> state) noexcept;
  std::unique_ptr<State> state_;
};

// What wait_for_new accepts: a kind (any when empty) and a predicate over the row and its
// named metrics (any when empty).
struct WaitCondition {
  std::optional<CheckpointKind> kind;
  std::function<bool(const CheckpointRecord&, const std::vector<NamedMetric>&)> accept;
};

class CheckpointReader {
 public:
  // Throws IndexError when the directory has no index (not a ckpt directory), the index
  // is damaged, or it was written by a newer ckpt.
  explicit CheckpointReader(std::filesystem::path dir, std::shared_ptr<FileSystem> file_system = nullptr);
  CheckpointReader(std::filesystem::path dir, ReaderOptions options);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;
  CheckpointReader& operator=(CheckpointReader&&) noexcept;

  const std::filesystem::path& dir() const noexcept;
  // Committed and consumed checkpoints; with `include_history`, every row ever written.
  std::vector<CheckpointRecord> checkpoints(bool include_history = false) const;
  // What load_latest_checkpoint() would load, and what load_best_model() would.
  std::optional<CheckpointRecord> latest() const;
  std::optional<CheckpointRecord> best() const;
  std::vector<CheckpointEvent> events() const;
  // Every named metric of every row (history included), by checkpoint id, then in the
  // order recorded; with `checkpoint_id`, that checkpoint's only, in the order recorded.
  std::vector<NamedMetric> metrics(std::optional<std::int64_t> checkpoint_id = std::nullopt) const;
  // Every checkpoint committed after `after_commit_seq`, in commit order, whatever its
  // status is now (one rotated out, replaced or quarantined since keeps its commit_seq;
  // `status` says what became of it), at most `limit` of them: how a consumer that must
  // account for every commit (ckpt watch) learns of those gone before it got to them.
  std::vector<CheckpointRecord> commits_after(std::int64_t after_commit_seq, int limit) const;
  // What CheckpointStore::gc(keep) would remove now, most recently committed first
  // (default: the retention the last writer used, else 5; 0 keeps all). Changes nothing.
  std::vector<CheckpointRecord> gc_plan(std::optional<int> keep = std::nullopt) const;
  // What retention decides now for each live periodic checkpoint, most recently committed
  // first: `policy`, else the one the last writer recorded (retention()). Changes nothing.
  std::vector<RetentionDecision> retention_plan(const std::optional<RetentionPolicy>& policy = std::nullopt) const;
  // The retention the last writer used, if recorded.
  std::optional<int> max_to_keep() const;
  // The whole policy the last writer recorded (max_to_keep, else 5, and its rules).
  // Throws IndexError naming the index when the stored rules do not parse (a newer ckpt's).
  RetentionPolicy retention() const;
  // As CheckpointStore::best_by.
  std::optional<CheckpointRecord> best_by(std::string_view metric, MetricMode mode) const;
  // SQLite's integrity check of the index: "ok", or what is damaged.
  std::string integrity_check() const;
  // Rehashes every committed or consumed checkpoint file against its row.
  // `progress(bytes_done, bytes_total)` is called as files are read.
  std::vector<VerifyResult> verify(const std::function<void(std::uint64_t, std::uint64_t)>& progress = {}) const;

  // Verified loads, as the manager's (whole-file hash against the row), but never writing:
  // a candidate whose file is missing, of another size or hash, or rotated away while it
  // is read is skipped (reported in ReaderLoad::skipped) and the next one is tried; the
  // writer quarantines on its next load or open. nullopt when no candidate verifies.
  // When none verifies and `skipped_when_none` is given, it receives the candidates
  // skipped (newest first; empty when there was no candidate), so the caller can say why.
  // load_latest: resume priority (CheckpointStore::load_latest's order).
  std::optional<ReaderLoad> load_latest(std::vector<SkippedCheckpoint>* skipped_when_none = nullptr) const;
  // load_best: the best model; nothing to fall back to, so a bad one is skipped, nullopt.
  std::optional<ReaderLoad> load_best(std::vector<SkippedCheckpoint>* skipped_when_none = nullptr) const;
  // One checkpoint by id: nullopt when no live row has that id (never committed, rotated
  // out, retired); throws CorruptError naming the file when its file does not match the
  // row (missing, another size or hash), IoError when it cannot be read.
  std::optional<ReaderLoad> load(std::int64_t checkpoint_id) const;

  // Pins a live checkpoint for `ttl` (> 0). Writes only the `pins` table, through its own
  // short-lived read-write connection with a busy timeout. `holder` defaults to
  // "pid N on HOST". Throws InvalidArgument (ttl <= 0, or the checkpoint is not live,
  // naming it), IoError (ErrorCode::permission_denied) when index.sqlite cannot be
  // written by this user (pins need write access), IndexError otherwise.
  CheckpointPin pin(std::int64_t checkpoint_id, std::chrono::milliseconds ttl, std::string holder = {}) const;

  // Waits for a checkpoint committed after `after_commit_seq` (committed or consumed rows
  // only: never a pending one) that matches `condition`; returns the first such in commit
  // order, or nullopt when `timeout` passes first. Polls the index (10 ms, doubling to at
  // most 200 ms; docs/durability.md). In immutable access it never sees a new commit.
  std::optional<CheckpointRecord> wait_for_new(std::int64_t after_commit_seq, std::chrono::milliseconds timeout,
                                               const WaitCondition& condition = {}) const;

  // Watch cursors (the index's watch_cursors table; docs/cli.md, "ckpt watch"): a named
  // consumer's place in the commit order, the commit_seq of the last checkpoint it is
  // done with. nullopt when `name` has no cursor.
  std::optional<std::int64_t> watch_cursor(const std::string& name) const;
  // Moves cursor `name` from `from` (nullopt: it has none yet) to `to`, fsynced before it
  // returns. False, changing nothing, when the cursor is not at `from` (another consumer
  // of that name moved it). Writes only watch_cursors, through a short-lived read-write
  // connection as pin() does, and throws as pin() does: IoError (permission_denied) when
  // index.sqlite cannot be written by this user, IndexError otherwise.
  bool move_watch_cursor(const std::string& name, std::optional<std::int64_t> from, std::int64_t to) const;

  // Whether the index was opened immutable (a snapshot; see ReaderOptions).
  bool read_only_access() const;

 private:
  VerifyResult verify_one(const CheckpointRecord& row) const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckpt
