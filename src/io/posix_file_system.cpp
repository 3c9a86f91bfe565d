// FileSystem over POSIX calls. Every call retries EINTR and reports failures as
// IoError naming the path.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <fmt/format.h>

#include "ckpt/errors.hpp"
#include "ckpt/file_system.hpp"
#include "io/os_error.hpp"

namespace ckpt {
namespace io {

void throw_os_error(int errno_value, std::string_view operation, const std::filesystem::path& path) {
  ErrorCode code = ErrorCode::io;
  if (errno_value == ENOSPC || errno_value == EDQUOT) code = ErrorCode::disk_full;
  if (errno_value == EACCES || errno_value == EPERM || errno_value == EROFS) code = ErrorCode::permission_denied;
  throw IoError(code, fmt::format("{}: {} failed: {}", path.string(), operation, std::strerror(errno_value)),
                path, errno_value);
}

}  // namespace io

namespace {

using io::retry_on_eintr;
using io::throw_os_error;

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void append(const void* data, std::size_t n) override {
    auto* bytes = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t written = retry_on_eintr([&] { return ::write(fd_, bytes, n); });
      if (written < 0) throw_os_error(errno, "write", path_);
      bytes += written;
      n -= static_cast<std::size_t>(written);
    }
  }

  void sync() override {
    if (retry_on_eintr([&] { return ::fsync(fd_); }) != 0) throw_os_error(errno, "fsync", path_);
  }

  void close() override {
    int fd = fd_;
    fd_ = -1;
    // No retry: after EINTR the descriptor state is unspecified on Linux and it is closed.
    if (fd >= 0 && ::close(fd) != 0 && errno != EINTR) throw_os_error(errno, "close", path_);
  }

 private:
  int fd_;
  std::filesystem::path path_;
};

class PosixReadableFile final : public ReadableFile {
 public:
  PosixReadableFile(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  ~PosixReadableFile() override { ::close(fd_); }

  std::size_t read(void* buffer, std::size_t n) override {
    ssize_t got = retry_on_eintr([&] { return ::read(fd_, buffer, n); });
    if (got < 0) throw_os_error(errno, "read", path_);
    return static_cast<std::size_t>(got);
  }

  std::size_t read_at(std::uint64_t offset, void* buffer, std::size_t n) override {
    ssize_t got = retry_on_eintr([&] { return ::pread(fd_, buffer, n, static_cast<off_t>(offset)); });
    if (got < 0) throw_os_error(errno, "read", path_);
    return static_cast<std::size_t>(got);
  }

 private:
  int fd_;
  std::filesystem::path path_;
};

class PosixDirectoryLock final : public DirectoryLock {
 public:
  explicit PosixDirectoryLock(int fd) : fd_(fd) {}
  ~PosixDirectoryLock() override { ::close(fd_); }  // closing the descriptor releases flock

 private:
  int fd_;
};

class PosixFileSystem final : public FileSystem {
 public:
  std::unique_ptr<WritableFile> create_new(const std::filesystem::path& path) override {
    int fd = retry_on_eintr([&] { return ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644); });
    if (fd < 0) throw_os_error(errno, "create", path);
    return std::make_unique<PosixWritableFile>(fd, path);
  }

  std::unique_ptr<ReadableFile> open_for_read(const std::filesystem::path& path) override {
    int fd = retry_on_eintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
    if (fd < 0) throw_os_error(errno, "open", path);
    return std::make_unique<PosixReadableFile>(fd, path);
  }

  void rename(const std::filesystem::path& from, const std::filesystem::path& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) throw_os_error(errno, fmt::format("rename to {}", to.string()), from);
  }

  void remove(const std::filesystem::path& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_os_error(errno, "unlink", path);
  }

  void sync_dir(const std::filesystem::path& dir) override {
    int fd = retry_on_eintr([&] { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
    if (fd < 0) throw_os_error(errno, "open directory", dir);
    int rc = retry_on_eintr([&] { return ::fsync(fd); });
    int saved = errno;
    ::close(fd);
    if (rc != 0) throw_os_error(saved, "fsync directory", dir);
  }

  void create_directories(const std::filesystem::path& dir) override {
    if (dir.empty()) return;
    struct stat st{};
    if (::stat(dir.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) throw_os_error(ENOTDIR, "create directory", dir);
      return;
    }
    std::filesystem::path parent = dir.parent_path();
    if (!parent.empty() && parent != dir) create_directories(parent);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) throw_os_error(errno, "create directory", dir);
    // A new directory's entry lives in its parent: sync the parent so that it survives
    // power loss together with the files about to be created inside it.
    sync_dir(parent.empty() ? std::filesystem::path(".") : parent);
  }

  std::vector<std::string> list_files(const std::filesystem::path& dir) override {
    std::vector<std::string> names;
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) throw_os_error(ec.value(), "list directory", dir);
    for (const auto& entry : it) {
      std::error_code type_ec;
      if (entry.is_regular_file(type_ec)) names.push_back(entry.path().filename().string());
    }
    return names;
  }

  std::optional<std::uint64_t> file_size(const std::filesystem::path& path) override {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
      throw_os_error(errno, "stat", path);
    }
    if (!S_ISREG(st.st_mode)) return std::nullopt;
    return static_cast<std::uint64_t>(st.st_size);
  }

  std::uint64_t free_space(const std::filesystem::path& dir) override {
    struct statvfs vfs{};
    if (::statvfs(dir.c_str(), &vfs) != 0) throw_os_error(errno, "statvfs", dir);
    return static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }

  std::unique_ptr<DirectoryLock> lock_exclusive(const std::filesystem::path& lock_file,
                                                const std::string& holder) override {
    int fd = retry_on_eintr([&] { return ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644); });
    if (fd < 0) throw_os_error(errno, "open lock file", lock_file);
    // flock, not fcntl: fcntl locks belong to the process and vanish when any descriptor
    // of the file closes (SQLite's own use of fcntl would interfere); flock belongs to
    // this open file description, so a second manager in the same process is refused too.
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int saved = errno;
      std::string current(256, '\0');
      ssize_t got = ::pread(fd, current.data(), current.size(), 0);
      ::close(fd);
      current.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
      while (!current.empty() && (current.back() == '\n' || current.back() == '\0')) current.pop_back();
      if (saved == EWOULDBLOCK) {
        throw LockedError(ErrorCode::locked,
                          fmt::format("{}: directory is locked by another checkpoint writer ({})",
                                      lock_file.parent_path().string(), current.empty() ? "holder unknown" : current),
                          lock_file);
      }
      throw_os_error(saved, "flock", lock_file);
    }
    std::string line = holder + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, line.data(), line.size(), 0) < 0) {
      int saved = errno;
      ::close(fd);
      throw_os_error(saved, "write lock file", lock_file);
    }
    return std::make_unique<PosixDirectoryLock>(fd);
  }
};

}  // namespace

std::shared_ptr<FileSystem> FileSystem::posix() {
  static const std::shared_ptr<FileSystem> instance = std::make_shared<PosixFileSystem>();
  return instance;
}

}  // namespace ckpt
