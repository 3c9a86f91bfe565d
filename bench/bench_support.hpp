// What every benchmark program shares: command-line options, file helpers, latency
// summaries, resource readings around one operation, and the one-line JSON result.
//
// Torch-free and ckpt-free on purpose: index_bench links only ckpt::core, pickle_bench
// and format_whatif do not link ckpt at all. The torch states of the serialization
// benchmark are in bench_states.hpp. bench/render_report.py reads the JSON results; its
// percentile (nearest rank) is the one here, so a program's printout and the report agree.
#pragma once

#include <fcntl.h>
#include <stdlib.h>  // mkdtemp
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace bench {

// --- options ------------------------------------------------------------------------------

// `--name VALUE` and `--flag` options, parsed into the caller's variables. A malformed or
// unknown option prints the usage line and exits with 2.
//
//   bench::Args args("usage: save_bench [--saves N] [--keep-dir]");
//   args.option("--saves", options.saves).flag("--keep-dir", options.keep_dir);
//   args.parse(argc, argv);
class Args {
 public:
  explicit Args(std::string usage) : usage_(std::move(usage)) {}

  [[noreturn]] void usage() const {
    std::fprintf(stderr, "%s\n", usage_.c_str());
    std::exit(2);
  }

  Args& option(const std::string& name, std::string& into) {
    return value(name, [&into](const std::string& v) { into = v; });
  }
  Args& option(const std::string& name, std::filesystem::path& into) {
    return value(name, [&into](const std::string& v) { into = v; });
  }
  Args& option(const std::string& name, int& into) {
    return value(name, [this, &into](const std::string& v) { into = static_cast<int>(integer(v)); });
  }
  Args& option(const std::string& name, std::int64_t& into) {
    return value(name, [this, &into](const std::string& v) { into = integer(v); });
  }
  Args& flag(const std::string& name, bool& into) {
    flags_[name] = &into;
    return *this;
  }

  // The command (argv[1], one of `commands`) for programs that take one, then the
  // options after it.
  std::string parse_command(int argc, char** argv, std::initializer_list<const char*> commands) const {
    if (argc < 2 || std::none_of(commands.begin(), commands.end(), [&](const char* c) { return argv[1] == std::string(c); })) {
      usage();
    }
    parse(argc, argv, 2);
    return argv[1];
  }

  void parse(int argc, char** argv, int first = 1) const {
    for (int i = first; i < argc; ++i) {
      const std::string arg = argv[i];
      if (auto flag = flags_.find(arg); flag != flags_.end()) {
        *flag->second = true;
      } else if (auto value = values_.find(arg); value != values_.end() && i + 1 < argc) {
        value->second(argv[++i]);
      } else {
        usage();
      }
    }
  }

 private:
  Args& value(const std::string& name, std::function<void(const std::string&)> set) {
    values_[name] = std::move(set);
    return *this;
  }
  std::int64_t integer(const std::string& text) const {
    std::size_t used = 0;
    std::int64_t n = 0;
    try {
      n = std::stoll(text, &used);
    } catch (const std::exception&) {
      usage();
    }
    if (used != text.size()) usage();
    return n;
  }

  std::string usage_;
  std::map<std::string, std::function<void(const std::string&)>> values_;
  std::map<std::string, bool*> flags_;
};

// The options of the programs that save into a fresh checkpoint directory:
// `--dir PARENT` (where it is made), `--json-out FILE`, `--keep-dir` (leave it behind).
struct RunDirOptions {
  std::filesystem::path parent = "bench_runs";
  std::filesystem::path json_out;
  bool keep_dir = false;

  Args& add_to(Args& args) {
    return args.option("--dir", parent).option("--json-out", json_out).flag("--keep-dir", keep_dir);
  }
};

// --- files --------------------------------------------------------------------------------

[[noreturn]] inline void os_error(const char* what, const std::filesystem::path& path) {
  throw std::runtime_error(fmt::format("{}: {}: {}", path.string(), what, std::strerror(errno)));
}

inline void write_all(int fd, const char* data, std::size_t n, const std::filesystem::path& path) {
  while (n > 0) {
    ssize_t written = ::write(fd, data, n);
    if (written < 0) {
      if (errno == EINTR) continue;
      os_error("write", path);
    }
    data += written;
    n -= static_cast<std::size_t>(written);
  }
}

// The whole file in memory (EINTR retried; a file that shrinks meanwhile comes back short).
inline std::vector<char> read_all(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) os_error("open", path);
  struct stat st{};
  if (::fstat(fd, &st) != 0) os_error("stat", path);
  std::vector<char> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t used = 0;
  while (used < bytes.size()) {
    ssize_t got = ::read(fd, bytes.data() + used, bytes.size() - used);
    if (got < 0) {
      if (errno == EINTR) continue;
      os_error("read", path);
    }
    if (got == 0) break;
    used += static_cast<std::size_t>(got);
  }
  ::close(fd);
  bytes.resize(used);
  return bytes;
}

