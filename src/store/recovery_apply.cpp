// Carrying out a recovery or repair plan, and what it shares with loads: retiring a row
// whose file is missing or corrupt (mark_missing, quarantine) and adopting a complete
// file another program wrote (adopt, adopt_external).
#include "store/store_impl.hpp"

#include <unistd.h>

#include <ctime>
#include <fmt/format.h>

#include "log/log.hpp"

namespace ckpt {

namespace {
using namespace store_files;

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

void CheckpointStore::Impl::apply(const std::vector<RepairAction>& actions) {
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
        finish_save(*action.checkpoint_id, CommitCause::recovered);
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
      case Type::quarantine_checkpoint: quarantine(action.file, action.checkpoint_id, action.reason); break;
      case Type::delete_again:
        if (index_->live_row_for(action.file)) break;  // the name has a checkpoint again
        fs_->remove(path);
        fs_->sync_dir(dir_);
        ++report_.deletions_finished;
        log::write(level_enum::info, "deleted {} again: its deletion was undone by a crash", path.string());
        break;
      case Type::quarantine_file:
        step("recover_orphan");
        quarantine(action.file, std::nullopt, action.reason);
        break;
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
      case Type::remove_shard_file:
        fs_->remove(path);
        ++report_.shards_removed;
        log::write(level_enum::info, "removed {}: {}", path.string(), action.reason);
        break;
    }
  }
  if (synced_temp_removal) fs_->sync_dir(dir_);
  report_.deletions_finished += delete_obsolete_files();

  if (report_.anything_done()) {
    std::string summary = fmt::format(
        "rolled forward {}, rolled back {}, deletions finished {}, temp files removed {}, adopted {}, "
        "external saves adopted {}, quarantined {}, missing {}, shard files removed {}",
        report_.rolled_forward, report_.rolled_back, report_.deletions_finished, report_.temp_files_removed,
        report_.adopted, report_.external_saves, report_.quarantined, report_.missing, report_.shards_removed);
    Transaction transaction(*index_, Durability::full);
    index_->add_event("recovered", std::nullopt, summary);
    transaction.commit();
    log::write(level_enum::warn, "recovered {}: {}", dir_.string(), summary);
  }
}

