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
//
// Path components: a str key as it is; list and tuple items by index; other dict keys as
// Python's repr ("True", "None", "1.5", "(1, 2)"; an int key as its number, so an
// optimizer's state reads "optimizer.state.0"). A repeated dict key is one entry with its
// last value, as Python sees it. A payload whose root is not a dict (torch.save(tensor),
// a list) has its root at the empty path "": a root tensor or scalar is one entry with
// path "", a root list's items are "0", "1", ...
struct PayloadEntry {
  std::string path;
  // "Tensor", "Storage" (a bare storage), "int", "float", "str", "bool", "None", "bytes",
  // "torch.dtype", "global", or an empty "dict" / "list" / "tuple".
  std::string type;
  // Scalars as text (Python's repr: 1.0, 'text', True, torch.float16; an int in
  // [2^63, 2^64) as its unsigned value); empty for tensors and storages. A str longer
  // than 64 characters shows its first 64, then "… (N characters)".
  std::string value;
  // Tensors and storages:
  std::string dtype;  // "float32", ...
  std::string layout;  // tensors: "strided", "meta" (no data) or "sparse_coo"
  std::vector<std::int64_t> shape;  // sparse_coo: the dense size; storage: [numel]
  std::vector<std::int64_t> stride;  // strided and meta; empty for sparse_coo
  std::int64_t storage_offset = 0;
  std::string storage;            // the storage record's key ("0", "1", ...); sparse_coo: the values'; meta: empty
  // Bytes: strided: numel * element size of the view (saturating at 2^64 - 1, never
  // wrapping); meta: 0 (nothing stored); sparse_coo: its indices' and values' views;
  // storage: numel * element size.
  std::uint64_t bytes = 0;
  std::int64_t nnz = 0;  // sparse_coo: the number of specified elements
  bool requires_grad = false;
  // --stats: computed over the stored elements (a stride-0 dimension is not walked: it
  // repeats what it holds, so min, max and mean are those of one repetition and the
  // NaN/Inf counts are multiplied). sparse_coo: over its values. Not computed (stats
  // empty, stats_note says why) for a meta tensor and for a view that would read its
  // storage's elements many times over (overlapping strides) beyond the file's budget of
  // element visits (4 x the file's stored elements + 2^20).
  std::optional<TensorStats> stats;
  std::string stats_note;  // "not computed: ..." when stats were asked for but not computed
};

struct PayloadInfo {
  std::string container;  // "zip" or "legacy"
  int version = 0;
  std::uint64_t file_size = 0;
  std::uint64_t storage_bytes = 0;  // all storage records
  std::vector<PayloadEntry> entries;
};

// Throws IoError / FormatError naming the file. Everything built (paths, entries, texts)
// is charged to the payload's memory budget (docs/format.md, "Hostile input"); more than
// 1,000,000 entries is refused. For bytes in memory: format/inspect_source.hpp.
PayloadInfo inspect_payload(const std::filesystem::path& file, bool with_stats = false);

struct PayloadDifference {
  std::string path;
  // "only in A", "only in B", "type", "layout", "shape", "dtype", "value", "tensor", or
  // "not compared" (views that would read their storages' elements many times over
  // beyond the element-visit budget; detail says why).
  std::string kind;
  std::string detail;  // "float32 [3] vs float64 [3]", "0.1 vs 0.2", "max |a-b| 0.5 over 3 of 12 elements"
  double max_abs_diff = 0;
};

// Compares two payloads entry by entry, tensors element by element (views of the same
// shape walked in lockstep; NaN equals NaN, Inf equals Inf; a sparse_coo tensor by its
// indices, then its values; a meta tensor by dtype and shape only).
std::vector<PayloadDifference> diff_payloads(const std::filesystem::path& a, const std::filesystem::path& b);

}  // namespace ckpt
