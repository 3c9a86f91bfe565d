#include "log/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace ckpt::log {

namespace {

constexpr char kName[] = "ckpt";

std::string_view trimmed(std::string_view text) {
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!text.empty() && space(text.front())) text.remove_prefix(1);
  while (!text.empty() && space(text.back())) text.remove_suffix(1);
  return text;
}

}  // namespace

std::optional<spdlog::level::level_enum> level_from_spec(std::string_view spec) {
  // spdlog's own grammar (spdlog/cfg/helpers-inl.h): at most 512 characters of
  // comma-separated `level` (every logger) or `name=level` entries; level names are
  // case-insensitive, unknown ones ignored; the last entry of each kind wins.
  if (spec.empty() || spec.size() > 512) return std::nullopt;
  std::optional<spdlog::level::level_enum> named, global;
  while (!spec.empty()) {
    const std::size_t comma = std::min(spec.find(','), spec.size());
    std::string_view entry = spec.substr(0, comma);
    spec.remove_prefix(std::min(comma + 1, spec.size()));
    std::string_view name;
    const std::size_t equals = entry.find('=');
    if (equals != std::string_view::npos) {
      name = trimmed(entry.substr(0, equals));
      entry = entry.substr(equals + 1);
    }
    std::string level_name(trimmed(entry));
    std::transform(level_name.begin(), level_name.end(), level_name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const auto level = spdlog::level::from_str(level_name);
    if (level == spdlog::level::off && level_name != "off") continue;  // not a level name
    if (name == kName) {
      named = level;
    } else if (name.empty() || name == "*") {
      global = level;
    }
  }
  return named ? named : global;
}

std::shared_ptr<spdlog::logger> logger() {
  if (auto existing = spdlog::get(kName)) return existing;
  static std::mutex creating;
  std::lock_guard<std::mutex> lock(creating);
  if (auto existing = spdlog::get(kName)) return existing;
  // Through spdlog's factory, so the registry's settings (global level, pattern, error
  // handler) apply as to any logger; then SPDLOG_LEVEL, which only this logger follows.
  std::shared_ptr<spdlog::logger> created;
  try {
    created = spdlog::stderr_color_mt(kName);
  } catch (const spdlog::spdlog_ex&) {
    // An application registered its own between the check and here: that one is used.
    if (auto existing = spdlog::get(kName)) return existing;
    throw;
  }
  if (const char* spec = std::getenv("SPDLOG_LEVEL")) {
    if (auto level = level_from_spec(spec)) created->set_level(*level);
  }
  return created;
}

namespace {

// Registers the logger while the program loads, before main: so spdlog::get("ckpt") finds
// it from main's first statement on (and SPDLOG_LEVEL applies from the first line on).
// This object is linked into every program whose ckpt code can log, because each TU that
// logs calls logger(). Nothing may escape a static initializer: a failure here leaves the
// logger to be created on first use.
[[maybe_unused]] const bool kRegisteredAtLoad = [] {
  try {
    logger();
    return true;
  } catch (...) {
    return false;
  }
}();

}  // namespace

}  // namespace ckpt::log
