// `ckpt watch DIR --exec CMD`: runs a shell command once for each newly committed
// checkpoint, resumable through the index's watch_cursors table (docs/cli.md, "watch").
// Torch-free: over CheckpointReader (wait_for_new, pin, verified load) and a short
// read-write SQLite connection for the cursor.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "ckpt/store.hpp"

namespace ckpt::cli {

struct WatchOptions {
  std::string dir;
  std::string command;            // run as /bin/sh -c COMMAND
  std::string name = "default";   // the cursor's name in watch_cursors
  std::optional<CheckpointKind> kind;
  std::chrono::milliseconds pin_ttl{std::chrono::seconds(60)};
  std::chrono::milliseconds poll{std::chrono::milliseconds(1000)};
  std::optional<std::chrono::milliseconds> idle_exit;  // exit 0 after this long with nothing new
  std::optional<std::int64_t> max;                     // exit 0 after this many commands
  bool from_now = false;                               // a new NAME starts after the newest commit
};

// Returns the process exit code (0 done; 1 a command failed; 3 error).
int run_watch(const WatchOptions& options);

}  // namespace ckpt::cli
