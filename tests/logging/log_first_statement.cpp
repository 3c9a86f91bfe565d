// The README's recipe, before any other ckpt call: the logger must already exist.
// Usage: ckpt_log_first_statement <level>   (spdlog's names: off, info, debug, ...)
#include <spdlog/spdlog.h>

#include "logging/log_scenario.hpp"

int main(int argc, char* argv[]) {
  spdlog::get("ckpt")->set_level(spdlog::level::from_str(argc > 1 ? argv[1] : "off"));
  ckpt::test::run_logging_scenario();
  return 0;
}
