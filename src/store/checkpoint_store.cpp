// The save protocol, recovery and verified loads of a checkpoint directory.
//
// Save (each step named as the on_step hook sees it):
//   1. write `<final>.<pid>-<n>.tmp`, hashing as it goes      "temp_written"
//   2. fsync and close it                                     "temp_synced"
//   3. insert a pending row (size, hash); full commit         "pending_committed"
//   4. rename the temp file onto the final name               "renamed"
//   5. fsync the directory                                    "dir_synced"
//   6. commit the row; supersede the old row of that name;
//      mark obsolete files 'deleting'; deferred commit        "committed"
//   7. unlink the obsolete files; mark them 'deleted'         "obsolete_deleted"
// Step 6 may use a deferred (unsynced) commit because steps 3 to 5 made everything it
// records recoverable: after a power loss, recovery finds the pending row and the file
// under the final name matching it, and redoes step 6 (finish_save) itself.
// A failure after step 3 leaves the save unresolved (Unresolved): every later call first
// resolves it by content (resolve()) or refuses, until the directory is reopened.
// Step 6 gives the row its place in the commit order (commit_seq): resume and rotation
// follow that order, not the epoch number.
//
// Recovery (at open, holding the writer lock) resolves pending rows by content,
// finishes deletions, removes temp files, marks rows whose file vanished, and adopts or
// quarantines checkpoint files without a row. See docs/durability.md.
#include "ckpt/store.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <tuple>
#include <ctime>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "ckpt/errors.hpp"
#include "index/index.hpp"
#include "io/file_source.hpp"
#include "io/file_hash.hpp"
#include "io/temp_file.hpp"
#include "store/file_names.hpp"
#include "store/payload_probe.hpp"
#include "log/log.hpp"

namespace ckpt {

std::string_view to_string(CheckpointKind kind) noexcept {
  switch (kind) {
    case CheckpointKind::best: return "best";
    case CheckpointKind::epoch: return "epoch";
    case CheckpointKind::interrupt: return "interrupt";
  }
  return "unknown";
}

bool RecoveryReport::anything_done() const {
  return rolled_forward + rolled_back + deletions_finished + temp_files_removed + adopted + external_saves +
             quarantined + missing > 0;
}

namespace {

namespace status = index::status;
using index::Durability;
using index::Transaction;
using spdlog::level::level_enum;

// Another writer's temp file this young may be a save in progress (the Python guide's
// `<final>.tmp`, renamed onto its name when torch.save returns): recovery leaves it.
constexpr std::int64_t kYoungTempFileNs = 10'000'000'000;
// Room left beside the payload for the index's WAL growth and file-system metadata.
constexpr std::uint64_t kFreeSpaceMargin = 1 << 20;
constexpr const char* kMaxToKeepSetting = "max_to_keep";
// Where a writer whose index was deleted under it puts the copy it recreates it from.
constexpr const char* kRecreatedIndex = "index.sqlite.recreated";

std::string host_name() {
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0) return "unknown-host";
  return buffer;
}

std::string utc_stamp() {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &tm);
  return buffer;
}

std::string describe(const CheckpointRecord& record) {
  if (record.kind == CheckpointKind::epoch) return fmt::format("{} (epoch {})", record.file, *record.epoch);
  if (record.state_epoch) return fmt::format("{} (state of epoch {})", record.file, *record.state_epoch);
  return record.file;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A file's modification time as the index writes times: UTC, ISO-8601, milliseconds.
std::string iso_utc(std::int64_t ns) {
  const std::time_t seconds = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buffer, static_cast<int>(ns / 1'000'000 % 1000));
}

}  // namespace

class CheckpointStore::Impl {
 public:
  struct PlanOnly {};

  Impl(std::filesystem::path dir, StoreOptions options)
      : dir_(std::move(dir)), options_(std::move(options)), fs_(options_.file_system) {
    if (options_.max_to_keep < 0) {
      throw InvalidArgument(fmt::format("{}: max_to_keep must be >= 0 (0 keeps all), got {}", dir_.string(),
                                        options_.max_to_keep),
                            dir_);
    }
    if (!fs_) fs_ = FileSystem::posix();
    fs_->create_directories(dir_);
    // See StoreOptions::allow_network_file_system for what goes wrong there.
    const FileSystemType fs_type = fs_->file_system_type(dir_);
    if (fs_type.network && !options_.allow_network_file_system) {
      throw IoError(ErrorCode::io,
                    fmt::format("{}: refusing to write checkpoints on a network file system ({}): the writer lock, "
                                "directory fsync and SQLite's WAL are not reliable there; use a local directory, or "
                                "set StoreOptions::allow_network_file_system to write from one host at a time",
                                dir_.string(), fs_type.name),
                    dir_);
    }
    if (fs_type.network) {
      log::write(level_enum::warn,
                 "{}: writing on a network file system ({}) as allowed; the index is opened in exclusive locking "
                 "mode (no readers while this store is open); make sure only one host writes this directory",
                 dir_.string(), fs_type.name);
    }
    lock_ = fs_->lock_exclusive(dir_ / names::kLock, fmt::format("pid {} on {}", ::getpid(), host_name()));
    index_locking_ = fs_type.network ? index::Index::Locking::exclusive : index::Index::Locking::normal;
    take_recreated_index();
    index_ = std::make_unique<index::Index>(dir_ / names::kIndex, index::Index::Mode::read_write, options_.sqlite_vfs,
                                            index_locking_);
    record_retention_setting();
    apply(plan(/*verify_hashes=*/false));
  }

  // For planning only: no lock, a read-only index, nothing recovered or written.
  Impl(std::filesystem::path dir, StoreOptions options, PlanOnly)
      : dir_(std::move(dir)), options_(std::move(options)), fs_(options_.file_system) {
    if (!fs_) fs_ = FileSystem::posix();
    const std::filesystem::path index_path = dir_ / names::kIndex;
    if (!fs_->file_size(index_path)) {
      throw IndexError(ErrorCode::index, fmt::format("{}: no {}", dir_.string(), names::kIndex), index_path);
    }
    index_ = std::make_unique<index::Index>(index_path, index::Index::Mode::read_only);
  }

