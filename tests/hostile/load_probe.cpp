// ckpt_load_probe FILE [--device meta]: one ckpt::load_file in a process of its own, for
// tests/hostile/run_hostile.py, which measures this process's peak memory and time.
//
// Prints "ok <number of top-level keys>" and exits 0, or "refused: <what()>" and exits 1
// on a ckpt::Error. Any other exception is a bug in the library (its contract is that
// foreign exceptions become ckpt errors): it is left to escape, so std::terminate aborts
// and the runner reports a crash. Exit 2 is a usage error.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "ckpt/errors.hpp"
#include "ckpt/serialization.hpp"

int main(int argc, char** argv) {
  std::string file;
  ckpt::LoadOptions options;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      options.device = c10::Device(std::string(argv[++i]));
    } else if (file.empty() && argv[i][0] != '-') {
      file = argv[i];
    } else {
      std::cerr << "usage: ckpt_load_probe FILE [--device DEVICE]\n";
      return 2;
    }
  }
  if (file.empty()) {
    std::cerr << "usage: ckpt_load_probe FILE [--device DEVICE]\n";
    return 2;
  }
  try {
    ckpt::State state = ckpt::load_file(file, options);
    std::cout << "ok " << state.size() << std::endl;
    return 0;
  } catch (const ckpt::Error& error) {
    std::cout << "refused: " << error.what() << std::endl;
    return 1;
  }
}
