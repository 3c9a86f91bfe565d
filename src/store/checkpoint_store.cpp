// CheckpointStore: opening a directory as a writer (lock, index, recovery), the queries,
// gc and remove, what keeps the store on its directory and its index, and the public
// facade over CheckpointStore::Impl. The other jobs have files of their own
// (store/store_impl.hpp lists them).
#include "store/store_impl.hpp"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fmt/format.h>

#include "io/hasher.hpp"
#include "log/log.hpp"
#include "store/retention_plan.hpp"

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
             quarantined + missing + shards_removed > 0;
}

std::string store::utc_stamp() {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &tm);
  return buffer;
}

std::string store::describe(const CheckpointRecord& record) {
  if (record.kind == CheckpointKind::epoch && record.step) {
    return record.epoch ? fmt::format("{} (step {}, epoch {})", record.file, *record.step, *record.epoch)
                        : fmt::format("{} (step {})", record.file, *record.step);
  }
  if (record.kind == CheckpointKind::epoch) return fmt::format("{} (epoch {})", record.file, *record.epoch);
  if (record.state_epoch) return fmt::format("{} (state of epoch {})", record.file, *record.state_epoch);
  return record.file;
}

namespace {
using namespace store_files;

constexpr const char* kMaxToKeepSetting = index::settings::kMaxToKeep;
constexpr const char* kRetentionSetting = index::settings::kRetention;
// Where a writer whose index was deleted under it puts the copy it recreates it from.
constexpr const char* kRecreatedIndex = "index.sqlite.recreated";

std::string host_name() {
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0) return "unknown-host";
  return buffer;
}

}  // namespace

CheckpointStore::Impl::Impl(std::filesystem::path dir, StoreOptions options)
    : dir_(std::move(dir)), options_(std::move(options)), fs_(options_.file_system) {
  open_directory();
  open_index();
}

CheckpointStore::Impl::Impl(std::filesystem::path dir, StoreOptions options, PlanOnly)
    : dir_(std::move(dir)), options_(std::move(options)), fs_(options_.file_system) {
  if (!fs_) fs_ = FileSystem::posix();
  const std::filesystem::path index_path = dir_ / names::kIndex;
  if (!fs_->file_size(index_path)) {
    throw IndexError(ErrorCode::index, fmt::format("{}: no {}", dir_.string(), names::kIndex), index_path);
  }
  index_ = std::make_unique<index::Index>(index_path, index::Index::Mode::read_only);
}

void CheckpointStore::Impl::open_directory() {
  validate(RetentionPolicy{options_.max_to_keep, options_.retention}, dir_.string());
  if (options_.max_in_flight < 1) {
    throw InvalidArgument(fmt::format("{}: max_in_flight must be >= 1, got {}", dir_.string(), options_.max_in_flight),
                          dir_);
  }
  if (!fs_) fs_ = FileSystem::posix();
  hooks_ = store::test_hooks_of(fs_.get());
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
  const bool rollback = options_.index_journal == IndexJournal::rollback ||
                        (options_.index_journal == IndexJournal::automatic && fs_type.network);
  index_journal_ = rollback ? index::Index::Journal::rollback : index::Index::Journal::wal;
  if (fs_type.network) {
    log::write(level_enum::warn,
               "{}: writing on a network file system ({}) as allowed; the index is opened with {} in exclusive "
               "locking mode (no readers while this store is open); make sure only one host writes this directory",
               dir_.string(), fs_type.name, rollback ? "a rollback journal" : "WAL");
  }
  lock_ = fs_->lock_exclusive(dir_ / names::kLock, fmt::format("pid {} on {}", ::getpid(), host_name()));
  index_locking_ = fs_type.network ? index::Index::Locking::exclusive : index::Index::Locking::normal;
  take_recreated_index();
}

void CheckpointStore::Impl::open_index() {
  index_ = std::make_unique<index::Index>(dir_ / names::kIndex, index::Index::Mode::read_write, hooks_.sqlite_vfs,
                                          index_locking_, index_journal_);
  interval_walk_ = {};
  shards_in_use_ = index_->has_shards();
  record_retention_setting();
  apply(plan(/*verify_hashes=*/false));
}

std::optional<CheckpointRecord> CheckpointStore::Impl::latest() {
  ensure_resolved();
  return index_->resume_candidate();
}

std::optional<CheckpointRecord> CheckpointStore::Impl::best() {
  ensure_resolved();
  return index_->best();
}

std::vector<CheckpointRecord> CheckpointStore::Impl::live_checkpoints() {
  ensure_resolved();
  return index_->live_rows();
}

