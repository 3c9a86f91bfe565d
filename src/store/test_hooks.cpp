#include "store/test_hooks.hpp"

#include <utility>

namespace ckpt::store {

HookedFileSystem::HookedFileSystem(std::shared_ptr<FileSystem> base, TestHooks hooks)
    : base_(base ? std::move(base) : FileSystem::posix()), hooks_(std::move(hooks)) {}

std::unique_ptr<WritableFile> HookedFileSystem::create_new(const std::filesystem::path& path) {
  return base_->create_new(path);
}
std::unique_ptr<ReadableFile> HookedFileSystem::open_for_read(const std::filesystem::path& path) {
  return base_->open_for_read(path);
}
void HookedFileSystem::rename(const std::filesystem::path& from, const std::filesystem::path& to) {
  base_->rename(from, to);
}
void HookedFileSystem::remove(const std::filesystem::path& path) { base_->remove(path); }
void HookedFileSystem::sync_dir(const std::filesystem::path& dir) { base_->sync_dir(dir); }
void HookedFileSystem::sync_file(const std::filesystem::path& path) { base_->sync_file(path); }
void HookedFileSystem::create_directories(const std::filesystem::path& dir) { base_->create_directories(dir); }
std::vector<std::string> HookedFileSystem::list_files(const std::filesystem::path& dir) {
  return base_->list_files(dir);
}
std::optional<std::int64_t> HookedFileSystem::modified_ns(const std::filesystem::path& path) {
  return base_->modified_ns(path);
}
std::optional<std::uint64_t> HookedFileSystem::file_size(const std::filesystem::path& path) {
  return base_->file_size(path);
}
std::uint64_t HookedFileSystem::free_space(const std::filesystem::path& dir) { return base_->free_space(dir); }
std::unique_ptr<DirectoryLock> HookedFileSystem::lock_exclusive(const std::filesystem::path& lock_file,
                                                                const std::string& holder) {
  return base_->lock_exclusive(lock_file, holder);
}
FileSystemType HookedFileSystem::file_system_type(const std::filesystem::path& dir) {
  return base_->file_system_type(dir);
}

TestHooks& test_hooks(StoreOptions& options) {
  auto* hooked = dynamic_cast<HookedFileSystem*>(options.file_system.get());
  // A fresh wrapper each time: another copy of these options may share the old one.
  auto fresh = hooked ? std::make_shared<HookedFileSystem>(hooked->base(), hooked->hooks())
                      : std::make_shared<HookedFileSystem>(options.file_system, TestHooks{});
  options.file_system = fresh;
  return fresh->hooks();
}

const TestHooks& test_hooks_of(const FileSystem* fs) {
  static const TestHooks kNone;
  if (const auto* hooked = dynamic_cast<const HookedFileSystem*>(fs)) return hooked->hooks();
  return kNone;
}

}  // namespace ckpt::store
