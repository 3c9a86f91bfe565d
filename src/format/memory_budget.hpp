// The one memory budget of reading a payload: everything built from the file's structure
// (the pickle's Values and containers, the copies memo references cause, the IValues a
// decoder converts them to, the paths and texts an inspector builds) is charged to it, and
// more than its limit is a FormatError naming what exceeded it. Tensor data is not
// charged: it is the tensors' own bytes, bounded by the file.
//
// The rule (docs/format.md, "Budgets"): a payload whose pickle is P bytes may take
// kFactor * P + kSlack bytes of structure, whoever reads it (load_file, the manager,
// ckpt show / --stats / diff / verify / import). Real checkpoints use a few times P.
#pragma once

#include <cstdint>
#include <string>

namespace ckpt::format {

class MemoryBudget {
 public:
  static constexpr std::uint64_t kFactor = 32;
  static constexpr std::uint64_t kSlack = 16ull << 20;

  // For a payload whose structure (data.pkl, or the legacy stream's pickles) is
  // `structure_bytes` long.
  static MemoryBudget for_structure(std::uint64_t structure_bytes);
  explicit MemoryBudget(std::uint64_t limit) : limit_(limit) {}

  // Throws FormatError ("... needs more than N bytes of memory for its structure ...")
  // when the total charged exceeds the limit; `what` names the consumer ("data.pkl").
  void charge(std::uint64_t bytes, const char* what);
  std::uint64_t used() const noexcept { return used_; }
  std::uint64_t limit() const noexcept { return limit_; }

 private:
  std::uint64_t limit_;
  std::uint64_t used_ = 0;
};

}  // namespace ckpt::format
