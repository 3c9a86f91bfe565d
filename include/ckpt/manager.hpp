// CheckpointManager: the guide's Python CheckpointManager, in C++, on CheckpointStore.
//
// Same names, same files: best_model.pth, checkpoint_epoch_N.pth,
// interrupt_checkpoint.pth in save_dir, plus index.sqlite (and its -wal/-shm files) and
// index.lock. Differences from the guide, each for a reason given in README.md:
//   - saves are durable (fsync) as well as atomic, and recorded in the index;
//   - load_latest_checkpoint() marks an interrupt checkpoint consumed instead of deleting
//     it; the next epoch or interrupt save deletes it, so a crash right after resuming
//     loses nothing;
//   - a corrupt file is quarantined and the next candidate is loaded;
//   - a save of the state the previous save was given, unchanged (the guide's best model
//     right after its epoch checkpoint), links the new name to that file instead of
//     writing the bytes again (docs/durability.md, "Shared files").
//
// Asynchronous saves (save_epoch_checkpoint_async, save_checkpoint_async,
// save_best_model_async) return once the
// state is snapshotted; the store's worker writes, fsyncs, commits and rotates
// (CheckpointStore::save_async; docs/training.md, "Asynchronous saves", for the loop and
// the cost of each snapshot form; docs/durability.md for what is acknowledged when).
//
// A manager holds the directory's writer lock for its lifetime: a second manager on the
// same directory (in any process) fails at construction with LockedError naming the
// holder. Not thread-safe: use it from one thread, or guard it (its store's worker is the
// one other thread, see store.hpp).
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ckpt/layout.hpp"
#include "ckpt/restore.hpp"
#include "ckpt/state.hpp"
#include "ckpt/store.hpp"

namespace ckpt {

// What save_checkpoint records of a periodic checkpoint: an aggregate, so that
// `manager.save_checkpoint(state, {.epoch = 3, .step = 1500, .metrics = {{"val_loss", 0.21}}})`
// reads as the example (C++20 designated initializers; in C++17 set the fields).
struct CheckpointOptions {
  // The epoch is required (>= 0; the index keeps one for every periodic checkpoint), the
  // step optional (>= 0). With a step the file is checkpoint_step_<step>.pth and the
  // epoch is only recorded; without one it is checkpoint_epoch_<epoch>.pth, exactly as
  // save_epoch_checkpoint saves it.
  std::optional<std::int64_t> epoch;
  std::optional<std::int64_t> step;
  // Named metrics recorded in the index's `metrics` table besides those the state yields
  // (its int and float top-level entries). A name given here and in the state records
  // this value (the caller's word over the state's), once, where the state has it. A
  // `val_acc` here is also the row's `metric` (docs/schema.md), else the state's val_acc.
  std::vector<std::pair<std::string, double>> metrics;
};

namespace torch_layer {
class StateFingerprint;
class StagingPool;
}

class CheckpointManager {
 public:
  // The guide's class attributes (ckpt/layout.hpp holds the names).
  static constexpr const auto& BEST_MODEL_NAME = layout::kBestModel;
  static constexpr const auto& EPOCH_CKPT_PREFIX = layout::kEpochPrefix;
  static constexpr const auto& INTERRUPT_CKPT_NAME = layout::kInterrupt;

  // Opens or creates `save_dir`, takes its writer lock and recovers from any crash.
  // Throws InvalidArgument (max_to_keep < 0, or a device this libtorch build cannot
  // use), LockedError, IndexError, IoError.
  explicit CheckpointManager(std::filesystem::path save_dir = "checkpoint", c10::Device device = c10::kCPU,
                             int max_to_keep = 5);
  // As above, with the store's other options (hash algorithm, file-system seam).
  // options.max_to_keep is overridden by `max_to_keep`.
  CheckpointManager(std::filesystem::path save_dir, c10::Device device, int max_to_keep, StoreOptions options);
  ~CheckpointManager();
  CheckpointManager(CheckpointManager&&) noexcept;
  CheckpointManager& operator=(CheckpointManager&&) noexcept;

  // Replaces best_model.pth with `state`; the caller has decided it is the best.
  // `metric` is recorded in the index, and so is the epoch the state is of (`epoch`, else
  // the state's int `epoch` entry) and every numeric top-level entry of the state as a
  // named metric. Returns the committed index row.
  CheckpointRecord save_best_model(const State& state, double metric, std::optional<std::int64_t> epoch = std::nullopt);
  // The best model's state with tensors on the manager's device, or nullopt if there is
  // none (or it was found corrupt and quarantined).
  std::optional<State> load_best_model();

  // Saves checkpoint_epoch_<epoch>.pth (replacing one of that epoch), then keeps only
  // the max_to_keep most recently committed epochs (an epoch not above those already
  // there supersedes them: they are rotated out first, with a warning). REQUIRES: epoch >= 0.
  // Every int or float top-level entry of the state (val_acc, train_loss, ...) is recorded
  // as a named metric of the checkpoint (the index's `metrics` table); `metric` defaults to
  // the state's `val_acc`, as the guide's examples name it.
  CheckpointRecord save_epoch_checkpoint(const State& state, std::int64_t epoch,
                                         std::optional<double> metric = std::nullopt);
  // Saves a periodic checkpoint keyed by epoch, or by global step within an epoch (CheckpointOptions:
  // checkpoint_step_<step>.pth with a step, else checkpoint_epoch_<epoch>.pth). Step
  // checkpoints are of kind epoch: they rotate with the epoch checkpoints (the
  // max_to_keep most recently committed of both) and load_latest_checkpoint() resumes
  // from whichever was committed last. The row records the step in its `step` column;
  // the state is saved as given, so put a `step` entry in it to have it back on resume.
  // Returns the committed index row. Throws InvalidArgument (no epoch, or a negative
  // epoch or step), as save_epoch_checkpoint otherwise.
  CheckpointRecord save_checkpoint(const State& state, const CheckpointOptions& options);
  // The state to resume from: the most recently committed epoch or interrupt
  // checkpoint (the guide's "interrupt first, else highest epoch" in every ordinary run;
  // docs/durability.md). nullopt when there is nothing to resume from.
  std::optional<State> load_latest_checkpoint();

