// The file-system seam.
//
// Every file operation of the store (create, write, fsync, rename, unlink, directory
// fsync, listing, locking) goes through a FileSystem, so tests can substitute one that
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

// Held for its lifetime; released by the destructor or when the process dies.
class DirectoryLock {
 public:
  virtual ~DirectoryLock() = default;
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
  // Unlinks a file. Removing a file that does not exist is not an error.
  virtual void remove(const std::filesystem::path& path) = 0;
  // Makes the directory's entries (creations, renames, unlinks) durable.
  virtual void sync_dir(const std::filesystem::path& dir) = 0;
  // Creates the directory and its parents if missing, syncing each new entry's parent.
  virtual void create_directories(const std::filesystem::path& dir) = 0;
  // Names of the directory's regular files (not subdirectories), in no particular order.
  virtual std::vector<std::string> list_files(const std::filesystem::path& dir) = 0;
  // Size of a regular file, or nullopt when there is none at that path.
  virtual std::optional<std::uint64_t> file_size(const std::filesystem::path& path) = 0;
  // Bytes available to this user on the file system holding `dir`.
  virtual std::uint64_t free_space(const std::filesystem::path& dir) = 0;
  // Takes an exclusive advisory lock on `lock_file` (created if missing) without waiting.
  // `holder` (pid and host) is written into the file so that a refused caller can say
  // who holds it. Throws LockedError naming the holder when the lock is taken.
  virtual std::unique_ptr<DirectoryLock> lock_exclusive(const std::filesystem::path& lock_file,
                                                        const std::string& holder) = 0;

  // The operating system's file system. Shared, stateless.
  static std::shared_ptr<FileSystem> posix();
};

}  // namespace ckpt
