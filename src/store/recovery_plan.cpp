// Recovery and repair, planned before anything changes.
//
// Recovery (at open, holding the writer lock) resolves pending rows by content,
// finishes deletions, removes temp files, marks rows whose file vanished, and adopts or
// quarantines checkpoint files without a row. See docs/durability.md.
// plan() reads the index and the directory and returns the actions; apply()
// (recovery_apply.cpp) carries them out. `ckpt repair` shows a plan without applying it.
#include "store/store_impl.hpp"

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <map>
#include <set>
#include <tuple>

#include "log/log.hpp"

namespace ckpt {

namespace {
using namespace store_files;

// Another writer's temp file this young may be a save in progress (the Python guide's
// `<final>.tmp`, renamed onto its name when torch.save returns): recovery leaves it.
constexpr std::int64_t kYoungTempFileNs = 10'000'000'000;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

// Recovery and repair, planned from the index and the directory before anything
// changes, so that `ckpt repair` can show the plan and an open can carry it out.
std::vector<RepairAction> CheckpointStore::Impl::plan(bool verify_hashes) {
  using Type = RepairAction::Type;
  std::vector<RepairAction> actions;
  checked_.clear();
  std::set<std::string> replaced;  // names a rolled-forward save now owns
  std::set<std::string> deleted;   // names an unfinished deletion will remove
  // A file that cannot be read is not decided on: it and its row stay as they are (a
  // read error is not corruption), and the rest of the directory is recovered.
  std::set<std::string> unreadable;
  std::set<std::int64_t> rolling_back;  // pending rows whose shards are garbage once rolled back
  auto leave_unreadable = [&](std::optional<std::int64_t> id, const std::string& file, const Error& error) {
    unreadable.insert(file);
    actions.push_back({Type::leave_unreadable, id, file, fmt::format("could not be read: {}", error.what()), 0, {}});
  };
  for (const auto& pending : index_->rows_with_status(status::kPending)) {
    bool renamed = false;
    try {
      renamed = rename_happened(pending);
    } catch (const IoError& error) {
      leave_unreadable(pending.id, pending.file, error);
      continue;
    }
    if (renamed) {
      replaced.insert(pending.file);
      actions.push_back({Type::roll_forward, pending.id, pending.file, "the rename happened: commit the save", 0, {}});
    } else {
      rolling_back.insert(pending.id);
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
  for (const auto& name : unneeded_shard_files(files, rolling_back)) {
    actions.push_back({Type::remove_shard_file, std::nullopt, name,
                       "a shard no checkpoint needs: its save did not commit, or its checkpoint was replaced or "
                       "deleted", 0, {}});
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
    if (problem.empty() && shards_in_use_) {
      try {
        problem = shard_problem(row, verify_hashes);
      } catch (const IoError& error) {
        leave_unreadable(row.id, row.file, error);
        continue;
      }
      if (!problem.empty()) {
        // The manifest is sound; a shard is gone or damaged. Not another writer's save.
        // Quarantined, not only marked missing: a manifest left under its name without a
        // live row would be adopted by the next open, its shards unchecked.
        actions.push_back({Type::quarantine_checkpoint, row.id, row.file, problem, 0, {}});
        continue;
      }
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
  // high ones; ties (copied files) by kind, epochs then steps by number, then the interrupt.
  struct Orphan {
    std::int64_t written;
    int kind;
    std::int64_t epoch;
    std::int64_t step;
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
    // Epoch names before step names at a tie (-1: no step).
    orphans.push_back({fs_->modified_ns(dir_ / name).value_or(0), kind, parsed->epoch.value_or(0),
                       parsed->step.value_or(-1), name});
  }
  std::sort(orphans.begin(), orphans.end(), [](const Orphan& a, const Orphan& b) {
    return std::tie(a.written, a.kind, a.step, a.epoch) < std::tie(b.written, b.kind, b.step, b.epoch);
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
RepairAction CheckpointStore::Impl::plan_orphan(const std::string& name) {
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
  if (check.problem.empty() && names::parse_checkpoint_file(name)->step && !check.epoch) {
    // The index requires an epoch of every periodic row (docs/schema.md, "Steps").
    return {Type::leave_unloadable, std::nullopt, name,
            "no index row, and a step checkpoint whose state has no int `epoch` entry cannot be indexed",
            check.digest.size, check.digest.hash};
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

// A committed name whose bytes are not its row's: when the file is a complete payload
// that reads whole (every record's CRC-32 and padding intact), another writer saved it (the
// Python guide writing on in an imported directory), and it is adopted; damage fails
// those checks and is quarantined. Returns the check for an external save.
std::optional<store::PayloadCheck> CheckpointStore::Impl::external_save(const std::string& file) {
  store::PayloadCheck check = store::check_payload(*fs_, dir_ / file, options_.hash_algorithm);
  if (!check.problem.empty()) return std::nullopt;
  return check;
}

}  // namespace ckpt
