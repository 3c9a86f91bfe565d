// libFuzzer target: arbitrary bytes -> read_layout -> ckpt::torch_layer::decode and
// decode_value (src/torch/payload_codec.hpp), the decoder that turns the format layer's
// object graph into libtorch IValues and reads the storages into tensors.
//
// For each input (and, for a zip, once more with its CRCs recomputed: fuzz_support.hpp):
//   1. read_layout, to learn the tensor bytes the layout declares (the sum of its
//      storages' sizes). An input read_layout refuses is refused by the decoder's own
//      read_layout too (the same call on the same bytes): nothing more is run.
//   2. decode (a State) and decode_value (the root IValue) on the CPU;
//   3. when the first byte or the length is odd, decode_value with LoadOptions::device =
//      meta (the storages are read, then moved to the meta device). The length too,
//      because every well-formed payload starts with an even byte ('P' of a zip, PROTO
//      0x80 of a legacy stream): by the first byte alone, only broken inputs would.
//
// Contract: each call returns, or throws ckpt::FormatError / ckpt::CorruptError. Any other
// exception is not caught: it escapes to libFuzzer (std::terminate, a crash report naming
// its type). So is a crash, an ASan/UBSan report, a timeout. And memory: the peak of live
// heap bytes during each call must stay under
//     input + MemoryBudget::kFactor x input + MemoryBudget::kSlack + kHarnessSlack
//     (the payload's budget: its Values and the IValues built from them; fuzz_support.hpp)
//     + tensor bytes (the storages are read into tensor memory; not charged to the budget)
//     + kTorchSlack (libtorch's own allocations: dispatcher, TensorImpls' first-use
//       caches; measured on a tiny valid payload after the warm-up, see below).
// CKPT_FUZZ_MEMORY_FACTOR overrides the factor (0 disables the check); CKPT_FUZZ_VERBOSE=1
// prints each call's outcome and peak.
//
// libtorch itself is not instrumented (Debian's libtorch-dev): it gets no coverage
// feedback and ASan sees its heap (the allocator is interposed) but not its stack or
// globals. Build and run: tests/fuzz/README.md.
#include <ATen/Parallel.h>
#include <ATen/ops/arange.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "ckpt/errors.hpp"
#include "ckpt/serialization.hpp"
#include "ckpt/state.hpp"
#include "format/checkpoint_format.hpp"
#include "fuzz_support.hpp"
#include "torch/payload_codec.hpp"
#include "support/memory_source.hpp"

namespace {

using namespace ckpt::fuzz;

constexpr const char* kTarget = "decode";

// libtorch's own allocations during one decode, beyond what the budget and the tensor
// bytes account for. Measured after the warm-up (CKPT_FUZZ_VERBOSE=1 prints it): about
// 3 KiB for a payload of one 4-element tensor and an int (the tensor's TensorImpl and
// StorageImpl, the State's dict); 1 MiB leaves room and still catches anything that
// grows with the input.
constexpr std::int64_t kTorchSlack = 1 << 20;

const std::filesystem::path kName = "fuzz-input.pth";

void run_one(std::string_view bytes, bool also_meta) {
  const std::optional<std::int64_t> tensors = layout_tensor_bytes(bytes);
  if (!tensors) return;
  if (g_verbose) std::fprintf(stderr, "  read_layout: ok, %lld tensor bytes\n", static_cast<long long>(*tensors));
  const std::int64_t limit = structure_bound(bytes.size()) + *tensors + kTorchSlack;
  measured(kTarget, "decode", bytes.size(), limit, [&] {
    MemorySource source(bytes);
    ckpt::State state = ckpt::torch_layer::decode(source, ckpt::LoadOptions{}, kName);
  });
  measured(kTarget, "decode_value", bytes.size(), limit, [&] {
    MemorySource source(bytes);
    c10::IValue value = ckpt::torch_layer::decode_value(source, ckpt::LoadOptions{}, kName);
  });
  if (also_meta) {
    measured(kTarget, "decode_value(meta)", bytes.size(), limit, [&] {
      MemorySource source(bytes);
      ckpt::LoadOptions options;
      options.device = c10::Device(c10::kMeta);
      c10::IValue value = ckpt::torch_layer::decode_value(source, options, kName);
    });
  }
}

// A payload made by ckpt's own writer: one float tensor and an int.
std::string tiny_payload() {
  ckpt::test::StringSink sink;
  ckpt::State state;
  state.set("w", at::arange(4, at::TensorOptions().dtype(at::kFloat)));
  state.set("epoch", c10::IValue(std::int64_t{3}));
  ckpt::torch_layer::encode(state, "tiny_payload.pth").write(sink);
  return sink.bytes;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  read_environment();
  at::set_num_threads(1);  // one core for the fuzzer; no intra-op pool threads
  // Warm-up: libtorch builds its dispatcher tables, allocator and type caches on first
  // use. Done here, those are not charged to the first input (nor reported as its leak).
  const std::string tiny = tiny_payload();
  const bool verbose = g_verbose;
  g_verbose = false;
  for (int i = 0; i < 3; ++i) run_one(tiny, true);
  g_verbose = verbose;
  if (g_verbose) {
    std::fprintf(stderr, "baseline: a payload of %zu bytes (one 4-element float tensor, one int):\n", tiny.size());
    run_one(tiny, true);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bool also_meta = (size > 0 && (data[0] & 1) != 0) || (size & 1) != 0;
  run_input(data, size, [&](std::string_view bytes) { run_one(bytes, also_meta); });
  return 0;
}
