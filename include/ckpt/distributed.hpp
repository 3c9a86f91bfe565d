// Multi-rank checkpoints on torch.distributed's c10d (component `distributed`; docs/
// distributed.md): one checkpoint of many ranks, committed as one unit in the index.
//
// DistributedCheckpointManager is the guide's CheckpointManager for a job of many ranks.
// Every rank constructs one on the same directory (a file system all ranks share), in
// the same order, with the process group and the c10d store the group was made with
// (a ProcessGroup in libtorch 1.13 does not expose its store). Every save and load is
// collective: all ranks call it, in the same order.
//   - replicated: every rank holds the same state; rank 0 writes it as the single-process
//     manager does; the other ranks return once it is committed.
//   - sharded: each rank saves its own State as one shard, an ordinary .pth that torch.load
//     reads alone, named <checkpoint stem>.shard-<rank>-of-<world>.<token>.pth beside the
//     checkpoint's manifest (best_model.pth, checkpoint_epoch_N.pth, ...: a small .pth
//     listing the shards). Tensors listed in Placements are slices of global tensors; a
//     checkpoint saved by N ranks loads on M ranks, each reading only the byte ranges of
//     saved shards that overlap the slice it asks for, and load_full_state assembles the
//     whole state in one process.
//
// The commit (two-phase, over the c10d store, never a collective: a dead rank can hang a
// collective and a timed-out one leaves the group unusable; docs/notes/c10d_spike.md):
// every rank writes and fsyncs its shard under a temp name, renames it, fsyncs the
// directory and reports its size, hash and block hashes; rank 0 waits for every report
// until DistributedOptions::timeout, then commits the manifest's row and every shard row
// in one index transaction (CheckpointStore, SaveRequest::shards) and publishes the
// decision. A rank that failed, died or did not report by the deadline makes the save
// fail on every rank with DistributedError naming it; nothing is committed, and its
// shards are removed by rank 0's next save or open. Only rank 0 opens the index.
//
// Asynchronous saves (save_*_async) snapshot this rank's state and return; a thread of the
// manager then runs the same commit, so a checkpoint is still all ranks' or none.
//
// Thread safety: as CheckpointManager (one thread; the manager's own thread runs the save
// in flight). Not copyable.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/errors.hpp"
#include "ckpt/manager.hpp"
#include "ckpt/state.hpp"
#include "ckpt/store.hpp"

