// Test hooks: what the crash, kill and power-loss suites (and bench/save_bench.cpp's phase
// timing) need from a store, and no user sets. Internal: not installed, not in
// include/ckpt/; tests and benchmarks reach it through the src/ include path.
//
// The store finds its hooks on the FileSystem it is opened with: test_hooks(options)
// wraps options.file_system (or FileSystem::posix()) in a HookedFileSystem that forwards
// every call and carries the hooks. A FileSystem that is not a HookedFileSystem carries
// none. So StoreOptions holds only what a user sets, and a store opened by a user never
// runs a hook.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "ckpt/file_system.hpp"
#include "ckpt/store.hpp"

namespace ckpt::store {

struct TestHooks {
  // The SQLite VFS the index is opened with (the power-loss suite registers one that
  // forgets unsynced writes). Empty means SQLite's default.
  std::string sqlite_vfs;
  // Never in production: skip the save's temp-file fsync, or its directory fsync (step 2
  // or 5 of the save protocol, and the directory fsync before resolve() rolls a failed
  // save forward). The power-loss suite runs with each to prove that it notices the loss.
  bool skip_file_fsync = false;
  bool skip_dir_fsync = false;
  // Called with the name of each step of the save and recovery protocols ("temp_synced",
  // "pending_committed", "renamed", ...) so a test can stop the process exactly there.
  // docs/durability.md lists them. An exception it throws leaves the store as a crash at
  // that step would, minus the process exit.
  std::function<void(std::string_view step)> on_step;
};

// A FileSystem that forwards every call to another (FileSystemWrapper) and carries
// TestHooks to the store opened with it. The hooks are read once, when a store opens.
class HookedFileSystem final : public FileSystemWrapper {
 public:
  HookedFileSystem(std::shared_ptr<FileSystem> base, TestHooks hooks)
      : FileSystemWrapper(std::move(base)), hooks_(std::move(hooks)) {}

  const TestHooks& hooks() const noexcept { return hooks_; }
  TestHooks& hooks() noexcept { return hooks_; }

 private:
  TestHooks hooks_;
};

// The hooks a store opened with `options` will run, to set: `test_hooks(options).on_step
// = ...`. Each call gives `options` hooks of its own (it rewraps the file system, keeping
// the hooks set so far), so changing one copy's hooks never changes another's. The
// reference is valid until the next test_hooks() call on the same options.
TestHooks& test_hooks(StoreOptions& options);

// The hooks `fs` carries: its own if it is a HookedFileSystem, else none (all defaults).
const TestHooks& test_hooks_of(const FileSystem* fs);

}  // namespace ckpt::store
