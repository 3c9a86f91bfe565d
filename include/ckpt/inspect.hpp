// Looking inside a payload without libtorch: its structure, each tensor's dtype, shape
// and size, optional statistics, and the differences between two payloads.
//
// The structure comes from the pickle alone (tensor data is not read) unless statistics
// or a diff are asked for; then each needed storage is read once and its CRC-32 checked.
// Torch-free: used by the `ckpt` tool, which starts in milliseconds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ckpt {

struct TensorStats {
  double min = 0;
  double max = 0;
  double mean = 0;
  std::uint64_t nan_count = 0;
  std::uint64_t inf_count = 0;
};

// One leaf (or empty container) of the payload, flattened to a dotted path:
// "model.0.weight", "optimizer.state.0.exp_avg", "optimizer.param_groups.0.lr".
struct PayloadEntry {
  std::string path;
  std::string type;   // "Tensor", "int", "float", "str", "bool", "None", "bytes", or an empty "dict"/"list"/"tuple"
  std::string value;  // scalars as text (repr-like), empty for tensors
  // Tensors only:
  std::string dtype;  // "float32", ...
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> stride;
  std::int64_t storage_offset = 0;
  std::string storage;            // the storage record's key ("0", "1", ...)
  std::uint64_t bytes = 0;        // numel * element size of the view
  bool requires_grad = false;
  std::optional<TensorStats> stats;
};

struct PayloadInfo {
  std::string container;  // "zip" or "legacy"
  int version = 0;
  std::uint64_t file_size = 0;
  std::uint64_t storage_bytes = 0;  // all storage records
  std::vector<PayloadEntry> entries;
};

// Throws IoError / FormatError naming the file.
PayloadInfo inspect_payload(const std::filesystem::path& file, bool with_stats = false);

struct PayloadDifference {
  std::string path;
  std::string kind;    // "only in A", "only in B", "type", "shape", "dtype", "value", "tensor"
  std::string detail;  // "float32 [3] vs float64 [3]", "0.1 vs 0.2", "max |a-b| 0.5 over 3 of 12 elements"
  double max_abs_diff = 0;
};

// Compares two payloads entry by entry, tensors element by element.
std::vector<PayloadDifference> diff_payloads(const std::filesystem::path& a, const std::filesystem::path& b);

}  // namespace ckpt