std::vector<RetentionDecision> CheckpointStore::Impl::gc(const RetentionPolicy& policy) {
  ensure_still_locked();
  ensure_resolved();
  validate(policy, dir_.string());
  std::vector<RetentionDecision> removed;
  {
    Transaction transaction(*index_, Durability::full);
    removed = rotate(policy, "gc: ");
    transaction.commit();
  }
  delete_obsolete_files();
  return removed;
}

std::vector<RetentionDecision> CheckpointStore::Impl::rotate(const RetentionPolicy& policy, std::string_view context) {
  std::vector<RetentionDecision> removed;
  // Keeping all: no pass (it would rewrite a row per checkpoint on every save), so the
  // retention table is empty then (docs/schema.md).
  if (policy.max_to_keep == 0) {
    index_->replace_retention({});
    return removed;
  }
  const auto plan = store::plan_retention(*index_, policy, &interval_walk_);
  for (const auto& decision : plan) {
    if (decision.kept()) continue;
    index_->set_status(decision.record.id, status::kDeleting);
    index_->add_event("rotated_out", decision.record.id,
                      fmt::format("{}: {}{}", describe(decision.record), context, decision.delete_reason));
    removed.push_back(decision);
  }
  index_->replace_retention(store::retention_rows(plan));
  return removed;
}

std::vector<RetentionDecision> CheckpointStore::Impl::retention_plan(const RetentionPolicy& policy) {
  ensure_resolved();
  validate(policy, dir_.string());
  return store::plan_retention(*index_, policy);
}

std::optional<CheckpointRecord> CheckpointStore::Impl::best_by(std::string_view metric, MetricMode mode) {
  ensure_resolved();
  return index_->best_by(metric, mode == MetricMode::min);
}

