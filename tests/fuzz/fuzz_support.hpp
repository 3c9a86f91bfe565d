// What the fuzz targets share: an in-memory PayloadSource, the peak-heap meter (the
// sanitizer allocator's malloc/free hooks), the memory bound every target checks, the
// zip CRC fixer, and the report that aborts on a contract violation.
//
// Include it from exactly one translation unit per executable: it defines the two
// extern "C" sanitizer hooks (when CKPT_FUZZ_TRACK_MEMORY is 1).
//
// The memory bound (docs/format.md "Budgets", src/format/memory_budget.hpp): reading a
// payload whose pickle is P bytes may build kFactor * P + kSlack bytes of structure
// (Values, IValues, inspector paths), and P <= the input's size. So the peak of live heap
// bytes while a target runs must stay under
//     input (a copy of the structure is held) + kFactor * input + kSlack
//     + what the target adds (tensor bytes, libtorch's own allocations) + kHarnessSlack.
#pragma once

#ifndef CKPT_FUZZ_TRACK_MEMORY
#define CKPT_FUZZ_TRACK_MEMORY 0  // no sanitizer allocator: no hooks, no memory check
#endif
#if CKPT_FUZZ_TRACK_MEMORY
#include <cstddef>
// From <sanitizer/allocator_interface.h>, which GCC does not install; both the clang and
// the GCC sanitizer runtimes provide it and call the two hooks defined below.
extern "C" std::size_t __sanitizer_get_allocated_size(const volatile void* p);
extern "C" void __sanitizer_print_stack_trace();
#endif

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "ckpt/errors.hpp"
#include "ckpt/store.hpp"
#include "format/checkpoint_format.hpp"
#include "format/memory_budget.hpp"
#include "format/zip_reader.hpp"
#include "support/memory_source.hpp"

