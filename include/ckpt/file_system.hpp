// The file-system seam.
//
// Every file operation of the store (create, write, fsync, rename, hard link, unlink,
// directory fsync, listing, locking) goes through a FileSystem, so tests can substitute one that
// fails the n-th operation, stops the process at a chosen point, or forgets unsynced data
// to simulate power loss, without mocking the world. FileSystem::posix() is the real one.
//
// Failures throw ckpt::IoError whose message names the path and the cause; the error
// code distinguishes disk_full (ENOSPC, EDQUOT) and permission_denied (EACCES, EPERM,
// EROFS). Implementations must be safe to use from several threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ckpt {

// A file open for appending. The destructor closes it and never throws; call close()
// to see close errors.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Appends all n bytes or throws.
  virtual void append(const void* data, std::size_t n) = 0;
  // Makes everything appended so far durable (fsync).
  virtual void sync() = 0;
  virtual void close() = 0;
};

class ReadableFile {
 public:
  virtual ~ReadableFile() = default;
  // Reads up to n bytes at the current position; returns 0 at the end of the file.
  virtual std::size_t read(void* buffer, std::size_t n) = 0;
  // Reads up to n bytes at `offset` without moving the position (pread); returns 0 at
  // the end of the file.
  virtual std::size_t read_at(std::uint64_t offset, void* buffer, std::size_t n) = 0;
};

// Held for its lifetime; released by the destructor or when the process dies. A child
// created by fork() does not inherit it (see FileSystem::lock_exclusive).
class DirectoryLock {
 public:
  virtual ~DirectoryLock() = default;
  // Whether the directory at `dir` is still the one this lock locked. False once it was
  // renamed away (and maybe another created at its path, which another writer can
  // lock): a store doing its I/O by path would then write into a directory it does not
  // hold. The POSIX lock compares its directory descriptor (fstat) with stat(dir).
  // Default true, for locks that cannot tell.
  virtual bool still_locks(const std::filesystem::path& dir) const {
    (void)dir;
    return true;
  }
};

// What kind of file system holds a directory (FileSystem::file_system_type).
struct FileSystemType {
  // "ext2/3/4", "xfs", "tmpfs", "nfs", "cifs", "fuse", ...; the statfs magic number in
  // hex ("0x65735546") when it has no name here.
  std::string name;
  // Shared between hosts, or not known to be local (FUSE): the writer lock and SQLite's
  // shared-memory WAL index are only as good as the file system's emulation of them.
  bool network = false;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Creates a new file; fails if it already exists (O_EXCL), so two writers can never
  // share a temp file.
  virtual std::unique_ptr<WritableFile> create_new(const std::filesystem::path& path) = 0;
  virtual std::unique_ptr<ReadableFile> open_for_read(const std::filesystem::path& path) = 0;
  // Atomically replaces `to` (POSIX rename). Durable only after sync_dir of its directory.
  virtual void rename(const std::filesystem::path& from, const std::filesystem::path& to) = 0;
  // Creates `new_path` as a second name of the existing file `existing` (POSIX link(2)):
  // the same bytes, nothing written. Fails if `new_path` exists. Durable only after
  // sync_dir of new_path's directory. Throws IoError naming both paths, with the errno
  // in os_error(): EPERM, EXDEV, EMLINK, EOPNOTSUPP and ENOSYS mean the file system will
  // not link there (is_link_unsupported), and a caller can write a copy instead. The
  // default calls FileSystem::posix()'s (right for a wrapper of the real file system,
  // and FileSystems written before this method existed keep compiling).
  virtual void link(const std::filesystem::path& existing, const std::filesystem::path& new_path);
  // Unlinks a file (one name of it: other hard links keep the bytes). Removing a file
  // that does not exist is not an error.
  virtual void remove(const std::filesystem::path& path) = 0;
  // Makes the directory's entries (creations, renames, unlinks) durable.
  virtual void sync_dir(const std::filesystem::path& dir) = 0;
  // Makes an existing file's bytes durable (fsync), e.g. a file this process did not
  // write, before an index row vouches for it. Its name is durable only after sync_dir.
  // The default calls FileSystem::posix()'s (right for a wrapper of the real file
  // system, and FileSystems written before this method existed keep compiling); one
  // that models durability or injects faults overrides it.
  virtual void sync_file(const std::filesystem::path& path);
  // Creates the directory and its parents if missing, syncing each new entry's parent.
  virtual void create_directories(const std::filesystem::path& dir) = 0;
  // Names of the directory's regular files (not subdirectories), in no particular order.
  virtual std::vector<std::string> list_files(const std::filesystem::path& dir) = 0;
  // When a regular file's content last changed (st_mtim, nanoseconds since the epoch),
  // or nullopt when there is none at that path. A rename keeps it: for a checkpoint it
  // is when its temp file was written. Recovery orders adopted files by it. The default
  // calls FileSystem::posix()'s.
  virtual std::optional<std::int64_t> modified_ns(const std::filesystem::path& path);
  // Size of a regular file, or nullopt when there is none at that path.
  virtual std::optional<std::uint64_t> file_size(const std::filesystem::path& path) = 0;
  // Bytes available to this user on the file system holding `dir`.
  virtual std::uint64_t free_space(const std::filesystem::path& dir) = 0;
  // Takes the exclusive writer lock of the directory holding `lock_file`, without
  // waiting. Throws LockedError naming the holder when another lock holds it (in this
  // process or another).
  // The POSIX implementation flocks the directory itself (a descriptor opened O_RDONLY |
  // O_DIRECTORY), which cannot be unlinked under its holder while the directory holds
  // files, and also flocks `lock_file` (created if missing; checked after locking to be
  // the file still at that path), which older ckpt versions lock. Both are checked after
  // locking to still be at their paths (else it retries). Where the directory cannot be
  // flocked (EBADF, ENOLCK, EOPNOTSUPP: NFS emulates flock with byte-range locks, which
  // need a descriptor open for writing) it locks `lock_file` only, with a warning in the
  // log; deleting `lock_file` under the holder then lets another writer in. `holder` (pid and
  // host) is written into `lock_file` only to name the holder to a refused caller; if
  // the file was deleted, the holder's pid is taken from /proc/locks instead.
  // flock locks belong to the open file description, which fork() shares: a child
  // forked without exec closes its copies at once (pthread_atfork), so it neither keeps
  // the lock after the parent releases it nor is named as its holder.
  virtual std::unique_ptr<DirectoryLock> lock_exclusive(const std::filesystem::path& lock_file,
                                                        const std::string& holder) = 0;
  // The type of the file system holding `dir` (statfs), to refuse network file systems
  // (see StoreOptions::allow_network_file_system). Throws IoError if `dir` is missing.
  // The default asks FileSystem::posix(), right for wrappers over the real file system;
  // a file system of another kind (in memory, remote) must say what it is.
  virtual FileSystemType file_system_type(const std::filesystem::path& dir);

