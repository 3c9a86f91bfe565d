// Writing and reading whole payload files while hashing them in the same pass.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/file_system.hpp"
#include "ckpt/store.hpp"
#include "io/hasher.hpp"

namespace ckpt::io {

struct FileDigest {
  std::uint64_t size = 0;
  std::string hash;
};

// A new temp file that hashes what is written to it. Small writes are buffered; large
// ones go straight to the file. The destructor removes the file unless release() was
// called (after a successful rename), so an abandoned save leaves no temp file behind
// in a running process; a killed process leaves it for recovery to remove.
class HashingTempFile final : public ByteSink {
 public:
  HashingTempFile(FileSystem& fs, std::filesystem::path path, HashAlgorithm algorithm);
  ~HashingTempFile() override;

  void write(const void* data, std::size_t n) override;
  // Flushes, fsyncs (unless `sync` is false: tests only) and closes the file; returns
  // its size and hash.
  FileDigest sync_and_close(bool sync = true);
  // The file has been renamed away: the destructor must not remove anything.
  void release() noexcept { released_ = true; }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  void flush_buffer();

  FileSystem& fs_;
  std::filesystem::path path_;
  std::unique_ptr<WritableFile> file_;
  std::unique_ptr<Hasher> hasher_;
  std::vector<char> buffer_;
  std::uint64_t size_ = 0;
  bool released_ = false;
};

// Reads a whole file, hashing it in the same pass when a hasher is given.
std::vector<char> read_whole_file(FileSystem& fs, const std::filesystem::path& path, Hasher* hasher = nullptr);

// Hashes a file without keeping its bytes.
FileDigest hash_file(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm);

}  // namespace ckpt::io

namespace ckpt::io {

// The write-temp, fsync, rename, fsync-directory sequence for one file outside an index
// (ckpt::save_file). The temp file sits beside `path` so the rename stays in one file
// system. On failure the previous file at `path` is untouched and the temp file removed.
FileDigest write_file_atomically(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm,
                                 const PayloadWriter& write_payload);

}  // namespace ckpt::io