  CheckpointRecord save(const SaveRequest& request, const PayloadWriter& write_payload) {
    const CheckpointKind kind = request.kind;
    const std::optional<std::int64_t> epoch = request.epoch;
    if ((kind == CheckpointKind::epoch) != epoch.has_value()) {
      throw InvalidArgument(fmt::format("{}: an epoch number is required for epoch checkpoints and only for them",
                                        dir_.string()), dir_);
    }
    if (epoch && *epoch < 0) {
      throw InvalidArgument(fmt::format("{}: epoch must be >= 0, got {}", dir_.string(), *epoch), dir_);
    }
    ensure_still_locked();
    ensure_resolved();
    ensure_index_present();
    const std::string final_name = names::checkpoint_file(kind, epoch);
    const std::filesystem::path final_path = dir_ / final_name;
    check_free_space(final_path, request.size_hint);

    io::HashingTempFile temp(*fs_, dir_ / names::temp_file(final_name, ::getpid(), ++temp_sequence_),
                             options_.hash_algorithm);
    write_payload(temp);
    step("temp_written");
    io::FileDigest digest = temp.sync_and_close(!options_.unsafe_skip_file_fsync);
    step("temp_synced");

    CheckpointRecord record;
    record.kind = kind;
    record.epoch = epoch;
    record.metric = request.metric;
    if (request.metric) record.metric_source = request.metric_source.empty() ? "the save's argument" : request.metric_source;
    record.state_epoch = kind == CheckpointKind::epoch ? epoch : request.state_epoch;
    record.file = final_name;
    record.size = digest.size;
    record.hash = digest.hash;
    record.hash_algo = std::string(to_string(options_.hash_algorithm));
    record.status = std::string(status::kPending);
    {
      Transaction transaction(*index_, Durability::full);
      record.id = index_->insert(record);
      index_->insert_metrics(record.id, request.metrics);
      transaction.commit();
    }
    step("pending_committed");

    // Past the point of no return: from here a failure leaves a pending row that only
    // the content of the file can resolve. Until it is resolved the store refuses work.
    try {
      fs_->rename(temp.path(), final_path);
    } catch (const std::exception& error) {
      // The rename may or may not have happened: decide by content now if possible.
      unresolved_ = Unresolved{record.id, record.file, /*dir_synced=*/false, /*reopen_required=*/false, error.what()};
      if (!resolve_quietly()) throw;
      return index_->find(record.id).value();  // it had happened: synced and committed now
    }
    temp.release();
    step("renamed");
    try {
      if (!options_.unsafe_skip_dir_fsync) fs_->sync_dir(dir_);
    } catch (const std::exception& error) {
      // Whether the rename is durable is unknown, and a later fsync that succeeds would
      // not prove it (the failure may have dropped the dirty state it reported). Nothing
      // is committed or marked for deletion; the previous checkpoints stay. Only a fresh
      // open, whose recovery syncs the directory before it rolls anything forward, may
      // decide this save.
      unresolved_ = Unresolved{record.id, record.file, false, /*reopen_required=*/true, error.what()};
      log::write(level_enum::err, "{}: the directory fsync after renaming {} failed: {}; the save is not committed "
                 "and the directory must be reopened to recover it", dir_.string(), final_name, error.what());
      throw;
    }
    step("dir_synced");
    try {
      finish_save(record.id, "saved");
    } catch (const std::exception& error) {
      // The rename is durable: the save can still be committed, by this process (the
      // next call retries) or by the next open's recovery.
      unresolved_ = Unresolved{record.id, record.file, /*dir_synced=*/true, false, error.what()};
      if (!resolve_quietly()) throw;
      return index_->find(record.id).value();  // the retry committed it
    }
    step("committed");
    try {
      delete_obsolete_files();
    } catch (const Error& error) {
      // The save is committed; what failed is only the cleanup, which the rows marked
      // 'deleting' let the next save or open finish.
      log::write(level_enum::warn, "could not delete obsolete checkpoints yet: {}", error.what());
    }
    step("obsolete_deleted");
    return index_->find(record.id).value();
  }

  std::optional<CheckpointRecord> latest() {
    ensure_resolved();
    return index_->resume_candidate();
  }
  std::optional<CheckpointRecord> best() {
    ensure_resolved();
    return index_->best();
  }
  std::vector<CheckpointRecord> live_checkpoints() {
    ensure_resolved();
    return index_->live_rows();
  }
  std::vector<NamedMetric> metrics_of(std::int64_t checkpoint_id) { return index_->metrics(checkpoint_id); }

  std::optional<CheckpointRecord> load_latest(const PayloadReader& read_payload) {
    ensure_resolved();
    std::optional<std::int64_t> before;  // after a candidate that could not be read: the next older one
    while (auto candidate = index_->resume_candidate(before)) {
      before = candidate->commit_seq;
      const Loaded loaded = try_load(*candidate, read_payload);
      if (loaded == Loaded::replaced) {
        before.reset();  // the adopted save is now the most recent commit
        continue;
      }
      if (loaded != Loaded::yes) continue;  // next in commit order
      Transaction transaction(*index_, Durability::deferred);
      if (candidate->kind == CheckpointKind::interrupt && candidate->status == status::kCommitted) {
        // Consumed, not deleted: if this run dies before its next save, the next resume
        // still finds it. The next epoch or interrupt save deletes it.
        index_->set_status(candidate->id, status::kConsumed);
        candidate->status = std::string(status::kConsumed);
      }
      index_->add_event("resumed_from", candidate->id, describe(*candidate));
      transaction.commit();
      log::write(level_enum::info, "resuming from {}", (dir_ / candidate->file).string());
      return candidate;
    }
    return std::nullopt;
  }

  std::optional<CheckpointRecord> load_best(const PayloadReader& read_payload) {
    ensure_resolved();
    while (auto candidate = index_->best()) {
      switch (try_load(*candidate, read_payload)) {
        case Loaded::yes: return candidate;
        case Loaded::replaced: continue;  // another writer's best model, now the committed one
        case Loaded::retired: continue;  // quarantined or missing: nothing else is the best
        case Loaded::unreadable:
          // Not corruption: the file stays, and so does its row. There is no other best
          // to fall back to, so the caller hears why.
          throw IoError(ErrorCode::io,
                        fmt::format("{}: the best model could not be read: {}", (dir_ / candidate->file).string(),
                                    read_error_->what()),
                        dir_ / candidate->file, read_error_->os_error());
      }
    }
    return std::nullopt;
  }

  std::vector<CheckpointRecord> gc(std::optional<int> keep) {
    ensure_still_locked();
    ensure_resolved();
    const int limit = keep.value_or(options_.max_to_keep);
    if (limit < 0) throw InvalidArgument(fmt::format("{}: keep must be >= 0 (0 keeps all), got {}", dir_.string(), limit));
    std::vector<CheckpointRecord> removed;
    if (limit == 0) return removed;
    {
      Transaction transaction(*index_, Durability::full);
      for (auto& old : index_->epochs_beyond(limit)) {
        index_->set_status(old.id, status::kDeleting);
        index_->add_event("rotated_out", old.id, fmt::format("{}: gc keeping the newest {}", describe(old), limit));
        removed.push_back(std::move(old));
      }
      transaction.commit();
    }
    delete_obsolete_files();
    return removed;
  }

  CheckpointRecord remove(std::int64_t id) {
    ensure_still_locked();
    ensure_resolved();
    auto row = index_->find(id);
    if (!row || (row->status != status::kCommitted && row->status != status::kConsumed)) {
      throw InvalidArgument(fmt::format("{}: no committed checkpoint with id {}", dir_.string(), id), dir_);
    }
    {
      Transaction transaction(*index_, Durability::full);
      index_->set_status(id, status::kDeleting);
      index_->add_event("removed", id, fmt::format("{}: removed on request", describe(*row)));
      transaction.commit();
    }
    delete_obsolete_files();
    return *row;
  }

  const std::filesystem::path& dir() const noexcept { return dir_; }
  std::filesystem::path index_path() const { return dir_ / names::kIndex; }
  int max_to_keep() const noexcept { return options_.max_to_keep; }
  const RecoveryReport& last_recovery() const noexcept { return report_; }