  // The operating system's file system. Shared, stateless.
  static std::shared_ptr<FileSystem> posix();
};

// Whether a failed FileSystem::link's errno means the file system does not link there
// (EPERM, EXDEV, EMLINK, EOPNOTSUPP/ENOTSUP, ENOSYS), as opposed to an I/O error.
bool is_link_unsupported(int errno_value) noexcept;

// A FileSystem that forwards every call to another (as LevelDB's EnvWrapper): the base of a
// decorator that overrides only what it changes (counts, delays, fails, logs). Thread-safe
// as the FileSystem it wraps.
class FileSystemWrapper : public FileSystem {
 public:
  explicit FileSystemWrapper(std::shared_ptr<FileSystem> target = FileSystem::posix())
      : target_(target ? std::move(target) : FileSystem::posix()) {}

  std::unique_ptr<WritableFile> create_new(const std::filesystem::path& path) override {
    return target_->create_new(path);
  }
  std::unique_ptr<ReadableFile> open_for_read(const std::filesystem::path& path) override {
    return target_->open_for_read(path);
  }
  void rename(const std::filesystem::path& from, const std::filesystem::path& to) override { target_->rename(from, to); }
  void link(const std::filesystem::path& existing, const std::filesystem::path& new_path) override {
    target_->link(existing, new_path);
  }
  void remove(const std::filesystem::path& path) override { target_->remove(path); }
  void sync_dir(const std::filesystem::path& dir) override { target_->sync_dir(dir); }
  void sync_file(const std::filesystem::path& path) override { target_->sync_file(path); }
  void create_directories(const std::filesystem::path& dir) override { target_->create_directories(dir); }
  std::vector<std::string> list_files(const std::filesystem::path& dir) override { return target_->list_files(dir); }
  std::optional<std::int64_t> modified_ns(const std::filesystem::path& path) override {
    return target_->modified_ns(path);
  }
  std::optional<std::uint64_t> file_size(const std::filesystem::path& path) override {
    return target_->file_size(path);
  }
  std::uint64_t free_space(const std::filesystem::path& dir) override { return target_->free_space(dir); }
  std::unique_ptr<DirectoryLock> lock_exclusive(const std::filesystem::path& lock_file,
                                                const std::string& holder) override {
    return target_->lock_exclusive(lock_file, holder);
  }
  FileSystemType file_system_type(const std::filesystem::path& dir) override {
    return target_->file_system_type(dir);
  }

  // The FileSystem the calls go to.
  const std::shared_ptr<FileSystem>& target() const noexcept { return target_; }

 private:
  std::shared_ptr<FileSystem> target_;
};

}  // namespace ckpt