namespace ckpt::fuzz {

using test::MemorySource;  // tests/support/memory_source.hpp

// Peak live heap between start() and stop(), through the sanitizer allocator's hooks.
// Allocations made before start() and freed inside count negatively (live may drop
// below 0); the peak is measured from 0 at start().
inline std::atomic<bool> g_tracking{false};
inline std::atomic<std::int64_t> g_live{0};
inline std::atomic<std::int64_t> g_peak{0};
inline std::atomic<std::int64_t> g_largest{0};  // the largest single allocation (for triage)

inline void start_tracking() {
  g_live = 0;
  g_peak = 0;
  g_largest = 0;
  g_tracking = true;
}
inline std::int64_t stop_tracking() {
  g_tracking = false;
  return g_peak.load();
}

// Slack for the harness's own allocations inside the measured region (a std::string
// or two, an exception object, a FormatError's message).
inline constexpr std::int64_t kHarnessSlack = 64 << 10;

// CKPT_FUZZ_MEMORY_FACTOR overrides format::MemoryBudget::kFactor in the bound (0
// disables the memory check); CKPT_FUZZ_VERBOSE=1 prints each input's outcome and peak.
inline std::int64_t g_memory_factor = static_cast<std::int64_t>(format::MemoryBudget::kFactor);
inline bool g_verbose = false;
// CKPT_FUZZ_TRACE_ALLOC=N: print the stack of every measured allocation of N bytes or
// more (to find what holds the memory of an input over the bound).
inline std::int64_t g_trace_alloc = 0;
// CKPT_FUZZ_MEMORY_TOLERANCE=P: the structure's share of the bound is P percent of the
// budget's (default 100). For a run that must get past a known under-count (the README's
// "Runs" say when one was used); anything beyond P percent is still caught.
inline std::int64_t g_tolerance_percent = 100;

inline void read_environment() {
  if (const char* factor = std::getenv("CKPT_FUZZ_MEMORY_FACTOR")) g_memory_factor = std::atoll(factor);
  if (const char* trace = std::getenv("CKPT_FUZZ_TRACE_ALLOC")) g_trace_alloc = std::atoll(trace);
  if (const char* tolerance = std::getenv("CKPT_FUZZ_MEMORY_TOLERANCE")) g_tolerance_percent = std::atoll(tolerance);
  g_verbose = std::getenv("CKPT_FUZZ_VERBOSE") != nullptr;
}

// The structure's share of the bound for an input of `size` bytes: the held copy, the
// budget, the harness.
inline std::int64_t structure_bound(std::size_t size) {
  const auto n = static_cast<std::int64_t>(size);
  const std::int64_t budget = g_memory_factor * n + static_cast<std::int64_t>(format::MemoryBudget::kSlack);
  return n + (g_tolerance_percent == 100 ? budget : budget / 100 * g_tolerance_percent) + kHarnessSlack;
}

[[noreturn]] inline void bug(const char* target, const char* what, const std::string& detail) {
  std::fprintf(stderr, "\n=== %s contract violated: %s: %s\n", target, what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

// Checks a measured peak against `limit` (when the check is on: sanitizer allocator and
// a non-zero factor). `step` names the call measured.
inline void check_peak(const char* target, const char* step, std::int64_t peak, std::int64_t limit,
                       std::size_t input_size) {
  if (!CKPT_FUZZ_TRACK_MEMORY) return;
  if (g_verbose) {
    std::fprintf(stderr, "  %s: peak heap %lld bytes for %zu input bytes (limit %lld; largest block %lld)\n", step,
                 static_cast<long long>(peak), input_size, static_cast<long long>(limit),
                 static_cast<long long>(g_largest.load()));
  }
  if (g_memory_factor > 0 && peak > limit) {
    bug(target, "memory",
        std::string(step) + ": " + std::to_string(peak) + " bytes live at peak for an input of " +
            std::to_string(input_size) + " bytes (limit " + std::to_string(limit) + ")");
  }
}

inline std::uint64_t le(const unsigned char* p, int width) {
  std::uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return v;
}

inline bool looks_like_zip(const std::uint8_t* data, std::size_t size) {
  return size >= 4 && le(data, 4) == 0x04034b50;
}

// Recomputes the CRC-32 of every central directory entry (0x02014b50 anywhere in the
// input) whose local header and 32-bit size point at bytes inside the input, the first
// 64 of them (a bound on the harness's own work). Returns whether anything changed.
// read_layout checks data.pkl's CRC (and the decoder and inspector each storage's), so
// without this a mutated zip would almost never reach the unpickler.
inline bool fix_crcs(std::string& bytes) {
  bool changed = false;
  auto* b = reinterpret_cast<unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  int budget = 64;
  for (std::size_t i = 0; i + 46 <= n && budget > 0; ++i) {
    if (le(b + i, 4) != 0x02014b50) continue;
    --budget;
    const std::uint64_t size = le(b + i + 24, 4);
    const std::uint64_t header = le(b + i + 42, 4);
    if (header > n || n - header < 30 || le(b + header, 4) != 0x04034b50) continue;
    const std::uint64_t data = header + 30 + le(b + header + 26, 2) + le(b + header + 28, 2);
    if (data > n || size > n - data) continue;
    const std::uint32_t crc = format::crc32(0, b + data, size);
    if (le(b + i + 16, 4) != crc) {
      for (int k = 0; k < 4; ++k) b[i + 16 + k] = static_cast<unsigned char>(crc >> (8 * k));
      changed = true;
    }
  }
  return changed;
}

// The bytes a layout's storages declare: what a decoder or inspector reads into memory
// beyond the budget.
inline std::int64_t tensor_bytes(const format::CheckpointLayout& layout) {
  std::int64_t total = 0;
  for (const auto& [key, location] : layout.locations) total += static_cast<std::int64_t>(location.nbytes);
  return total;
}

// The tensor bytes of a payload whose layout reads, or nothing (the layout refused it,
// printed with CKPT_FUZZ_VERBOSE): targets that decode or inspect bound their memory by it.
inline std::optional<std::int64_t> layout_tensor_bytes(std::string_view bytes) {
  try {
    MemorySource source(bytes);
    return tensor_bytes(format::read_layout(source));
  } catch (const FormatError& error) {
    if (g_verbose) std::fprintf(stderr, "  read_layout: FormatError: %s\n", error.what());
    return std::nullopt;
  }
}

// Runs `call` under the heap meter: a FormatError or CorruptError is the expected refusal
// (printed with CKPT_FUZZ_VERBOSE), anything else escapes to libFuzzer. Then the peak must
// stay under `limit`.
template <typename Call>
void measured(const char* target, const char* step, std::size_t input_size, std::int64_t limit, Call&& call) {
  start_tracking();
  try {
    call();
    stop_tracking();
    if (g_verbose) std::fprintf(stderr, "  %s: ok\n", step);
  } catch (const FormatError& error) {
    stop_tracking();
    if (g_verbose) std::fprintf(stderr, "  %s: FormatError: %s\n", step, error.what());
  } catch (const CorruptError& error) {
    stop_tracking();
    if (g_verbose) std::fprintf(stderr, "  %s: CorruptError: %s\n", step, error.what());
  }
  check_peak(target, step, g_peak.load(), limit, input_size);
}

// Runs `run` on an input, and on a zip once more with its CRCs recomputed (fix_crcs).
template <typename Run>
void run_input(const std::uint8_t* data, std::size_t size, Run&& run) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  run(bytes);
  if (looks_like_zip(data, size)) {
    std::string fixed(bytes);
    if (fix_crcs(fixed)) run(std::string_view(fixed));
  }
}

}  // namespace ckpt::fuzz

// libFuzzer's two entry points for a target that needs no set-up beyond the environment:
// each input (and its CRC-fixed twin) goes to `run_one(std::string_view)`.
#define CKPT_FUZZ_ENTRY_POINTS(run_one)                                             \
  extern "C" int LLVMFuzzerInitialize(int*, char***) {                              \
    ckpt::fuzz::read_environment();                                                 \
    return 0;                                                                       \
  }                                                                                 \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { \
    ckpt::fuzz::run_input(data, size, [](std::string_view bytes) { run_one(bytes); }); \
    return 0;                                                                       \
  }

#if CKPT_FUZZ_TRACK_MEMORY
extern "C" void __sanitizer_malloc_hook(const volatile void*, size_t size) {
  using namespace ckpt::fuzz;
  if (!g_tracking.load(std::memory_order_relaxed)) return;
  const std::int64_t live =
      g_live.fetch_add(static_cast<std::int64_t>(size), std::memory_order_relaxed) + static_cast<std::int64_t>(size);
  if (g_trace_alloc > 0 && static_cast<std::int64_t>(size) >= g_trace_alloc) {
    g_tracking = false;  // the report allocates
    std::fprintf(stderr, "  allocation of %zu bytes (%lld live before it):\n", size,
                 static_cast<long long>(live - static_cast<std::int64_t>(size)));
    __sanitizer_print_stack_trace();
    g_tracking = true;
  }
  std::int64_t largest = g_largest.load(std::memory_order_relaxed);
  while (static_cast<std::int64_t>(size) > largest &&
         !g_largest.compare_exchange_weak(largest, static_cast<std::int64_t>(size), std::memory_order_relaxed)) {
  }
  std::int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

extern "C" void __sanitizer_free_hook(const volatile void* ptr) {
  using namespace ckpt::fuzz;
  if (!g_tracking.load(std::memory_order_relaxed) || !ptr) return;
  g_live.fetch_sub(static_cast<std::int64_t>(__sanitizer_get_allocated_size(ptr)), std::memory_order_relaxed);
}
#endif
