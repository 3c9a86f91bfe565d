// A program that leaves logging alone: what it shows is decided by SPDLOG_LEVEL alone.
#include "logging/log_scenario.hpp"

int main() {
  ckpt::test::run_logging_scenario();
  return 0;
}
