// Multi-process helpers for the [distributed] tests: ranks as real processes on loopback.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace ckpt::test {

// A port free now on 127.0.0.1 (bound to 0, read, closed).
int free_port();

// Runs one shell command per rank at once, each bounded by timeout(1) at `cap_s` seconds
// (SIGKILL), and returns what each printed followed by its exit status on a line of its
// own ("saved\n0\n"), by rank. Outputs go through files in `dir`.
std::vector<std::string> run_ranks(const std::filesystem::path& dir, const std::vector<std::string>& commands,
                                   int cap_s = 60);

}  // namespace ckpt::test