  // Restore in place (ckpt/restore.hpp): the checkpoint load_latest_checkpoint() or
  // load_best_model() would load, read straight into `target`'s module and optimizer in
  // two passes. Pass 1 runs while the store hashes the whole file: a file that does not
  // match its index row is quarantined (logged as an error) and the next candidate is
  // verified instead, with nothing applied from the damaged one. Pass 2 runs only on the
  // file whose hash matched. Returns the other entries, or nullopt when there is nothing
  // to load. Throws as restore_file does (StateError for a mismatch: nothing changed);
  // an error in pass 2 leaves the target partly restored and the checkpoint as it was
  // (an interrupt checkpoint is then not consumed).
  std::optional<RestoreResult> load_latest_checkpoint_into(const RestoreTarget& target,
                                                           const RestoreOptions& options = {});
  std::optional<RestoreResult> load_best_model_into(const RestoreTarget& target, const RestoreOptions& options = {});

  // Saves interrupt_checkpoint.pth: call it from the training loop (never from a signal
  // handler) after Ctrl+C was seen. Synchronous: it first waits for the asynchronous saves
  // in flight (a save in flight when the signal came completes first), then saves, even
  // if some of them failed (CheckpointStore::save_despite_failures). Their failures are
  // then raised as always, each once, oldest first: the first by this call once the
  // interrupt checkpoint is committed, the others by wait() and the calls after it. A
  // failure of the interrupt save itself is thrown as by the other saves (the earlier
  // failures are still raised by the calls after it).
  CheckpointRecord save_interrupt_checkpoint(const State& state);

  // How an asynchronous save takes the state.
  enum class Snapshot {
    // Every CPU tensor's storage is copied (one copy per storage, views kept) into buffers
    // the manager owns and reuses between saves, before the call returns: the caller may
    // modify the state at once. Costs one memcpy of the state's bytes per save (the first
    // save also faults the buffers in), and the buffers stay allocated between saves: one
    // copy of the state, two while a save is still in flight when the next copies.
    // Tensors on another device are copied to the CPU too (a fresh copy each save).
    copy,
    // Nothing is copied: the save writes the caller's tensors. The caller must not modify
    // them until wait() returns (or any other call of this manager but an asynchronous
    // save, which waits for the saves in flight). Costs nothing but that promise; a
    // tensor modified meanwhile gives a checkpoint of mixed or torn bytes whose hash still
    // matches (the hash is of the bytes written). The save keeps each tensor's storage
    // alive, so a tensor given new storage meanwhile (set_, module->to()) saves the old.
    borrow,
  };
  // save_epoch_checkpoint, asynchronously: snapshots the state, queues the save and
  // returns; rotation runs with it on the worker. The index row, metrics and the dedupe of
  // an unchanged state are as for the synchronous form. Snapshots first, then blocks while
  // max_in_flight saves (StoreOptions, default 1) are in flight (so with copy, the new
  // copy and the one in flight coexist; see Snapshot). Throws before queueing:
  // FormatError for a value that cannot be saved, InvalidArgument for a negative epoch,
  // the oldest failure of an earlier asynchronous save not raised yet (this save is then
  // not queued). The save's own failure is raised by wait() or the next call.
  void save_epoch_checkpoint_async(const State& state, std::int64_t epoch, std::optional<double> metric = std::nullopt,
                                   Snapshot snapshot = Snapshot::copy);
  // save_checkpoint, asynchronously (as save_epoch_checkpoint_async).
  void save_checkpoint_async(const State& state, const CheckpointOptions& options, Snapshot snapshot = Snapshot::copy);
  // save_best_model, asynchronously (as save_epoch_checkpoint_async).
  void save_best_model_async(const State& state, double metric, std::optional<std::int64_t> epoch = std::nullopt,
                             Snapshot snapshot = Snapshot::copy);
  // Blocks until every asynchronous save has committed or failed; raises the oldest
  // failure not raised yet (CheckpointStore::wait). The load calls and the synchronous
  // saves wait too; the destructor waits without raising.
  void wait();

  const std::filesystem::path& save_dir() const noexcept;
  c10::Device device() const noexcept { return device_; }
  int max_to_keep() const noexcept;
  // The store underneath, for index queries (latest(), best(), live_checkpoints()).
  CheckpointStore& store() noexcept { return *store_; }

 private:
  PayloadReader decoder_into(std::optional<State>& state) const;
  std::unique_ptr<torch_layer::StateFingerprint> announce(SaveRequest& request, const State& state);
  CheckpointRecord save(SaveRequest request, const State& state, const PayloadWriter& write,
                        bool despite_failures = false);
  void save_async(CheckpointKind kind, const CheckpointOptions& key, std::optional<double> metric,
                  std::optional<std::int64_t> state_epoch, const State& state, Snapshot snapshot);

  std::unique_ptr<CheckpointStore> store_;
  // Of the state the last successful save was given: the next save of it unchanged is
  // announced to the store as a likely duplicate (torch/state_fingerprint.hpp).
  std::unique_ptr<torch_layer::StateFingerprint> last_saved_;
  c10::Device device_;
  // Snapshot::copy's buffers, reused between saves (torch/snapshot.hpp).
  std::unique_ptr<torch_layer::StagingPool> staging_;
};

}  // namespace ckpt
