// The base of the tests' file systems: every operation goes to the real one
// (FileSystem::posix()); a subclass overrides only what it fails, records or reports.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/file_system.hpp"

namespace ckpt::test {

class ForwardingFileSystem : public FileSystem {
 public:
  std::unique_ptr<WritableFile> create_new(const std::filesystem::path& path) override { return real_->create_new(path); }
  std::unique_ptr<ReadableFile> open_for_read(const std::filesystem::path& path) override {
    return real_->open_for_read(path);
  }
  void rename(const std::filesystem::path& from, const std::filesystem::path& to) override { real_->rename(from, to); }
  void remove(const std::filesystem::path& path) override { real_->remove(path); }
  void sync_dir(const std::filesystem::path& dir) override { real_->sync_dir(dir); }
  void sync_file(const std::filesystem::path& path) override { real_->sync_file(path); }
  void create_directories(const std::filesystem::path& dir) override { real_->create_directories(dir); }
  std::vector<std::string> list_files(const std::filesystem::path& dir) override { return real_->list_files(dir); }
  std::optional<std::uint64_t> file_size(const std::filesystem::path& path) override { return real_->file_size(path); }
  std::uint64_t free_space(const std::filesystem::path& dir) override { return real_->free_space(dir); }
  std::unique_ptr<DirectoryLock> lock_exclusive(const std::filesystem::path& lock_file,
                                                const std::string& holder) override {
    return real_->lock_exclusive(lock_file, holder);
  }
  FileSystemType file_system_type(const std::filesystem::path& dir) override { return real_->file_system_type(dir); }

 protected:
  std::shared_ptr<FileSystem> real_ = FileSystem::posix();
};

}  // namespace ckpt::test
