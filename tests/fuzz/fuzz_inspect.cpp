// libFuzzer target: arbitrary bytes -> the torch-free inspector behind `ckpt show` and
// `ckpt diff` (include/ckpt/inspect.hpp, src/format/inspect.cpp).
//
// Through format/inspect_source.hpp, the inspector over a PayloadSource (the bytes stay
// in memory). For the input (and, for a zip, once more with its CRCs recomputed:
// fuzz_support.hpp):
//   1. read_layout on the bytes, to learn the tensor bytes the layout declares (the sum
//      of its storages' sizes). An input it refuses is refused by the inspector's own
//      read_layout too: nothing more is run.
//   2. inspect_payload(with_stats = true): the structure, and each tensor's statistics
//      (reads its storage, checks its CRC, walks its view);
//   3. diff_payloads of the input against itself (both opened, every tensor compared
//      element by element).
//
// Contract: each call returns, or throws ckpt::FormatError / ckpt::CorruptError. Any other
// exception escapes to libFuzzer (std::terminate, a crash report naming its type); so do
// crashes, ASan/UBSan reports, timeouts. Memory, the peak of live heap bytes during:
//   inspect_payload  input + kFactor x input + kSlack + kHarnessSlack (the payload's
//                    budget: its Values, and the paths, entries and texts the inspector
//                    builds, memory_budget.hpp) + tensor bytes (the storages it reads)
//   diff_payloads    twice that (two payloads opened, each with its own budget)
// CKPT_FUZZ_MEMORY_FACTOR overrides the factor (0 disables the check); CKPT_FUZZ_VERBOSE=1
// prints each call's outcome and peak, and what the budget was charged (heap beyond it is
// what the inspector did not charge).
//
// Build and run: tests/fuzz/README.md.
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "ckpt/errors.hpp"
#include "ckpt/inspect.hpp"
#include "format/checkpoint_format.hpp"
#include "format/inspect_source.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace ckpt::fuzz;

constexpr const char* kTarget = "inspect";

void run_one(std::string_view bytes) {
  const std::optional<std::int64_t> tensors = layout_tensor_bytes(bytes);
  if (!tensors) return;
  const std::int64_t one = structure_bound(bytes.size()) + *tensors;
  measured(kTarget, "inspect_payload", bytes.size(), one, [&] {
    MemorySource source(bytes);
    ckpt::InspectCounters counters;
    const ckpt::PayloadInfo info = ckpt::inspect_payload(source, "<memory>", /*with_stats=*/true, &counters);
    if (g_verbose) {
      std::fprintf(stderr, "  inspect_payload: %zu entries, budget %llu of %llu, %llu element visits\n",
                   info.entries.size(), static_cast<unsigned long long>(counters.budget_used),
                   static_cast<unsigned long long>(counters.budget_limit),
                   static_cast<unsigned long long>(counters.element_visits));
    }
  });
  measured(kTarget, "diff_payloads", bytes.size(), 2 * one, [&] {
    MemorySource a(bytes), b(bytes);
    ckpt::InspectCounters counters;
    const std::vector<ckpt::PayloadDifference> differences = ckpt::diff_payloads(a, "<a>", b, "<b>", &counters);
    if (g_verbose) {
      std::fprintf(stderr, "  diff_payloads: budget %llu of %llu, %llu element visits\n",
                   static_cast<unsigned long long>(counters.budget_used),
                   static_cast<unsigned long long>(counters.budget_limit),
                   static_cast<unsigned long long>(counters.element_visits));
    }
    // Against itself nothing should differ: shown, not a contract (see the README).
    if (g_verbose) {
      for (const auto& d : differences) std::fprintf(stderr, "  diff: %s: %s: %s\n", d.path.c_str(), d.kind.c_str(), d.detail.c_str());
    }
  });
}

}  // namespace

CKPT_FUZZ_ENTRY_POINTS(run_one)
