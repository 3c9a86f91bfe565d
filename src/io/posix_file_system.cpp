// FileSystem over POSIX calls. Every file-system call retries EINTR (io::retry_on_eintr)
// except close(), which Linux completes even when it reports EINTR (a retry could close
// a descriptor another thread just opened); the directory listing goes through
// std::filesystem, which reports a failed readdir instead. Failures are IoError naming
// the path.
//
// The writer lock is two flocks: on the directory itself, which nothing can unlink while
// it holds files, and on index.lock, which older ckpt versions lock (so the two exclude
// each other) and which names the holder. Lock descriptors are closed in a forked child
// by a pthread_atfork handler: flock belongs to the open file description, which fork
// shares, so a child that outlives its parent's store would otherwise keep the lock.
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <fmt/format.h>

#include "ckpt/errors.hpp"
#include "ckpt/file_system.hpp"
#include "io/os_error.hpp"
#include "log/log.hpp"

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

// Closes a descriptor it owns; never throws.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

class PosixDirectoryLock;

// Whether `fd` is open on the file now at `path` (same device and inode). A path that
// no longer exists (ENOENT, ENOTDIR) is not it; other stat failures throw.
bool is_file_at(int fd, const std::filesystem::path& path) {
  struct stat opened{}, at_path{};
  if (fd < 0 || retry_on_eintr([&] { return ::fstat(fd, &opened); }) != 0) return false;
  if (retry_on_eintr([&] { return ::stat(path.c_str(), &at_path); }) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return false;
    throw_os_error(errno, "stat", path);
  }
  return opened.st_dev == at_path.st_dev && opened.st_ino == at_path.st_ino;
}

// The locks this process holds, for the fork handler. The mutex is held from before a
// lock's descriptors open until they are registered, and while they close, so fork()
// (whose prepare handler takes it) never copies a lock descriptor the child does not
// know to close. Never destroyed: a lock may outlive static destruction.
std::mutex& lock_registry_mutex() {
  static auto* mutex = new std::mutex;
  return *mutex;
}
std::set<PosixDirectoryLock*>& live_locks() {
  static auto* locks = new std::set<PosixDirectoryLock*>;
  return *locks;
}

class PosixDirectoryLock final : public DirectoryLock {
 public:
  // REQUIRES: lock_registry_mutex() held.
  PosixDirectoryLock(UniqueFd dir_fd, UniqueFd file_fd) : dir_fd_(std::move(dir_fd)), file_fd_(std::move(file_fd)) {
    live_locks().insert(this);
  }
  // Closing the last descriptor of an open file description releases its flock.
  ~PosixDirectoryLock() override {
    std::lock_guard<std::mutex> no_fork(lock_registry_mutex());
    live_locks().erase(this);
    file_fd_.reset();
    dir_fd_.reset();
  }

  // The directory descriptor is kept open (flocked or not), so this works also where
  // only the lock file is flocked. In a forked child (descriptors closed): false.
  bool still_locks(const std::filesystem::path& dir) const override { return is_file_at(dir_fd_.get(), dir); }

  // In a forked child: drops the child's references to the locked descriptions. Only
  // close(), never flock(LOCK_UN), which would release the parent's lock too.
  void close_in_child() noexcept {
    file_fd_.reset();
    dir_fd_.reset();
  }

 private:
  UniqueFd dir_fd_;
  UniqueFd file_fd_;
};

void register_fork_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    ::pthread_atfork([] { lock_registry_mutex().lock(); }, [] { lock_registry_mutex().unlock(); },
                     [] {
                       // The set is left as it is (no allocation here): the child's lock
                       // objects, if ever destroyed, erase themselves.
                       for (PosixDirectoryLock* lock : live_locks()) lock->close_in_child();
                       lock_registry_mutex().unlock();
                     });
  });
}

std::string this_host() {
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0) return "unknown-host";
  return buffer;
}

