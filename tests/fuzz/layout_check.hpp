// What must hold of every layout read_layout returns, whatever the input: shared by the
// fuzz target (tests/fuzz/fuzz_read_layout.cpp) and the replay test
// (tests/core/format_hostile_test.cpp). Header-only and torch-free.
//
//   - every storage the pickle uses has a location, nbytes == numel * element_size,
//     and offset + nbytes <= the payload's size (no overflow on the way);
//   - no location without a storage;
//   - the graph has no null pointer, no cycle, and nests at most kMaxNesting levels;
//   - every tensor uses one of the layout's storages and its view (offset, sizes,
//     strides) lies inside that storage.
// The walk visits each shared node once (a DAG built with memo references can describe
// an exponentially large tree in a few bytes) and uses an explicit stack (no recursion).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "format/checkpoint_format.hpp"
#include "format/value.hpp"

namespace ckpt::fuzz {

inline bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_mul_overflow(a, b, &out);
}
inline bool add_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_add_overflow(a, b, &out);
}

// Returns the first violated invariant, or an empty string when all hold.
inline std::string layout_violation(const format::CheckpointLayout& layout, std::uint64_t payload_size) {
  using format::ValueKind;
  std::unordered_set<const format::StorageInfo*> known;
  for (const auto& storage : layout.storages) {
    if (!storage) return "null storage in layout.storages";
    known.insert(storage.get());
    auto found = layout.locations.find(storage->key);
    if (found == layout.locations.end()) return fmt::format("storage '{}' has no location", storage->key);
    std::uint64_t nbytes = 0;
    if (mul_overflows(storage->numel, format::element_size(storage->dtype), nbytes)) {
      return fmt::format("storage '{}': numel {} * element size overflows", storage->key, storage->numel);
    }
    const auto& location = found->second;
    if (location.nbytes != nbytes) {
      return fmt::format("storage '{}': location has {} bytes, numel*element_size is {}", storage->key,
                         location.nbytes, nbytes);
    }
    std::uint64_t end = 0;
    if (add_overflows(location.offset, location.nbytes, end) || end > payload_size) {
      return fmt::format("storage '{}': bytes [{}, +{}) lie beyond the payload ({} bytes)", storage->key,
                         location.offset, location.nbytes, payload_size);
    }
  }
  if (layout.locations.size() != layout.storages.size()) {
    return fmt::format("{} locations for {} storages", layout.locations.size(), layout.storages.size());
  }
  if (!layout.root) return "null root";

  // Iterative post-order DFS: height of each node (leaf 0, container 1 + max child),
  // grey/black colouring for cycles, each node expanded once.
  struct Frame {
    const format::Value* value;
    std::size_t next = 0;  // index over items, then entries (key, value) pairs
    int height = 0;
  };
  std::unordered_map<const format::Value*, int> done;  // black: height
  std::unordered_set<const format::Value*> grey;
  std::vector<Frame> stack;
  auto children = [](const format::Value& v) { return v.items().size() + 2 * v.entries().size(); };
  auto child = [](const format::Value& v, std::size_t i) -> const format::ValuePtr& {
    if (i < v.items().size()) return v.items()[i];
    const auto& entry = v.entries()[(i - v.items().size()) / 2];
    return (i - v.items().size()) % 2 == 0 ? entry.first : entry.second;
  };
  // A tensor of any layout: sizes sane, element count within int64, a strided view inside
  // its storage (an empty one starting no later than the storage's end).
  std::function<std::string(const format::TensorInfo&)> check_tensor = [&](const format::TensorInfo& t) -> std::string {
    if (t.sizes.size() != t.strides.size() && t.layout != format::TensorLayout::sparse_coo) {
      return "tensor sizes and strides differ in length";
    }
    bool empty = false;
    std::uint64_t elements = 1;
    for (std::size_t d = 0; d < t.sizes.size(); ++d) {
      if (t.sizes[d] < 0 || (d < t.strides.size() && t.strides[d] < 0)) return "tensor with a negative size or stride";
      if (t.sizes[d] == 0) empty = true;
    }
    for (auto size : t.sizes) {
      if (!empty && mul_overflows(elements, static_cast<std::uint64_t>(size), elements)) return "tensor element count overflows";
    }
    if (elements > static_cast<std::uint64_t>(INT64_MAX)) return "tensor element count beyond int64";
    switch (t.layout) {
      case format::TensorLayout::meta: return t.storage ? "meta tensor with a storage" : "";
      case format::TensorLayout::sparse_coo: {
        if (!t.indices || !t.values) return "sparse tensor without indices or values";
        if (auto problem = check_tensor(*t.indices); !problem.empty()) return "sparse indices: " + problem;
        return check_tensor(*t.values);
      }
      case format::TensorLayout::strided: break;
    }
    if (!t.storage) return "tensor without storage";
    if (!known.count(t.storage.get())) return fmt::format("tensor uses storage '{}' not in the layout", t.storage->key);
    if (t.storage_offset < 0) return "tensor with a negative storage offset";
    if (empty) {
      if (static_cast<std::uint64_t>(t.storage_offset) > t.storage->numel) return "empty tensor view starts beyond its storage";
      return {};
    }
    std::uint64_t last = static_cast<std::uint64_t>(t.storage_offset);
    for (std::size_t d = 0; d < t.sizes.size(); ++d) {
      std::uint64_t step = 0;
      if (mul_overflows(static_cast<std::uint64_t>(t.sizes[d] - 1), static_cast<std::uint64_t>(t.strides[d]), step) ||
          add_overflows(last, step, last)) {
        return "tensor extent overflows";
      }
    }
    if (last >= t.storage->numel) {
      return fmt::format("tensor view reaches element {} of storage '{}' ({} elements)", last, t.storage->key,
                         t.storage->numel);
    }
    return {};
  };
  auto check_node = [&](const format::Value& v) -> std::string {
    switch (v.kind()) {
      case ValueKind::tensor:
        if (!v.tensor()) return "tensor value without TensorInfo";
        return check_tensor(*v.tensor());
      case ValueKind::storage:
        if (!v.storage()) return "storage value without StorageInfo";
        if (!known.count(v.storage().get())) return "bare storage not in the layout";
        return {};
      default: return {};
    }
  };

  stack.push_back(Frame{layout.root.get()});
  grey.insert(layout.root.get());
  if (auto problem = check_node(*layout.root); !problem.empty()) return problem;
  while (!stack.empty()) {
    Frame& frame = stack.back();
    if (frame.next == children(*frame.value)) {
      const int height = frame.height;
      grey.erase(frame.value);
      done.emplace(frame.value, height);
      stack.pop_back();
      if (height > format::kMaxNesting) return fmt::format("the graph nests {} levels (> {})", height, format::kMaxNesting);
      if (!stack.empty()) stack.back().height = std::max(stack.back().height, height + 1);
      continue;
    }
    const format::ValuePtr& next = child(*frame.value, frame.next++);
    if (!next) return "null value in the graph";
    if (auto found = done.find(next.get()); found != done.end()) {
      frame.height = std::max(frame.height, found->second + 1);
      continue;
    }
    if (grey.count(next.get())) return fmt::format("the graph contains a cycle (a {} contains itself)", format::kind_name(next->kind()));
    if (auto problem = check_node(*next); !problem.empty()) return problem;
    grey.insert(next.get());
    stack.push_back(Frame{next.get()});
  }
  return {};
}

}  // namespace ckpt::fuzz
