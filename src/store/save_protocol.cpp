// The save protocol, its commit (rotation, superseded epochs, obsolete files), and
// resolving a save that failed past its pending row.
//
// Save (each step named as the on_step hook sees it):
//   1. write `<final>.<pid>-<n>.tmp`, hashing as it goes      "temp_written"
//   2. fsync and close it                                     "temp_synced"
//   3. insert a pending row (size, hash); full commit         "pending_committed"
//   4. rename the temp file onto the final name               "renamed"
//   5. fsync the directory                                    "dir_synced"
//   6. commit the row; supersede the old row of that name;
//      mark obsolete files 'deleting'; deferred commit        "committed"
//   7. unlink the obsolete files; mark them 'deleted'; remove
//      the shard files of the rows retired (shards.cpp)        "obsolete_deleted"
// A multi-rank checkpoint's save (SaveRequest::shards) first checks that every shard is
// there (check_shards), records the shard rows in step 3's transaction, and is
// otherwise the same: its file is the manifest.
// Linked instead of written, when the payload's size and hash are a live checkpoint's
// whose file still holds them (link_source):
//   1'. hard-link that file to a new `<final>.<pid>-<n>.tmp`  "temp_linked"
//   then steps 3 to 7, the 'linked' event in step 3's commit; after step 4 a temp name
//   rename() left (the final name was a link to the same file) is removed.
// The payload's hash is known before step 1' either from step 1 (its temp file is then
// removed unsynced, "temp_written" before "temp_linked") or, with
// SaveRequest::likely_duplicate, from a hashing-only run of the writer (no step 1). A
// failed link falls back to steps 1 and 2. The linked file's bytes were made durable
// by its own save (step 2) or adoption; steps 3 to 7 make the new name so.
// Step 6 may use a deferred (unsynced) commit because steps 3 to 5 made everything it
// records recoverable: after a power loss, recovery finds the pending row and the file
// under the final name matching it, and redoes step 6 (finish_save) itself.
// A failure after step 3 leaves the save unresolved (Unresolved): every later call first
// resolves it by content (resolve()) or refuses, until the directory is reopened.
// Step 6 gives the row its place in the commit order (commit_seq): resume and rotation
// follow that order, not the epoch number.
#include "store/store_impl.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "io/atomic_file.hpp"
#include "log/log.hpp"