 private:
  void step(std::string_view name) {
    if (options_.on_step) options_.on_step(name);
  }

  void record_retention_setting() {
    std::string value = std::to_string(options_.max_to_keep);
    auto stored = index_->setting(kMaxToKeepSetting);
    if (stored == value) return;
    Transaction transaction(*index_, Durability::full);
    index_->set_setting(kMaxToKeepSetting, value);
    index_->add_event("retention_set", std::nullopt,
                      fmt::format("max_to_keep {} (was {})", value, stored.value_or("unset")));
    transaction.commit();
  }

  void check_free_space(const std::filesystem::path& target, std::uint64_t size_hint) {
    std::uint64_t available = fs_->free_space(dir_);
    if (available < size_hint + kFreeSpaceMargin) {
      throw IoError(ErrorCode::disk_full,
                    fmt::format("{}: not enough free space to save: need {} bytes (+{} margin), {} available",
                                target.string(), size_hint, kFreeSpaceMargin, available),
                    target, ENOSPC);
    }
  }

  // Step 6 of the save protocol, shared by save() and recovery: the pending row becomes
  // the live row of its file, the row it replaces is retired, and files this save makes
  // obsolete are marked for deletion. Deferred commit: see the file comment.
  void finish_save(std::int64_t pending_id, std::string_view how) {
    CheckpointRecord record = index_->find(pending_id).value();
    Transaction transaction(*index_, Durability::deferred);
    if (auto previous = index_->live_row_for(record.file)) {
      index_->set_status(previous->id, status::kReplaced);
      index_->add_event("replaced", previous->id, fmt::format("{} replaced by checkpoint {}", previous->file, record.id));
    }
    // A deletion still pending under this name is moot: the rename replaced those bytes.
    for (const auto& stale : index_->rows_for(record.file, status::kDeleting)) {
      index_->set_status(stale.id, status::kDeleted);
    }
    index_->mark_committed(record.id);
    std::string metric = record.metric ? fmt::format(", metric {}", *record.metric) : "";
    index_->add_event(how, record.id, fmt::format("{}{}", describe(record), metric));
    if (record.kind == CheckpointKind::best) {
      std::string from = record.state_epoch ? fmt::format(" from epoch {}", *record.state_epoch) : "";
      index_->add_event("new_best", record.id, fmt::format("best{}{}", from, metric));
    }
    if (record.kind == CheckpointKind::interrupt) index_->add_event("interrupted", record.id, describe(record));
    if (record.kind == CheckpointKind::epoch) {
      // Newer progress is committed: the interrupt checkpoint, resumed from or not, can
      // never be the resume point again (resume loads the most recent commit). (A new
      // interrupt checkpoint replaces the old one by name, above.)
      if (auto old = index_->live_row_for(names::checkpoint_file(CheckpointKind::interrupt, std::nullopt))) {
        index_->set_status(old->id, status::kDeleting);
        index_->add_event(old->status == status::kConsumed ? "consumed_obsolete" : "interrupt_obsolete", old->id,
                          fmt::format("{} superseded by checkpoint {}", old->file, record.id));
      }
      note_superseded(record);
    }
    if (record.kind == CheckpointKind::epoch && options_.max_to_keep > 0) {
      for (const auto& old : index_->epochs_beyond(options_.max_to_keep)) {
        index_->set_status(old.id, status::kDeleting);
        index_->add_event("rotated_out", old.id,
                          fmt::format("{}: beyond the newest {}", describe(old), options_.max_to_keep));
      }
    }
    transaction.commit();
    log::write(how == "saved" ? level_enum::debug : level_enum::warn, "{} checkpoint {}", how,
               (dir_ / record.file).string());
  }

  // An epoch save that is not above the epochs already there: the run was restarted from
  // an earlier state, and the higher epochs belong to the run it abandoned. They stay
  // (rotation removes them first); resume follows the new save, the most recent commit.
  void note_superseded(const CheckpointRecord& record) {
    // Only a save that goes back (its epoch not above the previous epoch save's)
    // supersedes anything; the saves after it continue its line.
    auto previous = index_->newest_epoch(record.id);
    if (!previous || *previous->epoch < *record.epoch) return;
    std::vector<std::string> epochs;
    for (const auto& old : index_->epochs_from(*record.epoch)) {
      if (old.id == record.id) continue;
      epochs.push_back(std::to_string(*old.epoch));
      index_->add_event("superseded", old.id,
                        fmt::format("{} superseded by epoch {} (checkpoint {}), committed after it", describe(old),
                                    *record.epoch, record.id));
    }
    if (epochs.empty()) return;
    log::write(level_enum::warn,
               "{}: epoch {} was saved after epoch{} {} (a run restarted from an earlier state?): resume now "
               "follows epoch {}, and rotation removes the superseded epoch{} first",
               dir_.string(), *record.epoch, epochs.size() == 1 ? "" : "s", fmt::join(epochs, ", "), *record.epoch,
               epochs.size() == 1 ? "" : "s");
  }

  // Step 7: unlink files whose rows are 'deleting', then mark them 'deleted'. Unsynced:
  // if a power loss undoes an unlink, recovery finds the file again with bytes matching
  // a deleting/deleted row and deletes it again instead of adopting it.
  int delete_obsolete_files() {
    auto doomed = index_->rows_with_status(status::kDeleting);
    if (doomed.empty()) return 0;
    for (const auto& row : doomed) {
      // A newer checkpoint may own the name again (epoch N rotated out, then saved anew).
      if (!index_->live_row_for(row.file)) fs_->remove(dir_ / row.file);
    }
    Transaction transaction(*index_, Durability::deferred);
    for (const auto& row : doomed) {
      index_->set_status(row.id, status::kDeleted);
      index_->add_event("deleted", row.id, row.file);
    }
    transaction.commit();
    return static_cast<int>(doomed.size());
  }

  // Whether the file under a pending row's name holds that row's bytes: whether the
  // rename happened.
  bool holds_pending_bytes(const CheckpointRecord& pending) {
    const std::filesystem::path path = dir_ / pending.file;
    auto size = fs_->file_size(path);
    return size && *size == pending.size && digest_of(path, pending.hash_algo).hash == pending.hash;
  }

