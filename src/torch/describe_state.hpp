// What the index records of a state besides its bytes (SaveRequest): its one home, for
// CheckpointManager and the distributed manager's rank 0.
#pragma once

#include <cstdint>
#include <optional>

#include "ckpt/state.hpp"
#include "ckpt/store.hpp"

namespace ckpt::torch_layer {

// Every int or float top-level entry as a named metric (bools are not numbers here), the
// epoch it is of (its int `epoch` entry), and, when the caller gives no metric, its
// `val_acc` (the guide's name).
SaveRequest describe(const State& state, CheckpointKind kind, std::optional<std::int64_t> epoch,
                     std::optional<double> metric, std::uint64_t size_hint);

}  // namespace ckpt::torch_layer