namespace ckpt {

namespace {
using namespace store_files;

}  // namespace

void CheckpointStore::Impl::check_request(const SaveRequest& request) const {
  // A step checkpoint needs its epoch too: the index's checkpoints table requires an
  // epoch of every periodic row (migrations/0001_init.sql's CHECK; docs/schema.md, "Steps").
  if (request.kind == CheckpointKind::epoch && !request.epoch) {
    throw InvalidArgument(fmt::format("{}: an epoch checkpoint needs an epoch number{}", dir_.string(),
                                      request.step ? fmt::format(" (step {} given: a step checkpoint records its epoch too)",
                                                                 *request.step)
                                                   : ""),
                          dir_);
  }
  if (request.kind != CheckpointKind::epoch && request.epoch) {
    throw InvalidArgument(fmt::format("{}: an epoch number names epoch checkpoints only (the {} checkpoint's state "
                                      "epoch is SaveRequest::state_epoch)",
                                      dir_.string(), to_string(request.kind)), dir_);
  }
  if (request.epoch && *request.epoch < 0) {
    throw InvalidArgument(fmt::format("{}: epoch must be >= 0, got {}", dir_.string(), *request.epoch), dir_);
  }
  if (request.step && *request.step < 0) {
    throw InvalidArgument(fmt::format("{}: step must be >= 0, got {}", dir_.string(), *request.step), dir_);
  }
}

CheckpointRecord CheckpointStore::Impl::save(const SaveRequest& request, const PayloadWriter& write_payload) {
  const CheckpointKind kind = request.kind;
  const std::optional<std::int64_t> epoch = request.epoch;
  check_request(request);
  ensure_still_locked();
  ensure_resolved();
  ensure_index_present();
  const std::string final_name = names::checkpoint_file(kind, epoch, request.step);
  const std::filesystem::path final_path = dir_ / final_name;
  check_shards(request, final_name);

  // The file under a temp name: a hard link to a live checkpoint of the same bytes
  // (step 1'), or written (steps 1 and 2).
  io::FileDigest digest;
  std::optional<CheckpointRecord> source;
  std::unique_ptr<io::TempName> linked;
  std::optional<io::HashingTempFile> written;
  if (request.likely_duplicate && !links_unavailable_) {
    io::HashingSink sink(options_.hash_algorithm);
    write_payload(sink);
    digest = sink.finish();
    source = link_source(digest, final_name);
    if (source) linked = link_temp(*source, final_name);
  }
  if (!linked) {
    io::require_free_space(*fs_, dir_, final_path, request.size_hint);
    written.emplace(*fs_, dir_ / names::temp_file(final_name, ::getpid(), ++temp_sequence_), options_.hash_algorithm);
    write_payload(*written);
    step("temp_written");
    digest = written->finish();
    if (!request.likely_duplicate && !links_unavailable_) {
      source = link_source(digest, final_name);
      if (source) linked = link_temp(*source, final_name);
    }
    if (linked) {
      written.reset();  // removed unsynced: most of its bytes never reach the disk
    } else {
      source.reset();
      written->sync_and_close(!hooks_.skip_file_fsync);
      step("temp_synced");
    }
  }
  const std::filesystem::path temp_path = linked ? linked->path() : written->path();

  CheckpointRecord record;
  record.kind = kind;
  record.epoch = epoch;
  record.step = request.step;
  record.metric = request.metric;
  if (request.metric) record.metric_source = request.metric_source.empty() ? "the save's argument" : request.metric_source;
  record.state_epoch = kind == CheckpointKind::epoch && epoch ? epoch : request.state_epoch;
  record.file = final_name;
  record.size = digest.size;
  record.hash = digest.hash;
  record.hash_algo = std::string(to_string(options_.hash_algorithm));
  record.status = std::string(status::kPending);
  {
    Transaction transaction(*index_, Durability::full);
    record.id = index_->insert(record);
    index_->insert_metrics(record.id, request.metrics);
    index_->insert_shards(record.id, request.shards);
    if (source) {
      index_->add_event("linked", record.id,
                        fmt::format("{}: a hard link to {} (checkpoint {}), the same bytes; nothing written",
                                    final_name, source->file, source->id));
    }
    transaction.commit();
  }
  if (!request.shards.empty()) shards_in_use_ = true;
  step("pending_committed");

  // Past the point of no return: from here a failure leaves a pending row that only
  // the content of the file can resolve. Until it is resolved the store refuses work.
  try {
    fs_->rename(temp_path, final_path);
  } catch (const std::exception& error) {
    // The rename may or may not have happened: decide by content now if possible.
    unresolved_ = Unresolved{record.id, record.file, /*dir_synced=*/false, /*reopen_required=*/false, error.what()};
    if (!resolve_quietly()) throw;
    return index_->find(record.id).value();  // it had happened: synced and committed now
  }
  if (linked) {
    linked->release();
    remove_rename_leftover(temp_path);
  } else {
    written->release();
  }
  step("renamed");
  try {
    if (!hooks_.skip_dir_fsync) fs_->sync_dir(dir_);
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
    finish_save(record.id, CommitCause::saved);
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

// The worker runs the same save() as a synchronous call, under the same mutex: an
// asynchronous save differs only in which thread waits for it.
void CheckpointStore::Impl::save_async(SaveRequest request, PayloadWriter write_payload) {
  check_request(request);
  if (!write_payload) throw InvalidArgument(fmt::format("{}: save_async needs a payload writer", dir_.string()), dir_);
  if (!queue_) {
    queue_ = std::make_unique<store::SaveQueue>(dir_.string(), options_.max_in_flight,
                                                [this](const SaveRequest& queued, const PayloadWriter& write) {
                                                  std::lock_guard<std::mutex> lock(mutex_);
                                                  save(queued, write);
                                                });
  }
  std::string file = names::checkpoint_file(request.kind, request.epoch, request.step);
  queue_->submit(std::move(request), std::move(write_payload), std::move(file));
}

void CheckpointStore::Impl::settle() {
  if (!queue_) return;
  queue_->wait_idle();
  queue_->raise_failure();
}

void CheckpointStore::Impl::wait_idle() noexcept {
  try {
    if (queue_) queue_->wait_idle();
  } catch (...) {
    // Only a broken mutex gets here; nothing better to do than go on.
  }
}

std::vector<InFlightSave> CheckpointStore::Impl::in_flight() const {
  return queue_ ? queue_->in_flight() : std::vector<InFlightSave>{};
}

CheckpointStore::Impl::~Impl() {
  if (queue_) queue_->stop();
}

// A live checkpoint whose bytes are `digest` (same size, hash and algorithm) and whose
// file still holds them (rehashed now: a link must never give a name other bytes than
// the payload's, whatever happened to the file since its commit); nullopt if none.
// Another name than `final_name` first: linking a name to its own file keeps a separate
// copy elsewhere separate.
std::optional<CheckpointRecord> CheckpointStore::Impl::link_source(const io::FileDigest& digest,
                                                                   const std::string& final_name) {
  const std::string algorithm(to_string(options_.hash_algorithm));
  std::vector<CheckpointRecord> rows = index_->live_rows_with(digest.size, digest.hash, algorithm);
  std::stable_partition(rows.begin(), rows.end(), [&](const CheckpointRecord& row) { return row.file != final_name; });
  for (const auto& row : rows) {
    const std::filesystem::path path = dir_ / row.file;
    try {
      if (fs_->file_size(path) == row.size && digest_of(path, algorithm).hash == row.hash) return row;
      log::write(level_enum::warn, "{}: not linking to it: it no longer holds checkpoint {}'s bytes", path.string(),
                 row.id);
    } catch (const Error& error) {
      log::write(level_enum::warn, "{}: not linking to it: {}", path.string(), error.what());
    }
  }
  return std::nullopt;
}

// Step 1': a new temp name for `source`'s file (hard link). nullptr when the link failed:
// the caller writes the bytes instead. A file system that cannot link (EPERM, EXDEV,
// EMLINK, EOPNOTSUPP, ENOSYS) is not asked again by this store, and said so once.
std::unique_ptr<io::TempName> CheckpointStore::Impl::link_temp(const CheckpointRecord& source,
                                                                const std::string& final_name) {
  const std::filesystem::path path = dir_ / names::temp_file(final_name, ::getpid(), ++temp_sequence_);
  try {
    fs_->link(dir_ / source.file, path);
  } catch (const Error& error) {
    if (is_link_unsupported(error.os_error())) {
      links_unavailable_ = true;
      log::write(level_enum::warn, "{}: no hard links here ({}); saves of bytes a checkpoint already holds are "
                 "written again", dir_.string(), error.what());
    } else {
      log::write(level_enum::warn, "{}; writing the bytes instead", error.what());
    }
    return nullptr;
  }
  auto name = std::make_unique<io::TempName>(*fs_, path);
  step("temp_linked");
  return name;
}

// After the rename of a linked temp name: where the final name already was a link to
// the same file, rename() did nothing (POSIX: both names stay), and the temp name is
// removed here. A failure leaves it to the next open's recovery (a leftover temp file).
void CheckpointStore::Impl::remove_rename_leftover(const std::filesystem::path& temp_path) {
  try {
    if (fs_->file_size(temp_path)) fs_->remove(temp_path);
  } catch (const Error& error) {
    log::write(level_enum::warn, "{}: could not remove it after the save: {}", temp_path.string(), error.what());
  }
}

// Step 6 of the save protocol, shared by save() and recovery: the pending row becomes
// the live row of its file, the row it replaces is retired, and files this save makes
// obsolete are marked for deletion. Deferred commit: see the file comment.
void CheckpointStore::Impl::finish_save(std::int64_t pending_id, CommitCause cause) {
  CheckpointRecord record = index_->find(pending_id).value();
  Transaction transaction(*index_, Durability::deferred);
  if (auto previous = index_->live_row_for(record.file)) {
    if (shards_in_use_) retired_with_shards_.push_back(previous->id);
    index_->set_status(previous->id, status::kReplaced);
    index_->add_event("replaced", previous->id, fmt::format("{} replaced by checkpoint {}", previous->file, record.id));
  }
  // A deletion still pending under this name is moot: the rename replaced those bytes.
  for (const auto& stale : index_->rows_for(record.file, status::kDeleting)) {
    index_->set_status(stale.id, status::kDeleted);
  }
  index_->mark_committed(record.id);
  std::string metric = record.metric ? fmt::format(", metric {}", *record.metric) : "";
  index_->add_event(event_name(cause), record.id, fmt::format("{}{}", describe(record), metric));
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
  if (record.kind == CheckpointKind::epoch) rotate(retention(), "");
  transaction.commit();
  // A save's own commit is routine; a rolled-forward one means a save was cut short.
  log::write(cause == CommitCause::saved ? level_enum::debug : level_enum::warn, "{} checkpoint {}",
             event_name(cause), (dir_ / record.file).string());
}

// An epoch save that is not above the epochs already there: the run was restarted from
// an earlier state, and the higher epochs belong to the run it abandoned. They stay
// (rotation removes them first); resume follows the new save, the most recent commit.
void CheckpointStore::Impl::note_superseded(const CheckpointRecord& record) {
  // Only a save that goes back (its epoch not above the previous epoch save's)
  // supersedes anything; the saves after it continue its line. Step checkpoints take
  // no part: their epoch, when given, is only recorded (SaveRequest).
  if (record.step || !record.epoch) return;
  auto previous = index_->newest_epoch(record.id);
  if (!previous || previous->step || !previous->epoch || *previous->epoch < *record.epoch) return;
  std::vector<std::string> epochs;
  for (const auto& old : index_->epochs_from(*record.epoch)) {
    if (old.id == record.id || old.step) continue;
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
int CheckpointStore::Impl::delete_obsolete_files() {
  auto doomed = index_->rows_with_status(status::kDeleting);
  if (doomed.empty()) {
    remove_unneeded_shards();  // a replaced checkpoint's shards, if any
    return 0;
  }
  for (const auto& row : doomed) {
    // A newer checkpoint may own the name again (epoch N rotated out, then saved anew).
    if (!index_->live_row_for(row.file)) fs_->remove(dir_ / row.file);
    if (shards_in_use_) retired_with_shards_.push_back(row.id);
  }
  Transaction transaction(*index_, Durability::deferred);
  for (const auto& row : doomed) {
    index_->set_status(row.id, status::kDeleted);
    index_->add_event("deleted", row.id, row.file);
  }
  transaction.commit();
  remove_unneeded_shards();
  return static_cast<int>(doomed.size());
}

// The one decision "did this pending save's rename happen": whether the file under its
// name holds its bytes (size, then hash by the row's algorithm). A crash can leave
// either; the temp file's name says nothing once the rename happened. Throws IoError
// when the file cannot be read: then nothing may be decided.
bool CheckpointStore::Impl::rename_happened(const CheckpointRecord& pending) {
  const std::filesystem::path path = dir_ / pending.file;
  auto size = fs_->file_size(path);
  return size && *size == pending.size && digest_of(path, pending.hash_algo).hash == pending.hash;
}

// A save that failed past its pending row, resolved by the content of the file: roll
// forward if the rename happened (syncing the directory first unless the save already
// had), back if it did not. Throws when that cannot be done now; the store then keeps
// refusing work until it is (or until the directory is reopened). Returns whether the
// save was rolled forward (committed).
bool CheckpointStore::Impl::resolve() {
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
      rolled_forward = unresolved.dir_synced || rename_happened(*pending);
      if (rolled_forward) {
        if (!unresolved.dir_synced && !hooks_.skip_dir_fsync) {
          try {
            fs_->sync_dir(dir_);
          } catch (...) {
            unresolved.reopen_required = true;
            throw;
          }
          unresolved.dir_synced = true;
        }
        finish_save(pending->id, CommitCause::recovered);
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
void CheckpointStore::Impl::ensure_resolved() {
  if (unresolved_) (void)resolve();
}

// resolve(), logging instead of throwing; false unless the save was rolled forward.
bool CheckpointStore::Impl::resolve_quietly() noexcept {
  try {
    return resolve();
  } catch (const std::exception& error) {
    log::write(level_enum::err, "{}", error.what());
    return false;
  }
}

// A pending save whose rename did not happen: aborted, the previous file kept. Shared
// by resolve() and recovery.
void CheckpointStore::Impl::roll_back(std::int64_t pending_id, const std::string& file) {
  Transaction transaction(*index_, Durability::deferred);
  index_->set_status(pending_id, status::kAborted);
  index_->add_event("recovered", pending_id, fmt::format("{}: save did not complete; previous file kept", file));
  transaction.commit();
  log::write(level_enum::warn, "rolled back an unfinished save of {}", (dir_ / file).string());
}

std::string_view store::event_name(CommitCause cause) noexcept {
  switch (cause) {
    case CommitCause::saved: return "saved";
    case CommitCause::recovered: return "recovered";
  }
  return "recovered";
}

}  // namespace ckpt