CheckpointRecord CheckpointStore::Impl::remove(std::int64_t id) {
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

void CheckpointStore::Impl::step(std::string_view name) {
  if (hooks_.on_step) hooks_.on_step(name);
}

void CheckpointStore::Impl::record_retention_setting() {
  const std::string keep = std::to_string(options_.max_to_keep);
  const std::string rules = to_string(options_.retention);
  auto stored_keep = index_->setting(kMaxToKeepSetting);
  auto stored_rules = index_->setting(kRetentionSetting);
  if (stored_keep == keep && stored_rules.value_or("") == rules) return;
  Transaction transaction(*index_, Durability::full);
  index_->set_setting(kMaxToKeepSetting, keep);
  index_->set_setting(kRetentionSetting, rules);
  std::string detail = fmt::format("max_to_keep {} (was {})", keep, stored_keep.value_or("unset"));
  if (stored_rules.value_or("") != rules) {
    detail += fmt::format("; rules '{}' (was '{}')", rules, stored_rules.value_or(""));
  }
  index_->add_event("retention_set", std::nullopt, detail);
  transaction.commit();
}

// The -wal, -shm and -journal files beside index.sqlite, which belong to whatever
// database was last opened under that name (a hot -journal of the old one would be
// rolled back into the new one, corrupting it).
void CheckpointStore::Impl::remove_index_sidecars() {
  for (const char* suffix : {"-wal", "-shm", "-journal"}) fs_->remove(dir_ / (std::string(names::kIndex) + suffix));
}

// The directory at dir_ is no longer the one this store locked (renamed away, maybe
// replaced by one another writer has locked): every write by path would land there.
// Checked before anything that writes, ahead of ensure_index_present(), which would
// otherwise "recreate" the index over the other writer's.
void CheckpointStore::Impl::ensure_still_locked() {
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
void CheckpointStore::Impl::ensure_index_present() {
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
    index_ = std::make_unique<index::Index>(path, index::Index::Mode::read_write, hooks_.sqlite_vfs, index_locking_,
                                            index_journal_);
    interval_walk_ = {};
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
void CheckpointStore::Impl::take_recreated_index() {
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

io::FileDigest CheckpointStore::Impl::digest_of(const std::filesystem::path& path, const std::string& algorithm_name) {
  HashAlgorithm algorithm = options_.hash_algorithm;
  io::parse_hash_algorithm(algorithm_name, algorithm);
  return io::hash_file(*fs_, path, algorithm);
}

CheckpointStore::CheckpointStore(std::filesystem::path dir, StoreOptions options)
    : impl_(std::make_unique<Impl>(std::move(dir), std::move(options))) {}
CheckpointStore::~CheckpointStore() = default;  // ~Impl waits for the worker
CheckpointStore::CheckpointStore(CheckpointStore&&) noexcept = default;
CheckpointStore& CheckpointStore::operator=(CheckpointStore&&) noexcept = default;

// Every call that reads or writes the directory or the index runs through serialized()
// (store_impl.hpp): after the saves in flight, raising their oldest failure first.
CheckpointRecord CheckpointStore::save(CheckpointKind kind, std::optional<std::int64_t> epoch,
                                       std::optional<double> metric, std::uint64_t size_hint,
                                       const PayloadWriter& write_payload) {
  SaveRequest request;
  request.kind = kind;
  request.epoch = epoch;
  request.metric = metric;
  request.size_hint = size_hint;
  return save(request, write_payload);
}
CheckpointRecord CheckpointStore::save(const SaveRequest& request, const PayloadWriter& write_payload) {
  return impl_->serialized([&] { return impl_->save(request, write_payload); });
}
CheckpointRecord CheckpointStore::save_despite_failures(const SaveRequest& request, const PayloadWriter& write_payload) {
  return impl_->after_in_flight([&] { return impl_->save(request, write_payload); });
}
void CheckpointStore::save_async(SaveRequest request, PayloadWriter write_payload) {
  impl_->save_async(std::move(request), std::move(write_payload));
}
void CheckpointStore::wait() { impl_->settle(); }
std::vector<InFlightSave> CheckpointStore::in_flight() const { return impl_->in_flight(); }
std::vector<NamedMetric> CheckpointStore::metrics_of(std::int64_t checkpoint_id) const {
  return impl_->serialized([&] { return impl_->metrics_of(checkpoint_id); });
}
std::vector<ShardRecord> CheckpointStore::shards_of(std::int64_t checkpoint_id) const {
  return impl_->serialized([&] { return impl_->shards_of(checkpoint_id); });
}
std::optional<CheckpointRecord> CheckpointStore::latest() const {
  return impl_->serialized([&] { return impl_->latest(); });
}
std::optional<CheckpointRecord> CheckpointStore::best() const {
  return impl_->serialized([&] { return impl_->best(); });
}
std::vector<CheckpointRecord> CheckpointStore::live_checkpoints() const {
  return impl_->serialized([&] { return impl_->live_checkpoints(); });
}
std::vector<CheckpointRecord> CheckpointStore::gc(std::optional<int> keep) {
  return impl_->serialized([&] {
    RetentionPolicy policy = impl_->retention();
    if (keep) policy.max_to_keep = *keep;
    std::vector<CheckpointRecord> removed;
    for (auto& decision : impl_->gc(policy)) removed.push_back(std::move(decision.record));
    return removed;
  });
}
std::vector<RetentionDecision> CheckpointStore::gc(const RetentionPolicy& policy) {
  return impl_->serialized([&] { return impl_->gc(policy); });
}
std::vector<RetentionDecision> CheckpointStore::retention_plan(const std::optional<RetentionPolicy>& policy) const {
  return impl_->serialized([&] { return impl_->retention_plan(policy.value_or(impl_->retention())); });
}
std::optional<CheckpointRecord> CheckpointStore::best_by(std::string_view metric, MetricMode mode) const {
  return impl_->serialized([&] { return impl_->best_by(metric, mode); });
}
CheckpointRecord CheckpointStore::remove(std::int64_t id) {
  return impl_->serialized([&] { return impl_->remove(id); });
}
// Fixed when the store opened: no waiting.
const std::filesystem::path& CheckpointStore::dir() const noexcept { return impl_->dir(); }
std::filesystem::path CheckpointStore::index_path() const { return impl_->index_path(); }
int CheckpointStore::max_to_keep() const noexcept { return impl_->max_to_keep(); }
RetentionPolicy CheckpointStore::retention() const { return impl_->retention(); }
// A save may add to the report (recovering an index deleted under the store): it waits.
const RecoveryReport& CheckpointStore::last_recovery() const noexcept {
  impl_->wait_idle();
  return impl_->last_recovery();
}

std::vector<RepairAction> CheckpointStore::plan_repair(const std::filesystem::path& dir, bool verify_hashes,
                                                       StoreOptions options) {
  Impl planner(dir, std::move(options), Impl::PlanOnly{});
  return planner.plan_for_repair(verify_hashes);
}

std::vector<RepairAction> CheckpointStore::repair() {
  return impl_->serialized([&] { return impl_->repair(); });
}

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
    case Type::remove_shard_file: return "remove shard file";
  }
  return "unknown";
}

}  // namespace ckpt
