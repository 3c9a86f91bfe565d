// A FileSystem for tests: the real one underneath, with faults on demand. It fails the
// n-th operation of a kind with an errno (ENOSPC, EIO, EACCES), or reports a chosen amount
// of free space, so disk-full and I/O-error paths run for real through the store.
#pragma once

#include <array>
#include <memory>
#include <optional>

#include "ckpt/file_system.hpp"

namespace ckpt::test {

enum class Op { create, write, sync, rename, link, remove, sync_dir, read, count_ };

class FaultFileSystem final : public FileSystemWrapper {
 public:

  // The n-th (1-based, counted from now) operation of `op` fails with `error`.
  void fail_nth(Op op, int n, int error) {
    auto& fault = faults_[static_cast<int>(op)];
    fault.countdown = n;
    fault.error = error;
    fault.after = false;
  }
  // The same, but the operation is carried out before the error is reported (a rename
  // that happened although rename() failed, as after an I/O error on some file systems).
  void fail_nth_after_doing(Op op, int n, int error) {
    fail_nth(op, n, error);
    faults_[static_cast<int>(op)].after = true;
  }
  void clear_faults() { faults_ = {}; }
  void set_free_space(std::optional<std::uint64_t> bytes) { free_space_ = bytes; }
  int count(Op op) const { return counts_[static_cast<int>(op)]; }

  std::unique_ptr<WritableFile> create_new(const std::filesystem::path& path) override;
  std::unique_ptr<ReadableFile> open_for_read(const std::filesystem::path& path) override;
  void rename(const std::filesystem::path& from, const std::filesystem::path& to) override;
  void link(const std::filesystem::path& existing, const std::filesystem::path& new_path) override;
  void remove(const std::filesystem::path& path) override;
  void sync_dir(const std::filesystem::path& dir) override;
  void sync_file(const std::filesystem::path& path) override;  // counted and failed as Op::sync
  std::uint64_t free_space(const std::filesystem::path& dir) override {
    return free_space_ ? *free_space_ : target()->free_space(dir);
  }

  // Counts the operation and throws the injected error when its turn has come.
  void before(Op op, const std::filesystem::path& path);

 private:
  struct Fault {
    int countdown = 0;
    int error = 0;
    bool after = false;
  };
  // Runs `operation` around the fault check of `op`: before it, or after it when so set.
  template <typename Fn>
  void around(Op op, const std::filesystem::path& path, Fn&& operation) {
    if (faults_[static_cast<int>(op)].after) {
      operation();
      before(op, path);
    } else {
      before(op, path);
      operation();
    }
  }
  std::array<Fault, static_cast<int>(Op::count_)> faults_{};
  std::array<int, static_cast<int>(Op::count_)> counts_{};
  std::optional<std::uint64_t> free_space_;
};

}  // namespace ckpt::test
