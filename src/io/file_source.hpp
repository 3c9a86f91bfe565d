// PayloadSource over a file, optionally hashing the whole file in the same pass as the
// decoder's reads.
//
// Decoders read a zip archive mostly front to back (headers, data.pkl, storages in file
// order) after a look at its end (the central directory). The hash must cover every
// byte in order, so reads that continue where hashing stopped (or start a small gap
// after it, which is read and hashed first) extend the hash; reads further ahead are
// served unhashed; finish() hashes whatever was not covered. An eager load thus reads
// the file once plus its small metadata twice.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "ckpt/file_system.hpp"
#include "ckpt/payload_io.hpp"
#include "io/hasher.hpp"

namespace ckpt::io {

// Throws FormatError naming `path` unless [offset, offset + n) lies inside a file of
// `size` bytes (overflow-safe).
void check_read_range(const std::filesystem::path& path, std::uint64_t offset, std::size_t n, std::uint64_t size);

class FileSource final : public PayloadSource {
 public:
  // `hasher` may be null (no hashing).
  FileSource(FileSystem& fs, std::filesystem::path path, std::unique_ptr<Hasher> hasher = nullptr);

  std::uint64_t size() const override { return size_; }
  void read_at(std::uint64_t offset, void* buffer, std::size_t n) override;
  // Hashes the bytes not yet hashed and returns the digest. REQUIRES: a hasher.
  std::string finish();
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  void read_exactly(std::uint64_t offset, void* buffer, std::size_t n);
  void hash_up_to(std::uint64_t end);

  std::filesystem::path path_;
  std::unique_ptr<ReadableFile> file_;
  std::unique_ptr<Hasher> hasher_;
  std::uint64_t size_ = 0;
  std::uint64_t hashed_until_ = 0;
};

}  // namespace ckpt::io
