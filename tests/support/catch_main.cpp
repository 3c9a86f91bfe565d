// Catch2's main for every test binary. The library logs through spdlog; tests keep it
// quiet unless CKPT_TEST_LOG is set (then everything from debug up is shown).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

#include <cstdlib>

int main(int argc, char* argv[]) {
  spdlog::set_level(std::getenv("CKPT_TEST_LOG") ? spdlog::level::debug : spdlog::level::off);
  return Catch::Session().run(argc, argv);
}
