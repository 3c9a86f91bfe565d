// The temp file a save writes before renaming it over the final name.
//
// Small writes are buffered; large ones go straight to the file. The destructor removes
// the file unless release() was called (after a successful rename), so an abandoned save
// leaves no temp file behind in a running process; a killed process leaves it for
// recovery to remove. Not thread-safe. Where the temp file is, and what it is called,
// is the caller's choice (store/file_names.hpp names the store's).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "ckpt/file_system.hpp"
#include "ckpt/payload_io.hpp"
#include "io/file_hash.hpp"
#include "io/hasher.hpp"

namespace ckpt::io {

class TempFile final : public ByteSink {
 public:
  // Creates `path`, which must not exist (FileSystem::create_new). Throws IoError.
  TempFile(FileSystem& fs, std::filesystem::path path);
  ~TempFile() override;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, std::size_t n) override;
  // Hands what is buffered to the file system (unsynced); returns the bytes written so far.
  std::uint64_t flush();
  // Flushes, fsyncs (unless `sync` is false: tests only) and closes the file; returns
  // the number of bytes written. Throws IoError; the destructor then still removes it.
  std::uint64_t sync_and_close(bool sync = true);
  // The file has been renamed away: the destructor must not remove anything.
  void release() noexcept { released_ = true; }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  void flush_buffer();

  FileSystem& fs_;
  std::filesystem::path path_;
  std::unique_ptr<WritableFile> file_;
  std::vector<char> buffer_;
  std::uint64_t size_ = 0;
  bool released_ = false;
};

// A TempFile that hashes what is written to it in the same pass, so the store records
// the payload's hash without reading the file back.
class HashingTempFile final : public ByteSink {
 public:
  HashingTempFile(FileSystem& fs, std::filesystem::path path, HashAlgorithm algorithm)
      : file_(fs, std::move(path)), hasher_(Hasher::create(algorithm)) {}

  void write(const void* data, std::size_t n) override {
    hasher_->update(data, n);
    file_.write(data, n);
  }
  // The size and hash of everything written, with nothing synced yet: what a save
  // compares with committed checkpoints before it pays for the fsync. Call once, after
  // the last write.
  FileDigest finish() {
    digest_ = FileDigest{file_.flush(), hasher_->hex_digest()};
    return digest_;
  }
  // TempFile::sync_and_close, returning the size and hash of what was written.
  FileDigest sync_and_close(bool sync = true) {
    if (digest_.hash.empty()) (void)finish();
    file_.sync_and_close(sync);
    return digest_;
  }
  void release() noexcept { file_.release(); }
  const std::filesystem::path& path() const noexcept { return file_.path(); }

 private:
  TempFile file_;
  std::unique_ptr<Hasher> hasher_;
  FileDigest digest_;
};

// A sink that only hashes: the digest a payload would have, with nothing written.
class HashingSink final : public ByteSink {
 public:
  explicit HashingSink(HashAlgorithm algorithm) : hasher_(Hasher::create(algorithm)) {}
  void write(const void* data, std::size_t n) override {
    hasher_->update(data, n);
    size_ += n;
  }
  // Call once, after the last write.
  FileDigest finish() { return FileDigest{size_, hasher_->hex_digest()}; }

 private:
  std::unique_ptr<Hasher> hasher_;
  std::uint64_t size_ = 0;
};

// A second name the caller made for a file (FileSystem::link), removed by the destructor
// unless release() was called (after it was renamed away), as TempFile's.
class TempName {
 public:
  TempName(FileSystem& fs, std::filesystem::path path) : fs_(fs), path_(std::move(path)) {}
  ~TempName();
  TempName(const TempName&) = delete;
  TempName& operator=(const TempName&) = delete;
  void release() noexcept { released_ = true; }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  FileSystem& fs_;
  std::filesystem::path path_;
  bool released_ = false;
};

}  // namespace ckpt::io