inline void sync_dir(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) os_error("fsync directory", dir);
  ::close(fd);
}

// Result files only: not durable, not atomic (a benchmark killed midway leaves no result
// worth keeping anyway).
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
  if (!::mkdtemp(pattern.data())) os_error("mkdtemp", pattern);
  return std::filesystem::absolute(pattern);
}

// --- latency samples ----------------------------------------------------------------------

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

// --- one operation's resources ------------------------------------------------------------

// Current resident set (VmRSS) in KiB, from /proc/self/statm.
inline long current_rss_kib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

// Wall clock and this process's CPU time (all threads, user and system) at one instant.
struct Reading {
  Clock::time_point at;
  double user_s = 0;
  double sys_s = 0;
  long maxrss_kib = 0;
  long minflt = 0;  // page faults served from memory (page cache, zeroed pages)
  long majflt = 0;  // page faults that had to read from the disk

  static Reading now() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
    Reading r;
    r.at = Clock::now();
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
};

// --- the JSON result ----------------------------------------------------------------------

// The JSON object one process writes: "key": value fields in the order added.
class Result {
 public:
  Result& add_raw(const std::string& key, const std::string& json_value) {
    fields_ += fmt::format("{}\"{}\": {}", fields_.empty() ? "" : ", ", key, json_value);
    return *this;
  }
  Result& add(const std::string& key, const std::string& text) { return add_raw(key, quoted(text)); }
  Result& add(const std::string& key, const char* text) { return add_raw(key, quoted(text)); }
  Result& add(const std::string& key, double value) { return add_raw(key, fmt::format("{:.6f}", value)); }
  // std::int64_t is long and std::uint64_t is std::size_t here (LP64 Linux).
  Result& add(const std::string& key, std::int64_t value) { return add_raw(key, std::to_string(value)); }
  Result& add(const std::string& key, std::uint64_t value) { return add_raw(key, std::to_string(value)); }
  Result& add(const std::string& key, int value) { return add_raw(key, std::to_string(value)); }
  // Latency samples in microseconds: 0.1 us is more than the clock and the file system
  // can honestly resolve.
  Result& add_samples(const std::string& key, const std::vector<double>& samples_us) {
    std::string out;
    for (double sample : samples_us) out += fmt::format("{}{:.1f}", out.empty() ? "" : ",", sample);
    return add_raw(key, "[" + out + "]");
  }
  Result& add_strings(const std::string& key, const std::vector<std::string>& texts) {
    std::string out;
    for (const auto& text : texts) out += (out.empty() ? "" : ", ") + quoted(text);
    return add_raw(key, "[" + out + "]");
  }
  Result& add_object(const std::string& key, const Result& object) { return add_raw(key, object.object()); }
  // PREFIXwall_s, PREFIXuser_s, PREFIXsys_s, PREFIXminflt, PREFIXmajflt.
  Result& add_span(const std::string& prefix, const Span& span) {
    add(prefix + "wall_s", span.wall_s).add(prefix + "user_s", span.user_s).add(prefix + "sys_s", span.sys_s);
    return add(prefix + "minflt", span.minflt).add(prefix + "majflt", span.majflt);
  }
  // The operation between two readings: its span (wall_s, user_s, ...) and its memory.
  Result& add_operation(long rss_before_kib, const Reading& before, const Reading& after) {
    add_span("", Span::between(before, after));
    return add_memory(rss_before_kib, before, after);
  }
  // Memory around the operation: RSS just before it, and the process's peak (ru_maxrss)
  // before and after it. The peak after is the operation's, provided the peak before is
  // no higher than the RSS before (nothing earlier in the process peaked higher).
  Result& add_memory(long rss_before_kib, const Reading& before, const Reading& after) {
    add("rss_before_kib", rss_before_kib).add("maxrss_before_kib", before.maxrss_kib);
    add("peak_rss_kib", after.maxrss_kib);
    // The operation's window on CLOCK_MONOTONIC (steady_clock on Linux), so that a profile
    // taken with `perf record -k CLOCK_MONOTONIC` can be cut to it (perf report --time).
    add("mono_start_s", std::chrono::duration<double>(before.at.time_since_epoch()).count());
    return add("mono_end_s", std::chrono::duration<double>(after.at.time_since_epoch()).count());
  }

  std::string object() const { return "{" + fields_ + "}"; }
  // Writes the object to `path` unless it is empty (no --json-out given).
  void write(const std::filesystem::path& path) const {
    if (!path.empty()) write_text_file(path, object() + "\n");
  }

 private:
  static std::string quoted(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + "\"";
  }

  std::string fields_;
};

}  // namespace bench
