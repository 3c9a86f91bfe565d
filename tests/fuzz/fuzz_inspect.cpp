// libFuzzer target: arbitrary bytes -> the torch-free inspector behind `ckpt show` and
// `ckpt diff` (include/ckpt/inspect.hpp, src/format/inspect.cpp).
//
// Through format/inspect_source.hpp, the inspector over a PayloadSource, when the tree
// has it (the bytes stay in memory); otherwise through the path-based functions, each
// input written to /dev/shm/ckpt-fuzz-inspect-<pid>.pth (removed at exit). For the input
// (and, for a zip, once more with its CRCs recomputed: fuzz_support.hpp):
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
// prints each call's outcome and peak (and, with inspect_source.hpp, what the budget was
// charged: heap beyond it is what the inspector did not charge).
//
// Build and run: tests/fuzz/README.md.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "ckpt/errors.hpp"
#include "ckpt/inspect.hpp"
#include "format/checkpoint_format.hpp"
#include "fuzz_support.hpp"

#if __has_include("format/inspect_source.hpp")
#include "format/inspect_source.hpp"
#define CKPT_FUZZ_INSPECT_SOURCE 1
#else
#define CKPT_FUZZ_INSPECT_SOURCE 0
#endif

namespace {

using namespace ckpt::fuzz;

constexpr const char* kTarget = "inspect";

std::filesystem::path g_file;

template <typename Call>
void measured(const char* step, std::size_t input_size, std::int64_t limit, Call&& call) {
  start_tracking();
  try {
    call();
    stop_tracking();
    if (g_verbose) std::fprintf(stderr, "  %s: ok\n", step);
  } catch (const ckpt::FormatError& error) {
    stop_tracking();
    if (g_verbose) std::fprintf(stderr, "  %s: FormatError: %s\n", step, error.what());
  } catch (const ckpt::CorruptError& error) {
    stop_tracking();
    if (g_verbose) std::fprintf(stderr, "  %s: CorruptError: %s\n", step, error.what());
  }
  check_peak(kTarget, step, g_peak.load(), limit, input_size);
}

void write_file(std::string_view bytes) {
  std::ofstream out(g_file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) bug(kTarget, "harness", "cannot write " + g_file.string());
}

void run_one(std::string_view bytes) {
  std::int64_t tensors = 0;
  try {
    MemorySource source(bytes);
    const ckpt::format::CheckpointLayout layout = ckpt::format::read_layout(source);
    for (const auto& [key, location] : layout.locations) tensors += static_cast<std::int64_t>(location.nbytes);
  } catch (const ckpt::FormatError& error) {
    if (g_verbose) std::fprintf(stderr, "  read_layout: FormatError: %s\n", error.what());
    return;
  }
  if (!CKPT_FUZZ_INSPECT_SOURCE) write_file(bytes);
  const std::int64_t one = structure_bound(bytes.size()) + tensors;
  measured("inspect_payload", bytes.size(), one, [&] {
#if CKPT_FUZZ_INSPECT_SOURCE
    MemorySource source(bytes);
    ckpt::InspectCounters counters;
    const ckpt::PayloadInfo info = ckpt::inspect_payload(source, "<memory>", /*with_stats=*/true, &counters);
    if (g_verbose) {
      std::fprintf(stderr, "  inspect_payload: %zu entries, budget %llu of %llu, %llu element visits\n",
                   info.entries.size(), static_cast<unsigned long long>(counters.budget_used),
                   static_cast<unsigned long long>(counters.budget_limit),
                   static_cast<unsigned long long>(counters.element_visits));
    }
#else
    const ckpt::PayloadInfo info = ckpt::inspect_payload(g_file, /*with_stats=*/true);
    if (g_verbose) std::fprintf(stderr, "  inspect_payload: %zu entries\n", info.entries.size());
#endif
  });
  measured("diff_payloads", bytes.size(), 2 * one, [&] {
#if CKPT_FUZZ_INSPECT_SOURCE
    MemorySource a(bytes), b(bytes);
    ckpt::InspectCounters counters;
    const std::vector<ckpt::PayloadDifference> differences = ckpt::diff_payloads(a, "<a>", b, "<b>", &counters);
    if (g_verbose) {
      std::fprintf(stderr, "  diff_payloads: budget %llu of %llu, %llu element visits\n",
                   static_cast<unsigned long long>(counters.budget_used),
                   static_cast<unsigned long long>(counters.budget_limit),
                   static_cast<unsigned long long>(counters.element_visits));
    }
#else
    const std::vector<ckpt::PayloadDifference> differences = ckpt::diff_payloads(g_file, g_file);
#endif
    // Against itself nothing should differ: shown, not a contract (see the README).
    if (g_verbose) {
      for (const auto& d : differences) std::fprintf(stderr, "  diff: %s: %s: %s\n", d.path.c_str(), d.kind.c_str(), d.detail.c_str());
    }
  });
}

void remove_file() {
  std::error_code ignored;
  std::filesystem::remove(g_file, ignored);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  read_environment();
  if (!CKPT_FUZZ_INSPECT_SOURCE) {
    g_file = "/dev/shm/ckpt-fuzz-inspect-" + std::to_string(::getpid()) + ".pth";
    std::atexit(remove_file);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  run_one(bytes);
  if (looks_like_zip(data, size)) {
    std::string fixed(bytes);
    if (fix_crcs(fixed)) run_one(fixed);
  }
  return 0;
}