namespace ckpt {

// Where a rank's tensor sits in a global tensor: the global shape and this slice's
// offsets (sizes are the tensor's own on save; on load, the slice asked for).
struct TensorPlacement {
  std::vector<std::int64_t> global_shape;
  std::vector<std::int64_t> offsets;
  std::vector<std::int64_t> sizes;  // load: the slice's sizes; save: empty (the tensor's)
};
// Sharded tensors by their path in the State: keys of nested States joined by '/'
// ("model/fc.weight": state["model"]["fc.weight"]).
using Placements = std::map<std::string, TensorPlacement>;

enum class DistributedMode { replicated, sharded };

struct DistributedOptions {
  DistributedMode mode = DistributedMode::sharded;
  // Rank 0 waits this long from its own save call for every rank's report; a rank not
  // reported by then fails the save. The other ranks wait for rank 0's decision until
  // their own call's start + timeout + grace (rank 0's index commit and fsyncs), then fail
  // with "no decision". Also bounds construction and each load's rounds.
  std::chrono::milliseconds timeout{60'000};
  std::chrono::milliseconds grace{30'000};
  int max_to_keep = 5;
  StoreOptions store;  // rank 0's store (hash algorithm, network file systems, ...)
};

// A collective save or load failed on some rank, or a rank or rank 0 did not answer in
// time: the message names the ranks and why. Nothing was committed (except as said for
// "no decision": rank 0 may have committed before it stopped answering; its next open
// decides, see docs/distributed.md).
class DistributedError : public Error {
 public:
  using Error::Error;
};

class DistributedCheckpointManager {
 public:
  // Collective. Rank 0 opens (creates, recovers) the directory first; the others wait
  // for it (timeout). Throws DistributedError (rank 0 failed to open, naming why, or
  // did not answer), InvalidArgument, and on rank 0 what CheckpointManager throws.
  DistributedCheckpointManager(std::filesystem::path save_dir, c10::intrusive_ptr<c10d::ProcessGroup> process_group,
                               c10::intrusive_ptr<c10d::Store> store, DistributedOptions options = {});
  ~DistributedCheckpointManager();
  DistributedCheckpointManager(const DistributedCheckpointManager&) = delete;
  DistributedCheckpointManager& operator=(const DistributedCheckpointManager&) = delete;

  // Collective saves, as CheckpointManager's (rank 0's state gives the index its metrics
  // and epoch). Each first waits for the asynchronous save in flight; its failure, not
  // raised yet, is raised once this save is done (or by the next call if this one throws):
  // the call then throws that earlier failure although this save committed (the row is
  // in rank 0's store()). Sharded mode: `placements` lists this rank's sharded tensors (each rank
  // its own). Returns the committed row (its id, file, kind and epoch on every rank; the
  // full row on rank 0). Throws DistributedError naming the failed or silent ranks.
  CheckpointRecord save_epoch_checkpoint(const State& state, std::int64_t epoch,
                                         std::optional<double> metric = std::nullopt,
                                         const Placements& placements = {});
  CheckpointRecord save_best_model(const State& state, double metric, const Placements& placements = {});
  CheckpointRecord save_interrupt_checkpoint(const State& state, const Placements& placements = {});

  // How an asynchronous save takes the state: as CheckpointManager's (copy: every
  // tensor's bytes copied into buffers the manager reuses, a GPU tensor's to the CPU, the
  // caller may train on at once; borrow: nothing copied, the caller leaves the tensors
  // alone until wait()).
  using Snapshot = CheckpointManager::Snapshot;
  // The saves above, asynchronously: snapshot this rank's state and return; the manager's
  // thread writes this rank's shard (sharded; replicated: rank 0 its file), reports it,
  // and on rank 0 commits, exactly as the synchronous save does. One save is in flight per
  // rank: any later call of the manager first waits for it. A save's failure, on any rank
  // (this rank's placements that do not fit its state, another rank's failed write or
  // death, rank 0's commit), is raised once on each rank: by wait(), or by the next call
  // after it did its own work (a save still saves; a load fails on every rank instead, see
  // the loads). So every call takes its turn and the ranks stay paired even when they
  // raise it at different calls. Throws at the call only InvalidArgument for a negative
  // epoch (every rank passes the same), or an earlier save's failure not raised yet (this
  // save is then queued all the same).
  void save_epoch_checkpoint_async(const State& state, std::int64_t epoch, std::optional<double> metric = std::nullopt,
                                   const Placements& placements = {}, Snapshot snapshot = Snapshot::copy);
  void save_best_model_async(const State& state, double metric, const Placements& placements = {},
                             Snapshot snapshot = Snapshot::copy);
  // Blocks until the save in flight has committed or failed; raises its failure (a
  // DistributedError naming the ranks, or what rank 0's store threw) if not raised yet.
  // The destructor waits without raising.
  void wait();

  // Collective loads: this rank's state of the checkpoint a resume would load (resume
  // priority, as CheckpointManager's), or nullopt on every rank when there is none.
  // Sharded: with `wanted` empty, this rank's own shard (the world size must be the one
  // it was saved with); with `wanted`, its tensors are the slices asked for, assembled
  // from the saved shards (any world size), the rest of the state from the shard of this
  // rank (rank 0's when there are fewer shards). Every byte read is checked against the
  // hashes committed with the checkpoint. A rank that fails makes the load fail on every
  // rank (DistributedError naming it), so no rank resumes alone. Each first waits for the
  // asynchronous save in flight; a rank with its failure not raised yet raises it instead
  // of loading, and the load fails on every other rank, naming that rank.
  std::optional<State> load_latest_checkpoint(const Placements& wanted = {});
  std::optional<State> load_best_model(const Placements& wanted = {});

  int rank() const noexcept;
  int world_size() const noexcept;
  // Rank 0's store (index queries); nullptr on the other ranks. The save in flight uses it
  // from the manager's thread: call wait() before using it.
  CheckpointStore* store() noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// One process, no process group: the whole state of the checkpoint a resume of `dir`
// would load (or the best model), sharded tensors assembled to their global shape, for
// evaluation or export to a single .pth (ckpt::save_file). A replicated or
// single-process checkpoint loads as it is. Reads beside a running writer (as
// CheckpointReader). nullopt when there is nothing to load. Throws CorruptError for a
// shard that does not match its hashes, FormatError for placements that do not tile.
std::optional<State> load_full_state(const std::filesystem::path& dir, CheckpointKind which = CheckpointKind::epoch);

}  // namespace ckpt
