// The guide's file names in a checkpoint directory: their one home. Torch-free, so the
// store, the `ckpt` tool and CheckpointManager (which re-exports them under the guide's
// Python names, BEST_MODEL_NAME, ...) all take them from here. Users port Python code that
// expects exactly these names, so they never change.
//
// The directory also holds index.sqlite (with its -wal and -shm files), index.lock, a
// quarantine/ folder for damaged files, and `<name>.<pid>-<n>.tmp` files while a save is in
// flight (docs/schema.md describes each).
#pragma once

namespace ckpt::layout {

inline constexpr char kBestModel[] = "best_model.pth";
// checkpoint_epoch_<N>.pth: N in canonical decimal (no sign, no leading zeros).
inline constexpr char kEpochPrefix[] = "checkpoint_epoch_";
inline constexpr char kInterrupt[] = "interrupt_checkpoint.pth";
inline constexpr char kPayloadSuffix[] = ".pth";

}  // namespace ckpt::layout
