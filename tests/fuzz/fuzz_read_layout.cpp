// libFuzzer target: arbitrary bytes -> ckpt::format::read_layout.
//
// Contract under test: for any input, read_layout either returns a layout that satisfies
// layout_check.hpp's invariants, or throws ckpt::FormatError. Anything else is a bug and
// aborts the process so libFuzzer records the input: another exception, a crash, an
// ASan/UBSan/LSan report, a timeout (-timeout), or memory out of proportion to the input
// (checked here; and -malloc_limit_mb / -rss_limit_mb).
//
// The memory check is the payload's memory budget (src/format/memory_budget.hpp): the
// peak of live heap bytes during the call must stay under
//     input size (read_layout holds a copy of the structure: data.pkl or the legacy
//     stream's pickles) + MemoryBudget::kFactor (32) x input size + MemoryBudget::kSlack
//     (16 MiB) + kHarnessSlack (64 KiB)
// (fuzz_support.hpp). The pickle's size bounds the budget and is at most the input's.
// A one-byte opcode (']', '}', ')') makes a Value (48 bytes, its control block shared
// with it) and the reader's stack slot; the reader charges each to the budget, so heap
// beyond the bound means the budget under-counts what the reader builds.
// CKPT_FUZZ_MEMORY_FACTOR overrides the factor (0 disables the check).
//
// read_layout verifies data.pkl's CRC-32, so a mutation of the pickle inside a zip is
// almost always refused before the unpickler runs. To reach the unpickler through the
// zip path too, each zip-looking input is run a second time with every central
// directory CRC recomputed from the record's bytes (when that changes anything). The
// legacy layout has no CRC and needs no help.
//
// Build and run: tests/fuzz/README.md.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>

#include "ckpt/errors.hpp"
#include "format/checkpoint_format.hpp"
#include "fuzz_support.hpp"
#include "layout_check.hpp"

namespace {

using namespace ckpt::fuzz;

constexpr const char* kTarget = "read_layout";

void run_one(std::string_view bytes) {
  MemorySource source(bytes);
  start_tracking();
  try {
    ckpt::format::CheckpointLayout layout = ckpt::format::read_layout(source);
    stop_tracking();
    const std::string problem = layout_violation(layout, bytes.size());
    if (!problem.empty()) bug(kTarget, "invariant", problem);
    if (g_verbose) std::fprintf(stderr, "  ok: %zu storages\n", layout.storages.size());
  } catch (const ckpt::FormatError& error) {
    stop_tracking();  // the expected refusal
    if (g_verbose) std::fprintf(stderr, "  FormatError: %s\n", error.what());
  } catch (const std::exception& error) {
    stop_tracking();
    bug(kTarget, "unexpected exception", error.what());
  } catch (...) {
    stop_tracking();
    bug(kTarget, "unexpected exception", "not a std::exception");
  }
  check_peak(kTarget, "read_layout", g_peak.load(), structure_bound(bytes.size()), bytes.size());
}

}  // namespace

CKPT_FUZZ_ENTRY_POINTS(run_one)
