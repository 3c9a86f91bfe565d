// `ckpt watch DIR --exec CMD`: runs a shell command once for each newly committed
// checkpoint, in commit order, resumable through the index's watch_cursors table
// (docs/cli.md, "ckpt watch", is the contract). A thin program over the public
// CheckpointReader: commits_after and wait_for_new to follow the commits, pin to keep the
// checkpoint while the command reads it, load to verify its hash first, and
// watch_cursor/move_watch_cursor for the cursor. Torch-free. Single-threaded; it forks one
// child at a time.
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

// Runs the watch until --max, --idle-exit, SIGINT or SIGTERM (0), or a command fails (1,
// reported on stderr). Throws ckpt::Error (the CLI's exit 3) when the index cannot be read
// or written (the cursor, the pin), or another watch of the same name moved the cursor.
int run_watch(const WatchOptions& options);

}  // namespace ckpt::cli