// The pid holding an exclusive flock on the file open as `fd`, from /proc/locks (this
// host's locks only), or 0 when it cannot be found.
long flock_holder_pid(int fd) {
  struct stat st{};
  if (retry_on_eintr([&] { return ::fstat(fd, &st); }) != 0) return 0;
  std::ifstream locks("/proc/locks");
  std::string line;
  long inode_only_match = 0;
  int inode_only_matches = 0;
  while (std::getline(locks, line)) {
    // "1: FLOCK  ADVISORY  WRITE 4242 00:2e:1234567 0 EOF"; waiters have "->" after "1:".
    std::istringstream fields(line);
    std::string number, type, mode, access, device;
    long pid = 0;
    if (!(fields >> number >> type >> mode >> access >> pid >> device)) continue;
    if (type != "FLOCK" || access != "WRITE" || pid <= 0) continue;
    unsigned major_number = 0, minor_number = 0;
    unsigned long inode = 0;
    if (std::sscanf(device.c_str(), "%x:%x:%lu", &major_number, &minor_number, &inode) != 3) continue;
    if (inode != static_cast<unsigned long>(st.st_ino)) continue;
    if (major_number == major(st.st_dev) && minor_number == minor(st.st_dev)) return pid;
    // Some file systems (btrfs subvolumes) report another device number to stat().
    inode_only_match = pid;
    ++inode_only_matches;
  }
  return inode_only_matches == 1 ? inode_only_match : 0;
}

// Who holds the lock, for a refused caller: the holder's line in `lock_file`, else the
// pid the kernel lists for the lock on `locked_fd`.
std::string describe_holder(const std::filesystem::path& lock_file, int locked_fd) {
  std::string text(256, '\0');
  ssize_t got = -1;
  if (int fd = retry_on_eintr([&] { return ::open(lock_file.c_str(), O_RDONLY | O_CLOEXEC); }); fd >= 0) {
    got = retry_on_eintr([&] { return ::pread(fd, text.data(), text.size(), 0); });
    ::close(fd);
  }
  text.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.pop_back();
  if (!text.empty()) return text;
  if (long pid = flock_holder_pid(locked_fd)) {
    return fmt::format("pid {} on {}; {} is missing", pid, this_host(), lock_file.filename().string());
  }
  return "holder unknown";
}

[[noreturn]] void throw_locked(const std::filesystem::path& dir, const std::filesystem::path& lock_file,
                               int locked_fd) {
  throw LockedError(ErrorCode::locked,
                    fmt::format("{}: directory is locked by another checkpoint writer ({})", dir.string(),
                                describe_holder(lock_file, locked_fd)),
                    lock_file);
}

// Opens and flocks `lock_file`, retrying if it was unlinked or replaced between the open
// and the flock (then what is locked is not the file at that path).
UniqueFd lock_holder_file(const std::filesystem::path& dir, const std::filesystem::path& lock_file) {
  for (int attempt = 0;; ++attempt) {
    UniqueFd fd(retry_on_eintr([&] { return ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644); }));
    if (fd.get() < 0) throw_os_error(errno, "open lock file", lock_file);
    if (retry_on_eintr([&] { return ::flock(fd.get(), LOCK_EX | LOCK_NB); }) != 0) {
      if (errno == EWOULDBLOCK) throw_locked(dir, lock_file, fd.get());  // an older ckpt holds it
      throw_os_error(errno, "flock", lock_file);
    }
    struct stat locked{}, at_path{};
    if (retry_on_eintr([&] { return ::fstat(fd.get(), &locked); }) != 0) throw_os_error(errno, "fstat", lock_file);
    if (retry_on_eintr([&] { return ::stat(lock_file.c_str(), &at_path); }) == 0) {
      if (locked.st_dev == at_path.st_dev && locked.st_ino == at_path.st_ino) return fd;
    } else if (errno != ENOENT) {
      throw_os_error(errno, "stat", lock_file);
    }
    if (attempt == 10) throw_os_error(EAGAIN, "lock (the file keeps being replaced)", lock_file);
  }
}

