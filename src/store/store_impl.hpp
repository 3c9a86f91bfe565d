// CheckpointStore::Impl: the state one open checkpoint directory shares between the
// store's jobs, each in its own file:
//   checkpoint_store.cpp  opening (lock, index, recovery), queries, gc/remove, the public
//                         facade, and what keeps the store on its directory and index
//   save_protocol.cpp     the save protocol (its steps are listed there), commit, rotation,
//                         and resolving a save that failed past its pending row
//   loads.cpp             verified loads: resume candidate and best model
//   recovery_plan.cpp     recovery and repair planned from the index and the directory
//   recovery_apply.cpp    carrying out a plan; retiring rows (missing, quarantined); adoption
//   index_rebuild.cpp     checking an index, and rebuilding it from the checkpoint files
//   save_queue.cpp        the worker that runs asynchronous saves (its own class)
// Three decisions have one function each, used wherever they are needed: whether a
// pending save's rename happened (rename_happened), rolling a pending save back
// (roll_back), and quarantining a file (quarantine).
//
// Internal: not installed. Used by the store's user thread and its save worker: the
// facade runs every call through serialized() (wait for the worker, raise its oldest
// failure, take mutex_), and the worker takes mutex_ for each save it runs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/errors.hpp"
#include "ckpt/store.hpp"
#include "index/index.hpp"
#include "io/file_hash.hpp"
#include "io/temp_file.hpp"
#include "log/log.hpp"
#include "store/file_names.hpp"
#include "store/payload_probe.hpp"
#include "store/retention_plan.hpp"
#include "store/save_queue.hpp"
#include "store/test_hooks.hpp"

namespace ckpt {
namespace store {

// Why a pending save becomes committed. Picks the event its row records (event_name)
// and how loudly the commit is logged.
enum class CommitCause {
  saved,      // by the save call that wrote it: event "saved", logged at debug
  recovered,  // rolled forward by resolve() or recovery: event "recovered", a warning
};
std::string_view event_name(CommitCause cause) noexcept;

// "checkpoint_epoch_3.pth (epoch 3)", "best_model.pth (state of epoch 7)": a row in words.
std::string describe(const CheckpointRecord& record);
// Now, UTC, as quarantined and set-aside files are stamped: 20260102T030405Z.
std::string utc_stamp();

}  // namespace store

// The names every job's file of the store (and only they: this header is internal to
// src/store/) uses unqualified; each brings them in with `using namespace store_files;`.
namespace store_files {
namespace status = index::status;
using index::Durability;
using index::Transaction;
using spdlog::level::level_enum;
using store::CommitCause;
using store::describe;
using store::utc_stamp;
}  // namespace store_files

class CheckpointStore::Impl {
 public:
  struct PlanOnly {};
  struct Rebuild {
    bool replace_newer = false;
  };

  // Opens the directory as a writer: lock, index, recovery (checkpoint_store.cpp).
  Impl(std::filesystem::path dir, StoreOptions options);
  // For planning only: no lock, a read-only index, nothing recovered or written.
  Impl(std::filesystem::path dir, StoreOptions options, PlanOnly);
  // Opens the directory as a writer with a rebuilt index (index_rebuild.cpp).
  Impl(std::filesystem::path dir, StoreOptions options, Rebuild rebuild);

  // Waits for the worker's saves (the noexcept wait: nothing is raised).
  ~Impl();

  // What a public call runs under: the asynchronous saves in flight finish, the oldest
  // failure not raised yet is raised instead of the call, then `call` runs holding mutex_.
  template <typename Call>
  decltype(auto) serialized(Call&& call) {
    settle();
    return after_in_flight(std::forward<Call>(call));
  }
  // The same without raising: the failures stay for the calls after it.
  template <typename Call>
  decltype(auto) after_in_flight(Call&& call) {
    wait_idle();
    std::lock_guard<std::mutex> lock(mutex_);
    return call();
  }

  // ---- save_protocol.cpp ----
  CheckpointRecord save(const SaveRequest& request, const PayloadWriter& write_payload);
  // Queues a save for the worker (started on first use); see CheckpointStore::save_async.
  void save_async(SaveRequest request, PayloadWriter write_payload);
  // Waits for the worker's saves, then raises the oldest failure not raised yet.
  void settle();
  std::vector<InFlightSave> in_flight() const;
  // Waits for the worker's saves without raising anything.
  void wait_idle() noexcept;

  // ---- loads.cpp ----
  // `apply`, when set, runs on a verified candidate's file read afresh (loads.cpp).
  std::optional<CheckpointRecord> load_latest(const PayloadReader& read_payload, const PayloadReader& apply = {});
  std::optional<CheckpointRecord> load_best(const PayloadReader& read_payload, const PayloadReader& apply = {});

  // ---- checkpoint_store.cpp ----
  std::optional<CheckpointRecord> latest();
  std::optional<CheckpointRecord> best();
  std::vector<CheckpointRecord> live_checkpoints();
  std::vector<NamedMetric> metrics_of(std::int64_t checkpoint_id) { return index_->metrics(checkpoint_id); }
  std::vector<ShardRecord> shards_of(std::int64_t checkpoint_id);
  std::vector<RetentionDecision> gc(const RetentionPolicy& policy);
  RetentionPolicy retention() const { return RetentionPolicy{options_.max_to_keep, options_.retention}; }
  std::vector<RetentionDecision> retention_plan(const RetentionPolicy& policy);
  std::optional<CheckpointRecord> best_by(std::string_view metric, MetricMode mode);
  CheckpointRecord remove(std::int64_t id);
  const std::filesystem::path& dir() const noexcept { return dir_; }
  std::filesystem::path index_path() const { return dir_ / names::kIndex; }
  int max_to_keep() const noexcept { return options_.max_to_keep; }
  const RecoveryReport& last_recovery() const noexcept { return report_; }