// Whether the row an action is about is still in the state the plan saw (a row-less
// action always is).
bool CheckpointStore::Impl::still_as_planned(const RepairAction& action) {
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

void CheckpointStore::Impl::mark_missing(const CheckpointRecord& record, std::string_view why) {
  Transaction transaction(*index_, Durability::full);
  index_->set_status(record.id, status::kMissing);
  index_->add_event("missing", record.id, fmt::format("{}: {}", record.file, why));
  transaction.commit();
  ++report_.missing;
  log::write(level_enum::err, "{}: {}; checkpoint {} is no longer available", (dir_ / record.file).string(), why,
             record.id);
}

// Moves a file into quarantine/ (never deletes it). Returns its new path.
std::filesystem::path CheckpointStore::Impl::move_to_quarantine(const std::string& file) {
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

// The one way a file is quarantined: moved into quarantine/ (never deleted: the user
// may want it), its row (if it has one) marked 'quarantined', a 'quarantined' event,
// counted and logged as an error. The move is durable before the row says so; a crash
// between them leaves a committed row whose file is missing, which recovery marks.
// Live rows recorded with the same bytes may name the same file (a hard link:
// docs/durability.md, "Shared files"): each is rehashed now and quarantined too if it
// no longer matches (check_sharers).
void CheckpointStore::Impl::quarantine(const std::string& file, std::optional<std::int64_t> checkpoint_id, const std::string& why) {
  std::optional<CheckpointRecord> row = checkpoint_id ? index_->find(*checkpoint_id) : std::nullopt;
  std::filesystem::path target = move_to_quarantine(file);
  Transaction transaction(*index_, Durability::full);
  if (checkpoint_id) index_->set_status(*checkpoint_id, status::kQuarantined);
  index_->add_event("quarantined", checkpoint_id, fmt::format("{}: {}; moved to {}", file, why, target.string()));
  transaction.commit();
  ++report_.quarantined;
  log::write(level_enum::err, "{}: {}; moved to {}", (dir_ / file).string(), why, target.string());
  if (row) check_sharers(*row);
}

// The live checkpoints recorded with the bytes of `corrupt` (just quarantined): a name
// linked to the same file is corrupt too, and is quarantined with the reason; a
// separate copy that still matches is kept, and the user told either way.
void CheckpointStore::Impl::check_sharers(const CheckpointRecord& corrupt) {
  for (const auto& row : index_->live_rows()) {
    if (row.size != corrupt.size || row.hash != corrupt.hash || row.hash_algo != corrupt.hash_algo) continue;
    const std::filesystem::path path = dir_ / row.file;
    std::optional<std::uint64_t> size;
    std::string hash;
    try {
      size = fs_->file_size(path);
      if (size && *size == row.size) hash = digest_of(path, row.hash_algo).hash;
    } catch (const Error& error) {
      log::write(level_enum::err, "{} shares its bytes with {}, found corrupt, and could not be checked: {}",
                 path.string(), corrupt.file, error.what());
      continue;
    }
    if (!size) continue;  // missing: recovery or its load marks it
    if (hash == row.hash) {
      log::write(level_enum::warn, "{} was saved with the same bytes as {}, found corrupt; it is a separate copy "
                 "and still intact", path.string(), corrupt.file);
      continue;
    }
    quarantine(row.file, row.id, fmt::format("shares its bytes with {}, found corrupt: corrupt too", corrupt.file));
  }
}

void CheckpointStore::Impl::adopt(const RepairAction& action) {
  const std::filesystem::path path = dir_ / action.file;
  const store::PayloadCheck& check = checked_.at(action.file);
  CheckpointRecord record = found_row(action.file, check, origins::kAdopted);
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

void CheckpointStore::Impl::adopt_external(const CheckpointRecord& old, const store::PayloadCheck& check) {
  const std::filesystem::path path = dir_ / old.file;
  CheckpointRecord record = found_row(old.file, check, origins::kExternal);
  if (!record.epoch && record.kind == CheckpointKind::epoch) record.epoch = old.epoch;  // a step file's, stateless of epoch
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
CheckpointRecord CheckpointStore::Impl::found_row(const std::string& file, const store::PayloadCheck& check, std::string origin) {
  const auto parsed = names::parse_checkpoint_file(file).value();
  CheckpointRecord record;
  record.kind = parsed.kind;
  record.epoch = parsed.epoch;
  record.step = parsed.step;
  // A step checkpoint's epoch is not in its name: the state's `epoch` entry, as saved
  // (plan_orphan leaves a step file without one alone; an external save keeps its row's).
  if (record.step && !record.epoch) record.epoch = check.epoch;
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
void CheckpointStore::Impl::describe_from_payload(CheckpointRecord& record, const store::PayloadCheck& check) {
  if (auto written = fs_->modified_ns(dir_ / record.file)) record.created_at = iso_utc(*written);
  record.state_epoch = record.kind == CheckpointKind::epoch && record.epoch ? record.epoch : check.epoch;
  if (record.kind == CheckpointKind::best && !check.content_key.empty()) {
    std::optional<CheckpointRecord> same;  // the most recent commit of that content
    for (const auto& row : index_->live_rows()) {
      if (row.kind != CheckpointKind::epoch || !row.metric || (same && same->commit_seq > row.commit_seq)) continue;
      if (store::content_key(*fs_, dir_ / row.file) == check.content_key) same = row;
    }
    if (same) {
      record.metric = same->metric;
      record.metric_source = same->step ? fmt::format("step {}, the same content", *same->step)
                                        : fmt::format("epoch {}, the same content", *same->epoch);
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

std::string CheckpointStore::Impl::metric_note(const CheckpointRecord& record) {
  return record.metric ? fmt::format(", metric {} ({})", *record.metric, record.metric_source) : "";
}

std::vector<RepairAction> CheckpointStore::Impl::repair() {
  ensure_resolved();
  report_ = RecoveryReport{};
  auto actions = plan(/*verify_hashes=*/true);
  apply(actions);
  return actions;
}

}  // namespace ckpt
