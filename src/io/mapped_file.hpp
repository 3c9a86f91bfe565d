// A read-only view of a whole file through mmap, for zero-copy loads: tensors point into
// the mapping and keep it alive (shared_ptr) as long as any of them exists.
//
// The mapping is private and copy-on-write: writing to a mapped tensor changes only this
// process's copy, never the checkpoint file. If the file is truncated by someone else
// while mapped, touching the lost pages raises SIGBUS: the store never truncates
// committed files, it replaces them by rename, which leaves the mapping intact.
#pragma once

#include <filesystem>
#include <memory>

#include "ckpt/payload_io.hpp"

namespace ckpt::io {

class MappedFile final : public PayloadSource, public std::enable_shared_from_this<MappedFile> {
 public:
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  ~MappedFile() override;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::uint64_t size() const override { return size_; }
  void read_at(std::uint64_t offset, void* buffer, std::size_t n) override;
  // The mapped bytes (nullptr for an empty file). Writable copy-on-write pages.
  char* data() const noexcept { return data_; }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  MappedFile(std::filesystem::path path, char* data, std::uint64_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::filesystem::path path_;
  char* data_;
  std::uint64_t size_;
};

}  // namespace ckpt::io
