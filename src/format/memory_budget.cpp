#include "format/memory_budget.hpp"

#include <algorithm>
#include <limits>

#include "format/format_error.hpp"

namespace ckpt::format {

MemoryBudget MemoryBudget::for_structure(std::uint64_t structure_bytes) {
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  if (structure_bytes > (max - kSlack) / kFactor) return MemoryBudget(max);
  return MemoryBudget(kFactor * structure_bytes + kSlack);
}

void MemoryBudget::charge(std::uint64_t bytes, const char* what) {
  if (bytes > limit_ - std::min(used_, limit_) ) {
    fail("{}: its structure needs more than {} bytes of memory (the limit for a payload whose structure is {} "
         "bytes: {} x its size + {} MiB); refused as hostile or damaged",
         what, limit_, limit_ > kSlack ? (limit_ - kSlack) / kFactor : 0, kFactor, kSlack >> 20);
  }
  used_ += bytes;
}

}  // namespace ckpt::format
