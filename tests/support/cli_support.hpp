// Running the `ckpt` tool (CKPT_CLI, the built binary) from a test.
#pragma once

#include <string>

#include "support/test_dir.hpp"

namespace ckpt::test {

// Its stdout and stderr together, and its exit code.
inline CommandResult ckpt_cli(const std::string& args) { return run_command(std::string(CKPT_CLI) + " " + args + " 2>&1"); }
// Its stdout alone.
inline CommandResult ckpt_stdout(const std::string& args) {
  return run_command(std::string(CKPT_CLI) + " " + args + " 2>/dev/null");
}

// Its stderr alone.
inline CommandResult ckpt_stderr(const std::string& args) {
  return run_command(std::string(CKPT_CLI) + " " + args + " 2>&1 >/dev/null");
}

}  // namespace ckpt::test
