// The library's logger: spdlog's registry entry named "ckpt" (stderr, colored on a terminal).
//
// It is registered while the program loads (a static initializer in log.cpp, linked into
// every program whose ckpt code can log), so from the first statement of main:
//   - spdlog::get("ckpt")->set_level(spdlog::level::off) silences it;
//   - spdlog::drop("ckpt"); spdlog::register_logger(mine) replaces it: it is looked up on
//     every use, so a replacement takes effect at once (and one dropped without a
//     replacement is created again on the next use);
//   - SPDLOG_LEVEL, in spdlog's syntax ("off", "debug", "ckpt=debug", "off,ckpt=warn"),
//     sets its level when it is created; an entry named ckpt wins over a bare level. It
//     applies to this logger only: other loggers follow it only if the application calls
//     spdlog::cfg::load_env_levels() itself. A set_level in code (the logger's, or
//     spdlog::set_level for all) runs later and wins; a replacement logger keeps its own.
// A log call never lets an exception escape.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <string_view>

namespace ckpt::log {

// The logger named "ckpt", created (and registered) if the registry has none.
std::shared_ptr<spdlog::logger> logger();

// The level an SPDLOG_LEVEL value gives the "ckpt" logger; nullopt when it names none.
std::optional<spdlog::level::level_enum> level_from_spec(std::string_view spec);

template <typename... Args>
void write(spdlog::level::level_enum level, spdlog::format_string_t<Args...> format, Args&&... args) noexcept {
  try {
    logger()->log(level, format, std::forward<Args>(args)...);
  } catch (...) {
    // Logging must never turn a successful save into a failure.
  }
}

}  // namespace ckpt::log
