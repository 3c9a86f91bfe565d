// An application's own logger registered under "ckpt" receives the library's lines; the
// default one (stderr) logs nothing. Captured lines go to stdout as "captured: <line>".
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "logging/log_scenario.hpp"

int main() {
  std::ostringstream captured;
  auto mine = std::make_shared<spdlog::logger>("ckpt", std::make_shared<spdlog::sinks::ostream_sink_st>(captured));
  mine->set_pattern("captured: [%l] %v");
  mine->set_level(spdlog::level::debug);
  spdlog::drop("ckpt");
  spdlog::register_logger(mine);
  ckpt::test::run_logging_scenario();
  std::cout << captured.str() << std::flush;
  return 0;
}
