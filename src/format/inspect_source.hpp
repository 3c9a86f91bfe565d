// The inspector over any PayloadSource (bytes in memory for a fuzz target or a test),
// and what an inspection cost. ckpt/inspect.hpp's path-based functions call these.
// Internal: not installed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ckpt/inspect.hpp"
#include "ckpt/payload_io.hpp"
#include "format/value.hpp"

namespace ckpt {

// What one inspect_payload / diff_payloads call cost (diff: both payloads summed).
struct InspectCounters {
  // Element positions decoded from storage bytes for --stats or a diff (a diff's step
  // reads one element of each side and counts once). A stride-0 dimension is not walked.
  std::uint64_t element_visits = 0;
  // The payloads' memory budgets (format/memory_budget.hpp) at the end: what the reader
  // and the inspector charged, and the limits.
  std::uint64_t budget_used = 0;
  std::uint64_t budget_limit = 0;
};

// inspect_payload over a source; `name` names it in error messages (a path, "<memory>").
// Throws FormatError (or what the source throws).
PayloadInfo inspect_payload(PayloadSource& source, const std::string& name, bool with_stats = false,
                            InspectCounters* counters = nullptr);

std::vector<PayloadDifference> diff_payloads(PayloadSource& a, const std::string& a_name, PayloadSource& b,
                                             const std::string& b_name, InspectCounters* counters = nullptr);

// The entry one value shows as (no stats, nothing charged): for tests of values a reader
// would refuse (a view of 2^64 elements).
PayloadEntry describe_value(const std::string& path, const format::Value& value);

}  // namespace ckpt
