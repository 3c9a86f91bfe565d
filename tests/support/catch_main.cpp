// Catch2's main for every test binary. The library logs through spdlog; tests keep it
// quiet unless CKPT_TEST_LOG is set (then everything from debug up is shown).
//
// Cases run in random order with a seed from the clock unless the command line picks
// `--order` or `--rng-seed`: an order dependence between cases shows up instead of hiding
// behind declaration order. A failing run prints its seed, to replay the same order and
// the same GENERATE(random(...)) values with `--order rand --rng-seed <seed>`.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
bool has_option(int argc, char* argv[], const char* name) {
  const std::size_t length = std::strlen(name);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], name, length) == 0 && (argv[i][length] == '\0' || argv[i][length] == '=')) return true;
  }
  return false;
}
}  // namespace

int main(int argc, char* argv[]) {
  spdlog::set_level(std::getenv("CKPT_TEST_LOG") ? spdlog::level::debug : spdlog::level::off);
  Catch::Session session;
  if (int parse_error = session.applyCommandLine(argc, argv)) return parse_error;
  auto& config = session.configData();
  const bool listing = config.listTests || config.listTestNamesOnly || config.listTags || config.listReporters;
  // A listing keeps declaration order, so the ctest file written from it is the same each build.
  if (!has_option(argc, argv, "--order") && !listing) config.runOrder = Catch::RunTests::InRandomOrder;
  if (!has_option(argc, argv, "--rng-seed")) {
    // Never 0: Catch prints a seed only when it is not 0.
    config.rngSeed = static_cast<unsigned>(std::chrono::system_clock::now().time_since_epoch().count() % 4000000000u) + 1;
  }
  // A test spec that matches no case fails (Catch's default is to pass): a ctest entry
  // whose name no longer matches its case must not pass without running anything.
  config.warnings = static_cast<Catch::WarnAbout::What>(config.warnings | Catch::WarnAbout::NoTests);
  const int failed = session.run();
  if (failed != 0 && !listing) {
    const char* order = config.runOrder == Catch::RunTests::InRandomOrder          ? "rand"
                        : config.runOrder == Catch::RunTests::InLexicographicalOrder ? "lex"
                                                                                     : "decl";
    std::fprintf(stderr, "%s: failed; replay with --order %s --rng-seed %u\n", argv[0], order, config.rngSeed);
  }
  return failed;
}