  // A save that failed past its pending row, resolved by the content of the file: roll
  // forward if the rename happened (syncing the directory first unless the save already
  // had), back if it did not. Throws when that cannot be done now; the store then keeps
  // refusing work until it is (or until the directory is reopened). Returns whether the
  // save was rolled forward (committed).
  bool resolve() {
    Unresolved& unresolved = *unresolved_;
    if (unresolved.reopen_required) {
      const std::string what =
          unresolved.pending_id == 0
              ? fmt::format("{}: {}", dir_.string(), unresolved.cause)
              : fmt::format("{}: an earlier save of {} failed after its rename ({}); whether it is durable cannot be "
                            "known in this process",
                            dir_.string(), unresolved.file, unresolved.cause);
      throw IoError(ErrorCode::needs_recovery,
                    what + ": close this store and open the directory again, whose recovery decides it",
                    dir_ / unresolved.file);
    }
    bool rolled_forward = false;
    try {
      auto pending = index_->find(unresolved.pending_id);
      if (pending && pending->status == status::kCommitted) {
        rolled_forward = true;  // the commit had succeeded although it reported a failure
      } else if (pending && pending->status == status::kPending) {
        // After the directory fsync the rename is known to have happened: only the commit
        // is missing. Before it, the content of the file tells.
        rolled_forward = unresolved.dir_synced || holds_pending_bytes(*pending);
        if (rolled_forward) {
          if (!unresolved.dir_synced && !options_.unsafe_skip_dir_fsync) {
            try {
              fs_->sync_dir(dir_);
            } catch (...) {
              unresolved.reopen_required = true;
              throw;
            }
            unresolved.dir_synced = true;
          }
          finish_save(pending->id, "recovered");
        } else {
          roll_back(pending->id, pending->file);
        }
      }
    } catch (const std::exception& error) {
      throw IoError(unresolved.reopen_required ? ErrorCode::needs_recovery : ErrorCode::io,
                    fmt::format("{}: an earlier save of {} failed after its pending row ({}), and resolving it failed "
                                "too: {}; this store refuses work until it can be resolved (retried at each call) "
                                "or the directory is reopened",
                                dir_.string(), unresolved.file, unresolved.cause, error.what()),
                    dir_ / unresolved.file);
    }
    log::write(level_enum::warn, "{}: resolved the save of {} that failed earlier ({})", dir_.string(),
               unresolved.file, unresolved.cause);
    unresolved_.reset();
    try {
      delete_obsolete_files();
    } catch (const Error& error) {
      log::write(level_enum::warn, "could not delete obsolete checkpoints yet: {}", error.what());
    }
    return rolled_forward;
  }

  // Called first by every operation: a save left unresolved is resolved, or the call refused.
  void ensure_resolved() {
    if (unresolved_) (void)resolve();
  }

  // resolve(), logging instead of throwing; false unless the save was rolled forward.
  bool resolve_quietly() noexcept {
    try {
      return resolve();
    } catch (const std::exception& error) {
      log::write(level_enum::err, "{}", error.what());
      return false;
    }
  }

  // A pending save whose rename did not happen: aborted, the previous file kept. Shared
  // by resolve() and recovery.
  void roll_back(std::int64_t pending_id, const std::string& file) {
    Transaction transaction(*index_, Durability::deferred);
    index_->set_status(pending_id, status::kAborted);
    index_->add_event("recovered", pending_id, fmt::format("{}: save did not complete; previous file kept", file));
    transaction.commit();
    log::write(level_enum::warn, "rolled back an unfinished save of {}", (dir_ / file).string());
  }

  // The -wal and -shm files beside index.sqlite, which belong to whatever database was
  // last opened under that name.
  void remove_index_sidecars() {
    for (const char* suffix : {"-wal", "-shm"}) fs_->remove(dir_ / (std::string(names::kIndex) + suffix));
  }

  // The directory at dir_ is no longer the one this store locked (renamed away, maybe
  // replaced by one another writer has locked): every write by path would land there.
  // Checked before anything that writes, ahead of ensure_index_present(), which would
  // otherwise "recreate" the index over the other writer's.
  void ensure_still_locked() {
    if (!lock_ || lock_->still_locks(dir_)) return;
    throw LockedError(ErrorCode::locked,
                      fmt::format("{}: the checkpoint directory was moved or replaced since this store locked it; "
                                  "nothing was written; reopen the store (on the directory it should write)",
                                  dir_.string()),
                      dir_);
  }

  // The index file was deleted or replaced under the running store: this connection
  // would write into a file nobody can open again. Copy what it holds to a new index
  // file at the path, switch to it, and recover (which reconciles it with the files).
  void ensure_index_present() {
    if (!index_->file_moved()) return;
    const std::filesystem::path path = dir_ / names::kIndex;
    log::write(level_enum::err, "{}: the index file was deleted or replaced while this store had it open; "
               "recreating it from this process's copy", path.string());
    // The copy is made durable under its own name before it takes the index's: a crash
    // in between leaves it for the next open (take_recreated_index), never no index.
    const std::filesystem::path copy = dir_ / kRecreatedIndex;
    fs_->remove(copy);
    index_->copy_to(copy);
    fs_->sync_file(copy);
    try {
      // The old connection's -wal and -shm go first (it keeps them open), so that the
      // new index starts without them, and its close can remove nothing of the new one.
      remove_index_sidecars();
      fs_->rename(copy, path);
      fs_->sync_dir(dir_);
      index_.reset();
      index_ = std::make_unique<index::Index>(path, index::Index::Mode::read_write, options_.sqlite_vfs, index_locking_);
    } catch (const std::exception& error) {
      // Only a fresh open (which takes the copy if it is still there) can go on.
      unresolved_ = Unresolved{0, std::string(names::kIndex), false, /*reopen_required=*/true,
                               fmt::format("recreating the deleted index failed: {}", error.what())};
      throw;
    }
    {
      Transaction transaction(*index_, Durability::full);
      index_->add_event("index_recreated", std::nullopt,
                        "the index file was deleted or replaced while a writer had it open; recreated from the "
                        "writer's copy");
      transaction.commit();
    }
    apply(plan(/*verify_hashes=*/false));
  }

  // At open: a durable copy left by ensure_index_present that did not take the index's
  // name yet (a crash in between) takes it now; beside an index, it is stale.
  void take_recreated_index() {
    const std::filesystem::path copy = dir_ / kRecreatedIndex;
    if (!fs_->file_size(copy)) return;
    if (fs_->file_size(dir_ / names::kIndex)) {
      fs_->remove(copy);
      return;
    }
    log::write(level_enum::warn, "{}: taking {}, the copy a writer made of its deleted index", dir_.string(), copy.string());
    remove_index_sidecars();
    fs_->rename(copy, dir_ / names::kIndex);
    fs_->sync_dir(dir_);
  }

  io::FileDigest digest_of(const std::filesystem::path& path, const std::string& algorithm_name) {
    HashAlgorithm algorithm = options_.hash_algorithm;
    io::parse_hash_algorithm(algorithm_name, algorithm);
    return io::hash_file(*fs_, path, algorithm);
  }

  enum class Loaded {
    yes,         // verified: the reader's last run is the checkpoint
    retired,     // missing or corrupt: the row is retired, the file quarantined
    unreadable,  // an I/O error (read_error_): file and row left as they are
    replaced,    // another writer's complete save under the name: adopted as a new row
  };