// statfs f_type values (linux/magic.h and the file systems' own headers).
struct KnownFileSystem {
  std::uint32_t magic;
  const char* name;
  bool network;
};
constexpr KnownFileSystem kKnownFileSystems[] = {
    // Shared between hosts: flock and SQLite's shared memory do not reach other hosts,
    // or only as far as the client emulates them.
    {0x6969, "nfs", true},
    {0x517B, "smb", true},
    {0xFF534D42, "cifs", true},
    {0xFE534D42, "smb2", true},
    {0x00C36400, "ceph", true},
    {0x5346414F, "afs", true},  // OpenAFS
    {0x6B414653, "afs", true},  // the kernel's kAFS
    {0x01021997, "9p", true},
    {0x0BD00BD0, "lustre", true},
    {0x47504653, "gpfs", true},
    {0x73757245, "coda", true},
    {0x564C, "ncp", true},
    {0x01161970, "gfs2", true},
    {0x7461636F, "ocfs2", true},
    // FUSE: sshfs, s3fs, gcsfuse and most others are remote, and statfs cannot tell
    // which one this is: not known to be local.
    {0x65735546, "fuse", true},
    {0xEF53, "ext2/3/4", false},
    {0x58465342, "xfs", false},
    {0x9123683E, "btrfs", false},
    {0x2FC12FC1, "zfs", false},
    {0xF2F52010, "f2fs", false},
    {0x01021994, "tmpfs", false},
    {0x858458F6, "ramfs", false},
    {0x794C7630, "overlayfs", false},
    {0x3153464A, "jfs", false},
    {0x52654973, "reiserfs", false},
    {0x4D44, "vfat", false},
    {0x2011BAB0, "exfat", false},
    {0x5346544E, "ntfs", false},
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
    if (retry_on_eintr([&] { return ::rename(from.c_str(), to.c_str()); }) != 0) {
      throw_os_error(errno, fmt::format("rename to {}", to.string()), from);
    }
  }

  void link(const std::filesystem::path& existing, const std::filesystem::path& new_path) override {
    if (retry_on_eintr([&] { return ::link(existing.c_str(), new_path.c_str()); }) != 0) {
      throw_os_error(errno, fmt::format("hard link to {}", existing.string()), new_path);
    }
  }

  void remove(const std::filesystem::path& path) override {
    if (retry_on_eintr([&] { return ::unlink(path.c_str()); }) != 0 && errno != ENOENT) {
      throw_os_error(errno, "unlink", path);
    }
  }

  void sync_dir(const std::filesystem::path& dir) override {
    int fd = retry_on_eintr([&] { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
    if (fd < 0) throw_os_error(errno, "open directory", dir);
    int rc = retry_on_eintr([&] { return ::fsync(fd); });
    int saved = errno;
    ::close(fd);
    if (rc != 0) throw_os_error(saved, "fsync directory", dir);
  }

  void sync_file(const std::filesystem::path& path) override {
    int fd = retry_on_eintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
    if (fd < 0) throw_os_error(errno, "open", path);
    int rc = retry_on_eintr([&] { return ::fsync(fd); });
    int saved = errno;
    ::close(fd);
    if (rc != 0) throw_os_error(saved, "fsync", path);
  }

  std::optional<std::int64_t> modified_ns(const std::filesystem::path& path) override {
    const auto st = regular_file_stat(path);
    if (!st) return std::nullopt;
    return static_cast<std::int64_t>(st->st_mtim.tv_sec) * 1'000'000'000 + st->st_mtim.tv_nsec;
  }

  void create_directories(const std::filesystem::path& dir) override {
    if (dir.empty()) return;
    struct stat st{};
    if (retry_on_eintr([&] { return ::stat(dir.c_str(), &st); }) == 0) {
      if (!S_ISDIR(st.st_mode)) throw_os_error(ENOTDIR, "create directory", dir);
      return;
    }
    std::filesystem::path parent = dir.parent_path();
    if (!parent.empty() && parent != dir) create_directories(parent);
    if (retry_on_eintr([&] { return ::mkdir(dir.c_str(), 0755); }) != 0 && errno != EEXIST) {
      throw_os_error(errno, "create directory", dir);
    }
    // A new directory's entry lives in its parent: sync the parent so that it survives
    // power loss together with the files about to be created inside it.
    sync_dir(parent.empty() ? std::filesystem::path(".") : parent);
  }

  std::vector<std::string> list_files(const std::filesystem::path& dir) override {
    std::vector<std::string> names;
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) throw_os_error(ec.value(), "list directory", dir);
    // increment(ec), not a range-for: a readdir failure past the first entry must leave
    // as IoError naming the directory, not as std::filesystem::filesystem_error.
    for (std::filesystem::directory_iterator end; it != end; it.increment(ec)) {
      std::error_code type_ec;
      if (it->is_regular_file(type_ec)) names.push_back(it->path().filename().string());
    }
    if (ec) throw_os_error(ec.value(), "list directory", dir);
    return names;
  }

  std::optional<std::uint64_t> file_size(const std::filesystem::path& path) override {
    const auto st = regular_file_stat(path);
    if (!st) return std::nullopt;
    return static_cast<std::uint64_t>(st->st_size);
  }

  // stat() of a regular file; nothing if `path` is missing or is not a regular file, and
  // IoError naming it for any other failure.
  static std::optional<struct stat> regular_file_stat(const std::filesystem::path& path) {
    struct stat st{};
    if (retry_on_eintr([&] { return ::stat(path.c_str(), &st); }) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
      throw_os_error(errno, "stat", path);
    }
    if (!S_ISREG(st.st_mode)) return std::nullopt;
    return st;
  }

  std::uint64_t free_space(const std::filesystem::path& dir) override {
    struct statvfs vfs{};
    if (retry_on_eintr([&] { return ::statvfs(dir.c_str(), &vfs); }) != 0) throw_os_error(errno, "statvfs", dir);
    return static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  }

  std::unique_ptr<DirectoryLock> lock_exclusive(const std::filesystem::path& lock_file,
                                                const std::string& holder) override {
    const std::filesystem::path dir = lock_file.has_parent_path() ? lock_file.parent_path() : ".";
    register_fork_handlers();
    std::lock_guard<std::mutex> no_fork(lock_registry_mutex());
    for (int attempt = 0;; ++attempt) {
      UniqueFd dir_fd(retry_on_eintr([&] { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); }));
      if (dir_fd.get() < 0) throw_os_error(errno, "open directory", dir);
      // flock, not fcntl: fcntl locks belong to the process and vanish when any
      // descriptor of the file closes (SQLite's own use of fcntl would interfere); flock
      // belongs to this open file description, so a second store in the same process is
      // refused too.
      if (retry_on_eintr([&] { return ::flock(dir_fd.get(), LOCK_EX | LOCK_NB); }) != 0) {
        const int error = errno;
        if (error == EWOULDBLOCK) throw_locked(dir, lock_file, dir_fd.get());
        // NFS emulates flock with byte-range locks, which need a descriptor open for
        // writing (flock(2)); a directory cannot be opened so. Lock index.lock only.
        if (error != EBADF && error != ENOLCK && error != EOPNOTSUPP) throw_os_error(error, "flock directory", dir);
        if (attempt == 0) {
          log::write(spdlog::level::warn,
                     "{}: the directory cannot be flocked ({}); locking only {}, so deleting it while this writer "
                     "runs would let another writer in",
                     dir.string(), std::strerror(error), lock_file.filename().string());
        }
      }
      UniqueFd file_fd = lock_holder_file(dir, lock_file);
      // Renamed away (and maybe replaced) between the open and the flocks: what is locked
      // is not the directory at that path. Try again with the one there now.
      if (!is_file_at(dir_fd.get(), dir)) {
        if (attempt == 10) throw_os_error(EAGAIN, "lock (the directory keeps being replaced)", dir);
        continue;
      }
      std::string line = holder + "\n";
      if (retry_on_eintr([&] { return ::ftruncate(file_fd.get(), 0); }) != 0 ||
          retry_on_eintr([&] { return ::pwrite(file_fd.get(), line.data(), line.size(), 0); }) < 0) {
        throw_os_error(errno, "write lock file", lock_file);
      }
      return std::make_unique<PosixDirectoryLock>(std::move(dir_fd), std::move(file_fd));
    }
  }

  FileSystemType file_system_type(const std::filesystem::path& dir) override {
    struct statfs st{};
    if (retry_on_eintr([&] { return ::statfs(dir.c_str(), &st); }) != 0) throw_os_error(errno, "statfs", dir);
    // Magic numbers are 32 bits; f_type is a signed long (CIFS's would be negative on
    // 32-bit systems).
    const auto magic = static_cast<std::uint32_t>(st.f_type);
    for (const auto& known : kKnownFileSystems) {
      if (known.magic == magic) return {known.name, known.network};
    }
    return {fmt::format("{:#x}", magic), false};
  }
};

}  // namespace

FileSystemType FileSystem::file_system_type(const std::filesystem::path& dir) { return posix()->file_system_type(dir); }

void FileSystem::sync_file(const std::filesystem::path& path) { posix()->sync_file(path); }
void FileSystem::link(const std::filesystem::path& existing, const std::filesystem::path& new_path) {
  posix()->link(existing, new_path);
}

bool is_link_unsupported(int errno_value) noexcept {
  return errno_value == EPERM || errno_value == EXDEV || errno_value == EMLINK || errno_value == EOPNOTSUPP ||
         errno_value == ENOTSUP || errno_value == ENOSYS;
}
std::optional<std::int64_t> FileSystem::modified_ns(const std::filesystem::path& path) {
  return posix()->modified_ns(path);
}

std::shared_ptr<FileSystem> FileSystem::posix() {
  static const std::shared_ptr<FileSystem> instance = std::make_shared<PosixFileSystem>();
  return instance;
}

}  // namespace ckpt
