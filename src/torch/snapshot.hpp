// Snapshots of a State for asynchronous saves (CheckpointManager::Snapshot::copy): a copy
// of every tensor's bytes in memory the manager owns, so that the caller may train on while
// the store's worker writes the copy.
//
// One buffer per storage of the original, not per tensor: views that shared a storage
// (tied weights, a parameter and its slice) still share one in the copy, with the same
// offset, sizes, strides, dtype and requires_grad, so the payload is byte for byte the one
// the original would give. Sparse COO tensors are cloned; tensors on another device than
// the CPU are copied to the CPU (each on its own, as the encoder copies them: the
// distributed manager encodes on its own thread, after the call returned); meta and
// undefined tensors have no bytes to copy. Every other value
// (ints, strings, nested dicts, lists, tuples) is rebuilt around the copied tensors.
//
// Buffers are reused: a buffer is free again once no snapshot uses it (the save that
// wrote it has finished and released it), and the next copy of a storage of the same size
// takes it instead of fresh pages, which the first write would fault in. Buffers a copy
// did not reuse and no snapshot uses are released after it, so the pool holds at most the
// snapshots in flight plus the newest one.
//
// Not thread-safe: the manager's thread copies; the worker only drops its references.
#pragma once

#include <c10/core/Storage.h>

#include <unordered_map>
#include <vector>

#include "ckpt/state.hpp"

namespace ckpt::torch_layer {

class StagingPool {
 public:
  State copy(const State& state);
  // Bytes the pool holds (free and in use), for the benchmark and the tests.
  std::size_t held_bytes() const;

 private:
  using Copies = std::unordered_map<const c10::StorageImpl*, c10::Storage>;
  c10::IValue copy_value(const c10::IValue& value, Copies& copies);
  at::Tensor copy_tensor(const at::Tensor& tensor, Copies& copies);
  c10::Storage take_buffer(std::size_t nbytes);

  std::vector<c10::Storage> buffers_;
  std::vector<bool> taken_;  // by the copy being made, parallel to buffers_
};

}  // namespace ckpt::torch_layer
