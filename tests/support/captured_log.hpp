// The library's log lines while a CapturedLog lives: the logger named "ckpt" is replaced
// by one writing to a string, then put back.
#pragma once

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>
#include <string>

namespace ckpt::test {

class CapturedLog {
 public:
  // `pattern` empty keeps spdlog's default ("[...] [ckpt] [warning] text").
  explicit CapturedLog(spdlog::level::level_enum level = spdlog::level::trace, const std::string& pattern = "")
      : previous_(spdlog::get("ckpt")) {
    auto logger = std::make_shared<spdlog::logger>("ckpt", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines_));
    logger->set_level(level);
    if (!pattern.empty()) logger->set_pattern(pattern);
    spdlog::drop("ckpt");
    spdlog::register_logger(logger);
  }
  ~CapturedLog() {
    spdlog::drop("ckpt");
    if (previous_) spdlog::register_logger(previous_);
  }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;
  std::string text() const { return lines_.str(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream lines_;
};

}  // namespace ckpt::test