  // Runs the reader on a committed row's file while hashing it. A missing file or a
  // hash mismatch retires the row (and quarantines the file). A read error is not
  // corruption: it is logged and nothing is changed.
  Loaded try_load(const CheckpointRecord& record, const PayloadReader& read_payload) {
    const std::filesystem::path path = dir_ / record.file;
    HashAlgorithm algorithm = options_.hash_algorithm;
    if (!io::parse_hash_algorithm(record.hash_algo, algorithm)) {
      throw IndexError(ErrorCode::index, fmt::format("{}: unknown hash algorithm '{}' for {}",
                                                     index_->path().string(), record.hash_algo, record.file),
                       index_->path());
    }
    // The read phase: only its errors are read errors. What is decided from it (missing,
    // corrupt) is done after it, so that a failure to quarantine is not taken for one.
    std::optional<std::uint64_t> size;
    std::string hash;
    std::exception_ptr decode_error;
    try {
      size = fs_->file_size(path);
      if (size && *size == record.size) {
        io::FileSource source(*fs_, path, io::Hasher::create(algorithm));
        // A damaged file usually breaks the decoder before the hash can tell: decide by
        // the hash, then report the decoder's error only for a file that is what was
        // committed. Whatever the decoder throws (a format error, a type error deep in
        // the payload, bad_alloc on a damaged length), except a read error, which is not
        // the bytes' fault.
        try {
          read_payload(source, record);
        } catch (const IoError&) {
          throw;
        } catch (...) {
          decode_error = std::current_exception();
        }
        hash = source.finish();
      }
    } catch (const Error& error) {  // IoError, or the file shrank while it was read
      return unreadable(path, error);
    }
    if (!size) {
      mark_missing(record, "file not found");
      return Loaded::retired;
    }
    if (*size != record.size || hash != record.hash) {
      std::optional<store::PayloadCheck> external;
      try {
        if (matches_pending(record.file)) return unreadable_pending(record);
        external = external_save(record.file);
      } catch (const Error& error) {
        return unreadable(path, error);
      }
      if (external) {
        adopt_external(record, *external);
        return Loaded::replaced;
      }
      quarantine(record, *size != record.size
                             ? fmt::format("corrupt: {} bytes, index recorded {}", *size, record.size)
                             : fmt::format("corrupt: {} hash {}, index recorded {}", record.hash_algo, hash, record.hash));
      return Loaded::retired;
    }
    if (decode_error) std::rethrow_exception(decode_error);
    return Loaded::yes;
  }

  Loaded unreadable(const std::filesystem::path& path, const Error& error) {
    read_error_ = IoError(ErrorCode::io, error.what(), error.path(), error.os_error());
    log::write(level_enum::err, "{}: could not be read ({}); left in place, not treated as corrupt", path.string(),
               error.what());
    return Loaded::unreadable;
  }

  // Whether `file` holds the bytes of a pending row (a save not yet resolved): then it is
  // not corrupt, and must not be quarantined.
  bool matches_pending(const std::string& file) {
    for (const auto& pending : index_->rows_for(file, status::kPending)) {
      if (holds_pending_bytes(pending)) return true;
    }
    return false;
  }

  Loaded unreadable_pending(const CheckpointRecord& record) {
    read_error_ = IoError(ErrorCode::needs_recovery,
                          fmt::format("{}: holds the bytes of an unfinished save, not of checkpoint {}; reopen the "
                                      "directory to recover it",
                                      (dir_ / record.file).string(), record.id),
                          dir_ / record.file);
    log::write(level_enum::err, "{}", read_error_->what());
    return Loaded::unreadable;
  }

  void mark_missing(const CheckpointRecord& record, std::string_view why) {
    Transaction transaction(*index_, Durability::full);
    index_->set_status(record.id, status::kMissing);
    index_->add_event("missing", record.id, fmt::format("{}: {}", record.file, why));
    transaction.commit();
    ++report_.missing;
    log::write(level_enum::err, "{}: {}; checkpoint {} is no longer available", (dir_ / record.file).string(), why,
               record.id);
  }

  // Moves a file into quarantine/ (never deletes it). Returns its new path.
  std::filesystem::path move_to_quarantine(const std::string& file) {
    const std::filesystem::path quarantine_dir = dir_ / names::kQuarantineDir;
    fs_->create_directories(quarantine_dir);
    std::filesystem::path target;
    for (int attempt = 0;; ++attempt) {
      target = quarantine_dir / fmt::format("{}.{}-{}{}", file, utc_stamp(), ::getpid(),
                                            attempt == 0 ? std::string() : fmt::format("-{}", attempt));
      if (!fs_->file_size(target)) break;
    }
    fs_->rename(dir_ / file, target);
    fs_->sync_dir(quarantine_dir);
    fs_->sync_dir(dir_);
    return target;
  }

  void quarantine(const CheckpointRecord& record, const std::string& why) {
    std::filesystem::path target = move_to_quarantine(record.file);
    Transaction transaction(*index_, Durability::full);
    index_->set_status(record.id, status::kQuarantined);
    index_->add_event("quarantined", record.id, fmt::format("{}: {}; moved to {}", record.file, why, target.string()));
    transaction.commit();
    ++report_.quarantined;
    log::write(level_enum::err, "{}: {}; moved to {}", (dir_ / record.file).string(), why, target.string());
  }

