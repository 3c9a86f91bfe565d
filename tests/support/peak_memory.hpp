// The peak memory of one operation, not of the process that runs it.
#pragma once

#include <fstream>
#include <optional>
#include <string>

namespace ckpt::test {

namespace detail {
// A "<field>:  <n> kB" line of /proc/self/status; -1 if absent.
inline long status_kib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}
}  // namespace detail

// How far `operation` raised the resident set above what it was when the operation began
// (KiB). The process's high-water mark (VmHWM, ru_maxrss) is first reset to the current
// size (Linux: "5" into /proc/self/clear_refs), so a peak an earlier case of the same
// process reached cannot hide this operation's. nullopt where the kernel refuses the reset;
// the operation runs either way, and its exceptions pass through.
template <typename Fn>
std::optional<long> peak_growth_kib(Fn&& operation) {
  bool reset = false;
  {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";
    clear.flush();
    reset = static_cast<bool>(clear);
  }
  const long before = detail::status_kib("VmRSS");
  operation();
  const long peak = detail::status_kib("VmHWM");
  if (!reset || before < 0 || peak < 0) return std::nullopt;
  return peak - before;
}

}  // namespace ckpt::test