  // ---- recovery_plan.cpp, recovery_apply.cpp ----
  std::vector<RepairAction> plan_for_repair(bool verify_hashes) { return plan(verify_hashes); }
  std::vector<RepairAction> repair();

  // ---- index_rebuild.cpp ----
  const IndexRebuild& last_rebuild() const noexcept { return rebuild_; }

 private:
  // ---- checkpoint_store.cpp ----
  // The writer's opening up to the index: validates the options, refuses a network file
  // system unless allowed, takes the lock, takes a recreated index's copy.
  void open_directory();
  // Opens (creating, migrating) the index, records the retention, recovers.
  void open_index();
  void step(std::string_view name);
  void record_retention_setting();
  // Inside the caller's transaction: marks what `policy` keeps no more as deleting
  // ('rotated_out', detail "<file>: <context><reason>") and rewrites the retention table.
  // Returns the decisions that marked them.
  std::vector<RetentionDecision> rotate(const RetentionPolicy& policy, std::string_view context);
  void remove_index_sidecars();
  void ensure_still_locked();
  void ensure_index_present();
  void take_recreated_index();
  io::FileDigest digest_of(const std::filesystem::path& path, const std::string& algorithm_name);

  // ---- save_protocol.cpp ----
  void check_request(const SaveRequest& request) const;
  std::optional<CheckpointRecord> link_source(const io::FileDigest& digest, const std::string& final_name);
  std::unique_ptr<io::TempName> link_temp(const CheckpointRecord& source, const std::string& final_name);
  void remove_rename_leftover(const std::filesystem::path& temp_path);
  void finish_save(std::int64_t pending_id, store::CommitCause cause);
  void note_superseded(const CheckpointRecord& record);
  int delete_obsolete_files();
  bool rename_happened(const CheckpointRecord& pending);
  bool resolve();
  void ensure_resolved();
  bool resolve_quietly() noexcept;
  void roll_back(std::int64_t pending_id, const std::string& file);

  // ---- shards.cpp ----
  void check_shards(const SaveRequest& request, const std::string& final_name);
  std::vector<std::string> unneeded_shard_files(const std::vector<std::string>& files,
                                                const std::set<std::int64_t>& rolling_back);
  int remove_unneeded_shards();
  std::string shard_problem(const CheckpointRecord& row, bool verify_hashes);

  // ---- loads.cpp ----
  enum class Loaded {
    yes,         // verified: the reader's last run is the checkpoint
    retired,     // missing or corrupt: the row is retired, the file quarantined
    unreadable,  // an I/O error (read_error_): file and row left as they are
    replaced,    // another writer's complete save under the name: adopted as a new row
  };
  Loaded try_load(const CheckpointRecord& record, const PayloadReader& read_payload);
  void apply_verified(const CheckpointRecord& record, const PayloadReader& apply);
  Loaded unreadable(const std::filesystem::path& path, const Error& error);
  bool matches_pending(const std::string& file);
  Loaded unreadable_pending(const CheckpointRecord& record);

  // ---- recovery_plan.cpp ----
  std::vector<RepairAction> plan(bool verify_hashes);
  RepairAction plan_orphan(const std::string& name);
  std::optional<store::PayloadCheck> external_save(const std::string& file);

  // ---- recovery_apply.cpp ----
  void apply(const std::vector<RepairAction>& actions);
  bool still_as_planned(const RepairAction& action);
  void mark_missing(const CheckpointRecord& record, std::string_view why);
  std::filesystem::path move_to_quarantine(const std::string& file);
  void quarantine(const std::string& file, std::optional<std::int64_t> checkpoint_id, const std::string& why);
  void check_sharers(const CheckpointRecord& corrupt);
  void adopt(const RepairAction& action);
  void adopt_external(const CheckpointRecord& old, const store::PayloadCheck& check);
  CheckpointRecord found_row(const std::string& file, const store::PayloadCheck& check, std::string origin);
  void describe_from_payload(CheckpointRecord& record, const store::PayloadCheck& check);
  static std::string metric_note(const CheckpointRecord& record);

  // ---- index_rebuild.cpp ----
  std::filesystem::path move_index_aside();

  std::filesystem::path dir_;
  StoreOptions options_;
  std::shared_ptr<FileSystem> fs_;
  store::TestHooks hooks_;  // none unless a test opened the store (store/test_hooks.hpp)
  std::unique_ptr<DirectoryLock> lock_;
  std::unique_ptr<index::Index> index_;
  index::Index::Locking index_locking_ = index::Index::Locking::normal;
  index::Index::Journal index_journal_ = index::Index::Journal::wal;
  RecoveryReport report_;
  IndexRebuild rebuild_;  // what rebuild_index did (the Rebuild constructor only)
  std::uint64_t temp_sequence_ = 0;
  // The interval rule's walk, carried between rotation passes (store/retention_plan.hpp).
  store::IntervalWalk interval_walk_;
  // A link failed with "not supported here" (is_link_unsupported): saves write from then on.
  bool links_unavailable_ = false;
  // Some row has shards (Index::has_shards at open, or a sharded save since): deletions
  // then look for shard files to remove.
  bool shards_in_use_ = false;
  // Rows retired since the last deletion pass whose shard files it removes (shards.cpp).
  std::vector<std::int64_t> retired_with_shards_;
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
  // Held by the worker for each save it runs, and by every public call (serialized()).
  std::mutex mutex_;
  // The asynchronous saves' worker, created by the first save_async. Declared last so that
  // it is gone before anything its saves use.
  std::unique_ptr<store::SaveQueue> queue_;
};

}  // namespace ckpt