  // Recovery and repair, planned from the index and the directory before anything
  // changes, so that `ckpt repair` can show the plan and an open can carry it out.
  std::vector<RepairAction> plan(bool verify_hashes) {
    using Type = RepairAction::Type;
    std::vector<RepairAction> actions;
    checked_.clear();
    std::set<std::string> replaced;  // names a rolled-forward save now owns
    std::set<std::string> deleted;   // names an unfinished deletion will remove
    // A file that cannot be read is not decided on: it and its row stay as they are (a
    // read error is not corruption), and the rest of the directory is recovered.
    std::set<std::string> unreadable;
    auto leave_unreadable = [&](std::optional<std::int64_t> id, const std::string& file, const Error& error) {
      unreadable.insert(file);
      actions.push_back({Type::leave_unreadable, id, file, fmt::format("could not be read: {}", error.what()), 0, {}});
    };
    for (const auto& pending : index_->rows_with_status(status::kPending)) {
      bool renamed = false;
      try {
        renamed = holds_pending_bytes(pending);
      } catch (const IoError& error) {
        leave_unreadable(pending.id, pending.file, error);
        continue;
      }
      if (renamed) {
        replaced.insert(pending.file);
        actions.push_back({Type::roll_forward, pending.id, pending.file, "the rename happened: commit the save", 0, {}});
      } else {
        actions.push_back({Type::roll_back, pending.id, pending.file, "the save did not complete: keep the previous file", 0, {}});
      }
    }
    for (const auto& row : index_->rows_with_status(status::kDeleting)) {
      if (!index_->live_row_for(row.file) && !replaced.count(row.file)) deleted.insert(row.file);
      actions.push_back({Type::finish_deletion, row.id, row.file, "obsolete: its deletion was cut short", 0, {}});
    }
    const std::vector<std::string> files = fs_->list_files(dir_);
    const std::int64_t now = now_ns();
    for (const auto& name : files) {
      if (!names::is_temp_file(name)) continue;
      if (!names::is_own_temp_file(name)) {
        // Ours come only from a dead process (this one holds the lock); another writer's
        // young one may be its save in progress.
        const std::int64_t written = fs_->modified_ns(dir_ / name).value_or(0);
        if (now - written < kYoungTempFileNs) {
          log::write(level_enum::info, "{}: leaving another writer's temp file, written {:.1f} s ago (a save in progress?)",
                     (dir_ / name).string(), static_cast<double>(now - written) / 1e9);
          continue;
        }
      }
      actions.push_back({Type::remove_temp_file, std::nullopt, name, "leftover temp file", 0, {}});
    }
    std::set<std::string> retired;  // names whose live row is about to be retired
    for (const auto& row : index_->live_rows()) {
      if (replaced.count(row.file) || unreadable.count(row.file)) continue;
      const std::filesystem::path path = dir_ / row.file;
      std::optional<std::uint64_t> size;
      std::string problem;
      try {
        size = fs_->file_size(path);
        if (size && *size != row.size) {
          problem = fmt::format("size {} does not match the recorded {}", *size, row.size);
        } else if (size && verify_hashes) {
          std::string hash = digest_of(path, row.hash_algo).hash;
          if (hash != row.hash) problem = fmt::format("{} hash {} does not match the recorded {}", row.hash_algo, hash, row.hash);
        }
      } catch (const IoError& error) {
        leave_unreadable(row.id, row.file, error);
        continue;
      }
      if (!size) {
        actions.push_back({Type::mark_missing, row.id, row.file, "file not found", 0, {}});
        continue;
      }
      if (!problem.empty()) {
        retired.insert(row.file);
        std::optional<store::PayloadCheck> external;
        try {
          external = external_save(row.file);
        } catch (const IoError& error) {
          leave_unreadable(row.id, row.file, error);
          continue;
        }
        if (external) {
          actions.push_back({Type::adopt_external, row.id, row.file,
                             problem + "; a complete, valid payload: another writer's save", external->digest.size,
                             external->digest.hash});
          checked_[row.file] = std::move(*external);
        } else {
          actions.push_back({Type::quarantine_checkpoint, row.id, row.file, problem, 0, {}});
        }
      }
    }
    // Orphans in the order they are adopted, which is their place in the commit order:
    // by when they were written (a rename keeps the temp file's mtime), so that after an
    // index is rebuilt a restarted run's low epochs stay newer than the abandoned run's
    // high ones; ties (copied files) by kind, epochs by number, then the interrupt.
    struct Orphan {
      std::int64_t written;
      int kind;
      std::int64_t epoch;
      std::string name;
    };
    std::vector<Orphan> orphans;
    for (const auto& name : files) {
      auto parsed = names::parse_checkpoint_file(name);
      if (!parsed || replaced.count(name) || deleted.count(name) || retired.count(name) || unreadable.count(name) ||
          index_->live_row_for(name)) {
        continue;
      }
      int kind = parsed->kind == CheckpointKind::epoch ? 0 : parsed->kind == CheckpointKind::interrupt ? 1 : 2;
      orphans.push_back({fs_->modified_ns(dir_ / name).value_or(0), kind, parsed->epoch.value_or(0), name});
    }
    std::sort(orphans.begin(), orphans.end(), [](const Orphan& a, const Orphan& b) {
      return std::tie(a.written, a.kind, a.epoch) < std::tie(b.written, b.kind, b.epoch);
    });
    for (const auto& orphan : orphans) {
      try {
        actions.push_back(plan_orphan(orphan.name));
      } catch (const IoError& error) {
        leave_unreadable(std::nullopt, orphan.name, error);
      }
    }
    return actions;
  }

  // A checkpoint file the index has no live row for: left by a deletion a power loss
  // undid (delete it again), written while the index lost its last commits or copied in
  // by hand (adopt it if complete), or damaged (quarantine it). Never deleted otherwise.
  RepairAction plan_orphan(const std::string& name) {
    using Type = RepairAction::Type;
    // One read decides the usual case (a complete file: adopt it); the framing probe, a
    // second read, only tells damage from refusal when the reader refused.
    store::PayloadCheck check = store::check_payload(*fs_, dir_ / name, options_.hash_algorithm);
    // Each row is compared by the algorithm it was hashed with: the store's may have
    // changed since (StoreOptions::hash_algorithm), and a file a power loss brought back
    // must still be recognized. Other algorithms hash the file once each, and only for
    // rows of its size.
    std::map<std::string, std::string> hash_by_algorithm{{std::string(to_string(options_.hash_algorithm)), check.digest.hash}};
    for (std::string_view old_status : {status::kDeleting, status::kDeleted}) {
      for (const auto& row : index_->rows_for(name, old_status)) {
        if (row.size != check.digest.size) continue;
        auto hash = hash_by_algorithm.find(row.hash_algo);
        if (hash == hash_by_algorithm.end()) {
          hash = hash_by_algorithm.emplace(row.hash_algo, digest_of(dir_ / name, row.hash_algo).hash).first;
        }
        if (hash->second == row.hash) {
          return {Type::delete_again, row.id, name, "its bytes match a deleted checkpoint: a crash undid the deletion", 0, {}};
        }
      }
    }
    if (check.problem.empty()) {
      RepairAction action{Type::adopt, std::nullopt, name, "a complete checkpoint file without an index row",
                          check.digest.size, check.digest.hash};
      checked_[name] = std::move(check);
      return action;
    }
    if (check.damaged) return {Type::quarantine_file, std::nullopt, name, "no index row and " + check.problem, 0, {}};
    store::ProbeResult probe = store::probe_payload(*fs_, dir_ / name, options_.hash_algorithm);
    if (!probe.looks_complete) return {Type::quarantine_file, std::nullopt, name, "no index row and " + probe.reason, 0, {}};
    // Complete, but the reader refuses it: adopted, it would fail every load (the hash
    // matches, the decoder refuses); moved away, a file the user may still want is gone
    // from where they look. It stays.
    return {Type::leave_unloadable, std::nullopt, name, fmt::format("no index row, and it would not load: {}", check.problem),
            check.digest.size, check.digest.hash};
  }


