// The serialization benchmark's two states, shared by format_bench (ckpt), pickle_bench
// (libtorch's own serializer) and format_whatif; bench/python_format_bench.py builds the
// same two in Python. Needs libtorch's ATen headers, not torch/torch.h.
#pragma once

#include <ATen/ops/empty.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bench_support.hpp"

namespace bench {

struct Case {
  std::string name;
  std::int64_t tensors;
  std::int64_t elements;  // float32 elements per tensor
  std::uint64_t state_bytes() const { return static_cast<std::uint64_t>(tensors * elements * 4); }
};

inline Case case_named(const std::string& name) {
  if (name == "A") return {"A", 256, 1 << 20};  // 256 x 4 MiB = 1 GiB
  if (name == "B") return {"B", 20000, 1024};   // 20,000 x 4 KiB = 80 MiB (78.1 MiB)
  throw std::invalid_argument("unknown case '" + name + "' (A or B)");
}

// The options every serialization-benchmark program takes: `PROGRAM COMMAND [--case A|B]
// [--out FILE | --file FILE] [--json-out FILE]`, where --out names what a save writes and
// --file what a load reads.
struct CaseOptions {
  std::string command;
  std::string case_name = "A";
  std::filesystem::path file;
  std::filesystem::path json_out;

  Args& add_to(Args& args) {
    return args.option("--case", case_name).option("--out", file).option("--file", file).option("--json-out", json_out);
  }
};

inline std::string tensor_key(std::int64_t i) { return fmt::format("layer{:05d}.weight", i); }

// name -> float32 tensor, in key order, filled in place (no temporary of the state's
// size, so the process's peak RSS before the operation is the state itself).
inline std::vector<std::pair<std::string, at::Tensor>> make_tensors(const Case& c) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  tensors.reserve(static_cast<std::size_t>(c.tensors));
  for (std::int64_t i = 0; i < c.tensors; ++i) {
    at::Tensor t = at::empty({c.elements}, at::kFloat);
    t.uniform_(-1.0, 1.0);
    tensors.emplace_back(tensor_key(i), std::move(t));
  }
  return tensors;
}

// Checks a loaded state's tensors against the case (a load that returned the wrong thing
// would make its time meaningless), then sums every element: reads every byte once (for
// a memory-mapped load, this is what faults every page in) and records that as touch_*.
inline void check_and_touch(const std::vector<at::Tensor>& tensors, const Case& c, Result& result) {
  if (static_cast<std::int64_t>(tensors.size()) != c.tensors) {
    throw std::runtime_error(fmt::format("loaded {} tensors, expected {}", tensors.size(), c.tensors));
  }
  for (const at::Tensor& t : tensors) {
    if (t.scalar_type() != at::kFloat || t.numel() != c.elements) throw std::runtime_error("unexpected tensor");
  }
  Reading start = Reading::now();
  double checksum = 0;
  for (const at::Tensor& t : tensors) checksum += t.sum().item<double>();
  Reading end = Reading::now();
  result.add_span("touch_", Span::between(start, end));
  result.add("peak_rss_after_touch_kib", static_cast<std::int64_t>(end.maxrss_kib));
  result.add("tensors", static_cast<std::int64_t>(tensors.size()));
  result.add("state_bytes", c.state_bytes());
  result.add("checksum", checksum);
}

}  // namespace bench
