// What bench/format_bench.cpp (ckpt) and bench/pickle_bench.cpp (libtorch's own
// serializer) share: the two benchmark states, the clock and rusage readings around one
// operation, and the one-line JSON result each process writes.
//
// Each process measures exactly one operation (a save or a load), so its peak RSS is
// that operation's. The operation's own time is read with a steady clock around the call:
// a process that links libtorch takes most of a second to start, which is not part of the
// save or load (bench/run_format_benchmarks.sh measures that start-up separately).
#pragma once

#include <ATen/ops/empty.h>
#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>
#include <c10/util/irange.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bench_stats.hpp"

namespace format_bench {

// The benchmark's cases; bench/python_format_bench.py defines the same two.
struct Case {
  std::string name;
  std::int64_t tensors;
  std::int64_t elements;  // float32 elements per tensor
  std::uint64_t state_bytes() const { return static_cast<std::uint64_t>(tensors * elements * 4); }
};

inline Case case_named(const std::string& name) {
  if (name == "A") return {"A", 256, 1 << 20};   // 256 x 4 MiB = 1 GiB
  if (name == "B") return {"B", 20000, 1024};    // 20,000 x 4 KiB = 80 MiB (78.1 MiB)
  throw std::invalid_argument("unknown case '" + name + "' (A or B)");
}

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

// Current resident set (VmRSS) in KiB, from /proc/self/statm.
inline long current_rss_kib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

inline double seconds(const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; }

// Wall clock and this process's CPU time (all threads, user and system) at one instant.
struct Reading {
  bench::Clock::time_point at;
  double user_s = 0;
  double sys_s = 0;
  long maxrss_kib = 0;
  long minflt = 0;  // page faults served from memory (page cache, zeroed pages)
  long majflt = 0;  // page faults that had to read from the disk

  static Reading now() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    Reading r;
    r.at = bench::Clock::now();
    r.user_s = seconds(usage.ru_utime);
    r.sys_s = seconds(usage.ru_stime);
    r.maxrss_kib = usage.ru_maxrss;
    r.minflt = usage.ru_minflt;
    r.majflt = usage.ru_majflt;
    return r;
  }
};

// One measured span: wall, user and system CPU, and page faults between two readings.
struct Span {
  double wall_s = 0, user_s = 0, sys_s = 0;
  long minflt = 0, majflt = 0;
  static Span between(const Reading& a, const Reading& b) {
    return {std::chrono::duration<double>(b.at - a.at).count(), b.user_s - a.user_s, b.sys_s - a.sys_s,
            b.minflt - a.minflt, b.majflt - a.majflt};
  }
  std::string json(const std::string& prefix) const {
    return fmt::format(
        "\"{0}wall_s\": {1:.6f}, \"{0}user_s\": {2:.6f}, \"{0}sys_s\": {3:.6f}, \"{0}minflt\": {4}, \"{0}majflt\": {5}",
        prefix, wall_s, user_s, sys_s, minflt, majflt);
  }
};

// The JSON object one process writes: "key": value fields added in order.
class Result {
 public:
  void add_raw(const std::string& key, const std::string& json_value) {
    fields_ += fmt::format("{}\"{}\": {}", fields_.empty() ? "" : ", ", key, json_value);
  }
  void add(const std::string& key, const std::string& text) { add_raw(key, fmt::format("\"{}\"", text)); }
  void add(const std::string& key, double value) { add_raw(key, fmt::format("{:.6f}", value)); }
  void add(const std::string& key, std::int64_t value) { add_raw(key, std::to_string(value)); }
  void add(const std::string& key, std::uint64_t value) { add_raw(key, std::to_string(value)); }
  void add(const std::string& key, int value) { add_raw(key, std::to_string(value)); }
  void add_span(const std::string& prefix, const Span& span) {
    fields_ += (fields_.empty() ? "" : ", ") + span.json(prefix);
  }
  // Memory around the operation: RSS just before it, and the process's peak (ru_maxrss)
  // before and after it. The peak after is the operation's, provided the peak before is
  // no higher than the RSS before (nothing earlier in the process peaked higher).
  void add_memory(long rss_before_kib, const Reading& before, const Reading& after) {
    add("rss_before_kib", rss_before_kib);
    add("maxrss_before_kib", before.maxrss_kib);
    add("peak_rss_kib", after.maxrss_kib);
    // The operation's window on CLOCK_MONOTONIC (steady_clock on Linux), so that a profile
    // taken with `perf record -k CLOCK_MONOTONIC` can be cut to it (perf report --time).
    add("mono_start_s", std::chrono::duration<double>(before.at.time_since_epoch()).count());
    add("mono_end_s", std::chrono::duration<double>(after.at.time_since_epoch()).count());
  }
  std::string json() const { return "{" + fields_ + "}\n"; }

 private:
  std::string fields_;
};

// Sums every element of every tensor: reads every byte once (for a memory-mapped load,
// this is what faults every page in). Returns the sum as a checksum of sorts.
template <typename Tensors>
double sum_all(const Tensors& tensors) {
  double total = 0;
  for (const at::Tensor& t : tensors) total += t.sum().item<double>();
  return total;
}

}  // namespace format_bench