  void apply(const std::vector<RepairAction>& actions) {
    using Type = RepairAction::Type;
    bool synced_temp_removal = false;
    bool synced_before_roll_forward = false;
    for (const auto& action : actions) {
      const std::filesystem::path path = dir_ / action.file;
      // The plan was made before anything changed, and an earlier action may have
      // retired a row since (a roll-forward rotates epochs out, or deletes the interrupt
      // checkpoint): an action on a row runs only while the row is as planned.
      if (!still_as_planned(action)) continue;
      switch (action.type) {
        case Type::roll_forward:
          step("recover_pending");
          if (!synced_before_roll_forward) {
            // The rename this commits may not be durable: the saver may have died before
            // its directory fsync, or seen it fail (after which a successful fsync proves
            // nothing about that rename). Sync now, in this process, or fail the open:
            // a committed row whose rename a power loss undoes would cost the file it
            // replaced and the epochs the commit rotates out.
            fs_->sync_dir(dir_);
            synced_before_roll_forward = true;
          }
          finish_save(*action.checkpoint_id, "recovered");
          ++report_.rolled_forward;
          break;
        case Type::roll_back:
          step("recover_pending");
          roll_back(*action.checkpoint_id, action.file);
          ++report_.rolled_back;
          break;
        case Type::finish_deletion: break;  // all at once below, with those a roll-forward adds
        case Type::remove_temp_file:
          fs_->remove(path);
          synced_temp_removal = true;
          ++report_.temp_files_removed;
          log::write(level_enum::info, "removed leftover temp file {}", path.string());
          break;
        case Type::mark_missing: mark_missing(index_->find(*action.checkpoint_id).value(), action.reason); break;
        case Type::quarantine_checkpoint: quarantine(index_->find(*action.checkpoint_id).value(), action.reason); break;
        case Type::delete_again:
          if (index_->live_row_for(action.file)) break;  // the name has a checkpoint again
          fs_->remove(path);
          fs_->sync_dir(dir_);
          ++report_.deletions_finished;
          log::write(level_enum::info, "deleted {} again: its deletion was undone by a crash", path.string());
          break;
        case Type::quarantine_file: {
          step("recover_orphan");
          std::filesystem::path target = move_to_quarantine(action.file);
          Transaction transaction(*index_, Durability::full);
          index_->add_event("quarantined", std::nullopt, fmt::format("{}: {}; moved to {}", action.file, action.reason, target.string()));
          transaction.commit();
          ++report_.quarantined;
          log::write(level_enum::err, "{}: {}; moved to {}", path.string(), action.reason, target.string());
          break;
        }
        case Type::adopt:
          step("recover_orphan");
          adopt(action);
          break;
        case Type::adopt_external:
          adopt_external(index_->find(*action.checkpoint_id).value(), checked_.at(action.file));
          break;
        case Type::leave_unloadable:
          ++report_.left_unloadable;
          log::write(level_enum::warn, "{}: {}; left as it is, not indexed", path.string(), action.reason);
          break;
        case Type::leave_unreadable:
          log::write(level_enum::err, "{}: {}; left as it is (a read error is not corruption)", path.string(),
                     action.reason);
          break;
      }
    }
    if (synced_temp_removal) fs_->sync_dir(dir_);
    report_.deletions_finished += delete_obsolete_files();

    if (report_.anything_done()) {
      std::string summary = fmt::format(
          "rolled forward {}, rolled back {}, deletions finished {}, temp files removed {}, adopted {}, "
          "external saves adopted {}, quarantined {}, missing {}",
          report_.rolled_forward, report_.rolled_back, report_.deletions_finished, report_.temp_files_removed,
          report_.adopted, report_.external_saves, report_.quarantined, report_.missing);
      Transaction transaction(*index_, Durability::full);
      index_->add_event("recovered", std::nullopt, summary);
      transaction.commit();
      log::write(level_enum::warn, "recovered {}: {}", dir_.string(), summary);
    }
  }

  // Whether the row an action is about is still in the state the plan saw (a row-less
  // action always is).
  bool still_as_planned(const RepairAction& action) {
    using Type = RepairAction::Type;
    if (!action.checkpoint_id) return true;
    std::optional<std::string> now;
    if (auto row = index_->find(*action.checkpoint_id)) now = row->status;
    bool as_planned = true;
    switch (action.type) {
      case Type::roll_forward:
      case Type::roll_back: as_planned = now == status::kPending; break;
      case Type::mark_missing:
      case Type::quarantine_checkpoint:
      case Type::adopt_external: as_planned = now == status::kCommitted || now == status::kConsumed; break;
      default: break;
    }
    if (!as_planned) {
      log::write(level_enum::debug, "{}: not applying '{}': checkpoint {} is now {}", (dir_ / action.file).string(),
                 to_string(action.type), *action.checkpoint_id, now.value_or("gone"));
    }
    return as_planned;
  }

  void adopt(const RepairAction& action) {
    const std::filesystem::path path = dir_ / action.file;
    const store::PayloadCheck& check = checked_.at(action.file);
    CheckpointRecord record = found_row(action.file, check, "adopted");
    // Nothing says the file was ever synced (copied in by hand, or written by a process
    // whose index commits a power loss took): make its bytes and its name durable before
    // a row vouches for them.
    fs_->sync_file(path);
    fs_->sync_dir(dir_);
    Transaction transaction(*index_, Durability::full);
    record.id = index_->insert(record);
    index_->insert_metrics(record.id, check.numbers);
    index_->add_event("adopted", record.id,
                      fmt::format("{}: complete file without an index row{}", describe(record), metric_note(record)));
    transaction.commit();
    ++report_.adopted;
    // A warning: a stray copy (a checkpoint_epoch_99.pth from another run) is adopted too,
    // and as the most recent commit it is what the next resume loads.
    log::write(level_enum::warn, "adopted {} ({}, written {}): it had no index row{}", path.string(),
               describe(record), record.created_at,
               record.kind == CheckpointKind::best ? "" : "; as the newest commit it is the resume point now");
  }

  // A committed name whose bytes are not its row's: when the file is a complete payload
  // that reads whole (every record's CRC-32 and padding intact), another writer saved it (the
  // Python guide writing on in an imported directory), and it is adopted; damage fails
  // those checks and is quarantined. Returns the check for an external save.
  std::optional<store::PayloadCheck> external_save(const std::string& file) {
    store::PayloadCheck check = store::check_payload(*fs_, dir_ / file, options_.hash_algorithm);
    if (!check.problem.empty()) return std::nullopt;
    return check;
  }

  void adopt_external(const CheckpointRecord& old, const store::PayloadCheck& check) {
    const std::filesystem::path path = dir_ / old.file;
    CheckpointRecord record = found_row(old.file, check, "external");
    fs_->sync_file(path);
    fs_->sync_dir(dir_);
    Transaction transaction(*index_, Durability::full);
    index_->set_status(old.id, status::kReplaced);
    record.id = index_->insert(record);
    index_->insert_metrics(record.id, check.numbers);
    index_->add_event("replaced", old.id, fmt::format("{} replaced by another writer's save (checkpoint {})", old.file, record.id));
    index_->add_event("external_save", record.id,
                      fmt::format("{}: another writer saved a complete, valid payload under this name; adopted{}",
                                  describe(record), metric_note(record)));
    transaction.commit();
    ++report_.external_saves;
    log::write(level_enum::warn, "{}: its bytes are another writer's complete save ({}, written {}), not checkpoint {}'s: "
               "adopted as checkpoint {}", path.string(), describe(record), record.created_at, old.id, record.id);
  }

  // The committed row for a checkpoint file another program wrote (origin "adopted" or
  // "external"), described from what check_payload read of it.
  CheckpointRecord found_row(const std::string& file, const store::PayloadCheck& check, std::string origin) {
    const auto parsed = names::parse_checkpoint_file(file).value();
    CheckpointRecord record;
    record.kind = parsed.kind;
    record.epoch = parsed.epoch;
    record.file = file;
    record.size = check.digest.size;
    record.hash = check.digest.hash;
    record.hash_algo = std::string(to_string(options_.hash_algorithm));
    record.status = std::string(status::kCommitted);
    record.origin = std::move(origin);
    describe_from_payload(record, check);
    return record;
  }

