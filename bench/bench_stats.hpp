// Latency summaries and result files shared by the benchmark programs.
//
// Torch-free on purpose: index_bench links only ckpt::core. The percentile definition
// (nearest rank) is the one bench/write_report.py uses, so a program's own printout and
// the generated docs/benchmarks.md agree on the same samples.
#pragma once

#include <stdlib.h>  // mkdtemp

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace bench {

using Clock = std::chrono::steady_clock;

inline double elapsed_us(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

struct Summary {
  std::size_t count = 0;
  double mean_us = 0;
  double median_us = 0;
  double p95_us = 0;
  double min_us = 0;
  double max_us = 0;
};

// Nearest-rank percentile of sorted samples: the value at rank ceil(p/100 * n). No
// interpolation, so every reported number is a latency that was actually observed.
inline double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

inline Summary summarize(std::vector<double> samples_us) {
  Summary summary;
  if (samples_us.empty()) return summary;
  std::sort(samples_us.begin(), samples_us.end());
  double total = 0;
  for (double sample : samples_us) total += sample;
  summary.count = samples_us.size();
  summary.mean_us = total / static_cast<double>(samples_us.size());
  summary.median_us = percentile(samples_us, 50);
  summary.p95_us = percentile(samples_us, 95);
  summary.min_us = samples_us.front();
  summary.max_us = samples_us.back();
  return summary;
}

inline std::string describe(const Summary& s) {
  return fmt::format("n={} mean={:.1f}us median={:.1f}us p95={:.1f}us min={:.1f}us max={:.1f}us", s.count,
                     s.mean_us, s.median_us, s.p95_us, s.min_us, s.max_us);
}

// The samples as a JSON array (microseconds, 0.1 us resolution is more than the clock
// and the file system can honestly deliver).
inline std::string json_array(const std::vector<double>& samples_us) {
  std::string out = "[";
  for (std::size_t i = 0; i < samples_us.size(); ++i) {
    if (i > 0) out += ",";
    out += fmt::format("{:.1f}", samples_us[i]);
  }
  return out + "]";
}

inline void write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (!file) throw std::runtime_error(fmt::format("{}: cannot open for writing", path.string()));
  bool ok = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  ok = std::fclose(file) == 0 && ok;
  if (!ok) throw std::runtime_error(fmt::format("{}: write failed", path.string()));
}

// A fresh, empty directory `<parent>/<prefix>-XXXXXX`. Benchmarks must start from an
// empty checkpoint directory: leftovers would make recovery and rotation do extra work.
inline std::filesystem::path make_fresh_dir(const std::filesystem::path& parent, const std::string& prefix) {
  std::filesystem::create_directories(parent);
  std::string pattern = (parent / (prefix + "-XXXXXX")).string();
  if (!::mkdtemp(pattern.data())) {
    throw std::runtime_error(fmt::format("{}: cannot create a temporary directory", pattern));
  }
  return std::filesystem::absolute(pattern);
}

}  // namespace bench
