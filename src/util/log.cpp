#include "util/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace ckpt::log {

std::shared_ptr<spdlog::logger> logger() {
  if (auto existing = spdlog::get("ckpt")) return existing;
  static std::mutex creating;
  std::lock_guard<std::mutex> lock(creating);
  if (auto existing = spdlog::get("ckpt")) return existing;
  auto created = spdlog::stderr_color_mt("ckpt");
  return created;
}

}  // namespace ckpt::log
