// The library's logger: spdlog's registry entry named "ckpt".
//
// Applications replace it by registering their own logger under that name
// (spdlog::drop("ckpt"); spdlog::register_logger(mine)), or silence it with
// spdlog::get("ckpt")->set_level(spdlog::level::off). It is looked up on every use so
// that a replacement takes effect at once; a log call never lets an exception escape.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>

namespace ckpt::log {

std::shared_ptr<spdlog::logger> logger();

template <typename... Args>
void write(spdlog::level::level_enum level, spdlog::format_string_t<Args...> format, Args&&... args) noexcept {
  try {
    logger()->log(level, format, std::forward<Args>(args)...);
  } catch (...) {
    // Logging must never turn a successful save into a failure.
  }
}

}  // namespace ckpt::log
