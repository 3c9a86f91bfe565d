// The file names in a checkpoint directory: their one home. Torch-free, so the store,
// the `ckpt` tool and CheckpointManager (which re-exports the guide's three under its
// Python names, BEST_MODEL_NAME, ...) all take them from here. Users port Python code that
// expects exactly the guide's names, so they never change.
//
// The directory also holds a quarantine/ folder for damaged files, and
// `<name>.<pid>-<n>.tmp` files while a save is in flight (docs/schema.md describes each).
#pragma once

namespace ckpt::layout {

inline constexpr char kBestModel[] = "best_model.pth";
// checkpoint_epoch_<N>.pth: N in canonical decimal (no sign, no leading zeros).
inline constexpr char kEpochPrefix[] = "checkpoint_epoch_";
// checkpoint_step_<N>.pth: a checkpoint saved with a global step N (canonical decimal
// too), whatever its epoch (docs/schema.md, "Steps").
inline constexpr char kStepPrefix[] = "checkpoint_step_";
inline constexpr char kInterrupt[] = "interrupt_checkpoint.pth";
inline constexpr char kPayloadSuffix[] = ".pth";

// ckpt's own: the SQLite index (beside it, SQLite's index.sqlite-wal and -shm) and the
// writer lock.
inline constexpr char kIndex[] = "index.sqlite";
inline constexpr char kLock[] = "index.lock";

}  // namespace ckpt::layout
