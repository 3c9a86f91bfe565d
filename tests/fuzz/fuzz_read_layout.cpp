// libFuzzer target: arbitrary bytes -> ckpt::format::read_layout.
//
// Contract under test: for any input, read_layout either returns a layout that satisfies
// layout_check.hpp's invariants, or throws ckpt::FormatError. Anything else is a bug and
// aborts the process so libFuzzer records the input: another exception, a crash, an
// ASan/UBSan/LSan report, a timeout (-timeout), or memory out of proportion to the input
// (checked here: the peak of live heap bytes allocated during the call must stay under
// kMemoryFactor * input size + kMemorySlack; and -malloc_limit_mb / -rss_limit_mb).
//
// read_layout verifies data.pkl's CRC-32, so a mutation of the pickle inside a zip is
// almost always refused before the unpickler runs. To reach the unpickler through the
// zip path too, each zip-looking input is run a second time with every central
// directory CRC recomputed from the record's bytes (when that changes anything). The
// legacy layout has no CRC and needs no help.
//
// Build and run: tests/fuzz/README.md.
#ifndef CKPT_FUZZ_TRACK_MEMORY
#define CKPT_FUZZ_TRACK_MEMORY 0  // no sanitizer allocator: no hooks, no memory check
#endif
#if CKPT_FUZZ_TRACK_MEMORY
#include <cstddef>
// From <sanitizer/allocator_interface.h>, which GCC does not install; both the clang and
// the GCC sanitizer runtimes provide it and call the two hooks defined below.
extern "C" std::size_t __sanitizer_get_allocated_size(const volatile void* p);
#endif

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>

#include "ckpt/errors.hpp"
#include "format/checkpoint_format.hpp"
#include "format/zip_reader.hpp"
#include "layout_check.hpp"

namespace {

class MemorySource final : public ckpt::PayloadSource {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  std::uint64_t size() const override { return bytes_.size(); }
  void read_at(std::uint64_t offset, void* buffer, std::size_t n) override {
    if (offset > bytes_.size() || n > bytes_.size() - offset) {
      throw ckpt::FormatError(ckpt::ErrorCode::format, "read beyond the end of the payload");
    }
    std::memcpy(buffer, bytes_.data() + offset, n);
  }

 private:
  std::string_view bytes_;
};

// Peak live heap during read_layout, through the sanitizer allocator's hooks.
std::atomic<bool> g_tracking{false};
std::atomic<std::int64_t> g_live{0};
std::atomic<std::int64_t> g_peak{0};

// The factor covers the object graph: a one-byte pickle opcode (']', '}', ')') makes a
// Value (~150 bytes with its control block), the reader's entry for the container and a
// stack slot: ~120 bytes of heap per input byte at worst, measured. Overridable with
// CKPT_FUZZ_MEMORY_FACTOR (0 disables the check).
constexpr std::int64_t kDefaultMemoryFactor = 256;
constexpr std::int64_t kMemorySlack = 1 << 20;
std::int64_t g_memory_factor = kDefaultMemoryFactor;
bool g_verbose = false;  // CKPT_FUZZ_VERBOSE=1: print each input's outcome

}  // namespace

#if CKPT_FUZZ_TRACK_MEMORY
extern "C" void __sanitizer_malloc_hook(const volatile void*, size_t size) {
  if (!g_tracking.load(std::memory_order_relaxed)) return;
  const std::int64_t live = g_live.fetch_add(static_cast<std::int64_t>(size), std::memory_order_relaxed) + size;
  std::int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

extern "C" void __sanitizer_free_hook(const volatile void* ptr) {
  if (!g_tracking.load(std::memory_order_relaxed) || !ptr) return;
  g_live.fetch_sub(static_cast<std::int64_t>(__sanitizer_get_allocated_size(ptr)),
                   std::memory_order_relaxed);
}
#endif

namespace {

[[noreturn]] void bug(const char* what, const std::string& detail) {
  std::fprintf(stderr, "\n=== read_layout contract violated: %s: %s\n", what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

void run_one(std::string_view bytes) {
  MemorySource source(bytes);
  g_live = 0;
  g_peak = 0;
  g_tracking = true;
  try {
    ckpt::format::CheckpointLayout layout = ckpt::format::read_layout(source);
    g_tracking = false;
    const std::string problem = ckpt::fuzz::layout_violation(layout, bytes.size());
    if (!problem.empty()) bug("invariant", problem);
    if (g_verbose) std::fprintf(stderr, "  ok: %zu storages\n", layout.storages.size());
  } catch (const ckpt::FormatError& error) {
    g_tracking = false;  // the expected refusal
    if (g_verbose) std::fprintf(stderr, "  FormatError: %s\n", error.what());
  } catch (const std::exception& error) {
    g_tracking = false;
    bug("unexpected exception", error.what());
  } catch (...) {
    g_tracking = false;
    bug("unexpected exception", "not a std::exception");
  }
  if (!CKPT_FUZZ_TRACK_MEMORY) return;
  if (g_verbose) std::fprintf(stderr, "  peak heap %lld bytes for %zu input bytes\n", static_cast<long long>(g_peak.load()), bytes.size());
  const std::int64_t limit = g_memory_factor * static_cast<std::int64_t>(bytes.size()) + kMemorySlack;
  if (g_memory_factor > 0 && g_peak > limit) {
    bug("memory", std::to_string(g_peak.load()) + " bytes live at peak for an input of " +
                      std::to_string(bytes.size()) + " bytes (limit " + std::to_string(limit) + ")");
  }
}

std::uint64_t le(const unsigned char* p, int width) {
  std::uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return v;
}

// Recomputes the CRC-32 of every central directory entry (0x02014b50 anywhere in the
// input) whose local header and 32-bit size point at bytes inside the input, the first
// 64 of them (a bound on the harness's own work). Returns whether anything changed.
bool fix_crcs(std::string& bytes) {
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
    const std::uint32_t crc = ckpt::format::crc32(0, b + data, size);
    if (le(b + i + 16, 4) != crc) {
      for (int k = 0; k < 4; ++k) b[i + 16 + k] = static_cast<unsigned char>(crc >> (8 * k));
      changed = true;
    }
  }
  return changed;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* factor = std::getenv("CKPT_FUZZ_MEMORY_FACTOR")) g_memory_factor = std::atoll(factor);
  g_verbose = std::getenv("CKPT_FUZZ_VERBOSE") != nullptr;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  run_one(bytes);
  if (size >= 4 && le(data, 4) == 0x04034b50) {
    std::string fixed(bytes);
    if (fix_crcs(fixed)) run_one(fixed);
  }
  return 0;
}