  // What an adopted file's row says beyond its bytes, from the payload (docs/schema.md):
  // written at the file's mtime; the epoch its state is of; the metric. The best model's
  // metric is that of the committed epoch checkpoint with the same content, if one has it
  // (the guide saves best_acc before it updates it, so the best file's own best_acc is the
  // previous best), else the file's val_acc, as the guide's loop names it.
  void describe_from_payload(CheckpointRecord& record, const store::PayloadCheck& check) {
    if (auto written = fs_->modified_ns(dir_ / record.file)) record.created_at = iso_utc(*written);
    record.state_epoch = record.kind == CheckpointKind::epoch ? record.epoch : check.epoch;
    if (record.kind == CheckpointKind::best && !check.content_key.empty()) {
      std::optional<CheckpointRecord> same;  // the most recent commit of that content
      for (const auto& row : index_->live_rows()) {
        if (row.kind != CheckpointKind::epoch || !row.metric || (same && same->commit_seq > row.commit_seq)) continue;
        if (store::content_key(*fs_, dir_ / row.file) == check.content_key) same = row;
      }
      if (same) {
        record.metric = same->metric;
        record.metric_source = fmt::format("epoch {}, the same content", *same->epoch);
        record.state_epoch = same->epoch;
        return;
      }
    }
    for (const auto& [name, value] : check.numbers) {
      if (name != names::kGuideMetric) continue;
      record.metric = value;
      record.metric_source = fmt::format("{} in the file", names::kGuideMetric);
    }
  }

  static std::string metric_note(const CheckpointRecord& record) {
    return record.metric ? fmt::format(", metric {} ({})", *record.metric, record.metric_source) : "";
  }

 public:
  std::vector<RepairAction> plan_for_repair(bool verify_hashes) { return plan(verify_hashes); }
  std::vector<RepairAction> repair() {
    ensure_resolved();
    report_ = RecoveryReport{};
    auto actions = plan(/*verify_hashes=*/true);
    apply(actions);
    return actions;
  }

 private:
  std::filesystem::path dir_;
  StoreOptions options_;
  std::shared_ptr<FileSystem> fs_;
  std::unique_ptr<DirectoryLock> lock_;
  std::unique_ptr<index::Index> index_;
  index::Index::Locking index_locking_ = index::Index::Locking::normal;
  RecoveryReport report_;
  std::uint64_t temp_sequence_ = 0;
  // A save that failed past its pending row and is not resolved yet (see resolve()).
  struct Unresolved {
    std::int64_t pending_id;
    std::string file;
    bool dir_synced;       // the rename, if it happened, is durable
    bool reopen_required;  // the directory fsync failed: only a fresh open may decide
    std::string cause;
  };
  std::optional<Unresolved> unresolved_;
  std::optional<IoError> read_error_;  // why the last try_load returned unreadable
  // What plan() read of each file it plans to adopt (named metrics, epoch), for apply().
  std::map<std::string, store::PayloadCheck> checked_;
};

CheckpointStore::CheckpointStore(std::filesystem::path dir, StoreOptions options)
    : impl_(std::make_unique<Impl>(std::move(dir), std::move(options))) {}
CheckpointStore::~CheckpointStore() = default;
CheckpointStore::CheckpointStore(CheckpointStore&&) noexcept = default;
CheckpointStore& CheckpointStore::operator=(CheckpointStore&&) noexcept = default;

CheckpointRecord CheckpointStore::save(CheckpointKind kind, std::optional<std::int64_t> epoch,
                                       std::optional<double> metric, std::uint64_t size_hint,
                                       const PayloadWriter& write_payload) {
  SaveRequest request;
  request.kind = kind;
  request.epoch = epoch;
  request.metric = metric;
  request.size_hint = size_hint;
  return impl_->save(request, write_payload);
}
CheckpointRecord CheckpointStore::save(const SaveRequest& request, const PayloadWriter& write_payload) {
  return impl_->save(request, write_payload);
}
std::vector<NamedMetric> CheckpointStore::metrics_of(std::int64_t checkpoint_id) const {
  return impl_->metrics_of(checkpoint_id);
}
std::optional<CheckpointRecord> CheckpointStore::latest() const { return impl_->latest(); }
std::optional<CheckpointRecord> CheckpointStore::best() const { return impl_->best(); }
std::vector<CheckpointRecord> CheckpointStore::live_checkpoints() const { return impl_->live_checkpoints(); }
std::optional<CheckpointRecord> CheckpointStore::load_latest(const PayloadReader& read_payload) {
  return impl_->load_latest(read_payload);
}
std::optional<CheckpointRecord> CheckpointStore::load_best(const PayloadReader& read_payload) {
  return impl_->load_best(read_payload);
}

namespace {
// Collects the payload's bytes; the store's hash check runs after it.
std::optional<VerifiedPayload> with_bytes(
    const std::function<std::optional<CheckpointRecord>(const PayloadReader&)>& load) {
  std::vector<char> bytes;
  auto record = load([&](PayloadSource& source, const CheckpointRecord&) {
    bytes.resize(source.size());
    source.read_at(0, bytes.data(), bytes.size());
  });
  if (!record) return std::nullopt;
  return VerifiedPayload{std::move(*record), std::move(bytes)};
}
}  // namespace

std::optional<VerifiedPayload> CheckpointStore::load_latest() {
  return with_bytes([this](const PayloadReader& reader) { return impl_->load_latest(reader); });
}
std::optional<VerifiedPayload> CheckpointStore::load_best() {
  return with_bytes([this](const PayloadReader& reader) { return impl_->load_best(reader); });
}
std::vector<CheckpointRecord> CheckpointStore::gc(std::optional<int> keep) { return impl_->gc(keep); }
CheckpointRecord CheckpointStore::remove(std::int64_t id) { return impl_->remove(id); }
const std::filesystem::path& CheckpointStore::dir() const noexcept { return impl_->dir(); }
std::filesystem::path CheckpointStore::index_path() const { return impl_->index_path(); }
int CheckpointStore::max_to_keep() const noexcept { return impl_->max_to_keep(); }
const RecoveryReport& CheckpointStore::last_recovery() const noexcept { return impl_->last_recovery(); }

std::vector<RepairAction> CheckpointStore::plan_repair(const std::filesystem::path& dir, bool verify_hashes,
                                                       StoreOptions options) {
  Impl planner(dir, std::move(options), Impl::PlanOnly{});
  return planner.plan_for_repair(verify_hashes);
}

std::vector<RepairAction> CheckpointStore::repair() { return impl_->repair(); }

std::string_view to_string(RepairAction::Type type) noexcept {
  using Type = RepairAction::Type;
  switch (type) {
    case Type::roll_forward: return "roll forward";
    case Type::roll_back: return "roll back";
    case Type::finish_deletion: return "finish deletion";
    case Type::remove_temp_file: return "remove temp file";
    case Type::mark_missing: return "mark missing";
    case Type::quarantine_checkpoint: return "quarantine";
    case Type::delete_again: return "delete again";
    case Type::adopt: return "adopt";
    case Type::adopt_external: return "adopt external save";
    case Type::quarantine_file: return "quarantine";
    case Type::leave_unloadable: return "leave unloadable";
    case Type::leave_unreadable: return "leave unreadable";
  }
  return "unknown";
}

}  // namespace ckpt
