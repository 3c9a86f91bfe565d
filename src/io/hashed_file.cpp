#include "io/hashed_file.hpp"

#include "store/file_names.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>

namespace ckpt::io {

namespace {
// Large enough that a small state costs one write() call; writes at least this big
// bypass the buffer so tensor data is not copied.
constexpr std::size_t kBufferSize = 1 << 20;
constexpr std::size_t kReadChunk = 4 << 20;
}  // namespace

HashingTempFile::HashingTempFile(FileSystem& fs, std::filesystem::path path, HashAlgorithm algorithm)
    : fs_(fs), path_(std::move(path)), file_(fs.create_new(path_)), hasher_(Hasher::create(algorithm)) {
  buffer_.reserve(kBufferSize);
}

HashingTempFile::~HashingTempFile() {
  if (released_) return;
  file_.reset();
  try {
    fs_.remove(path_);
  } catch (...) {
    // Destructors never throw; recovery removes leftover temp files on the next open.
  }
}

void HashingTempFile::write(const void* data, std::size_t n) {
  hasher_->update(data, n);
  size_ += n;
  if (buffer_.size() + n <= kBufferSize) {
    auto* bytes = static_cast<const char*>(data);
    buffer_.insert(buffer_.end(), bytes, bytes + n);
    return;
  }
  flush_buffer();
  if (n >= kBufferSize) {
    file_->append(data, n);
  } else {
    auto* bytes = static_cast<const char*>(data);
    buffer_.insert(buffer_.end(), bytes, bytes + n);
  }
}

void HashingTempFile::flush_buffer() {
  if (buffer_.empty()) return;
  file_->append(buffer_.data(), buffer_.size());
  buffer_.clear();
}

FileDigest HashingTempFile::sync_and_close(bool sync) {
  flush_buffer();
  if (sync) file_->sync();
  file_->close();
  return FileDigest{size_, hasher_->hex_digest()};
}

std::vector<char> read_whole_file(FileSystem& fs, const std::filesystem::path& path, Hasher* hasher) {
  auto file = fs.open_for_read(path);
  // Sized from stat so that a file read whole needs one allocation; a file that grows
  // while being read still reads completely (and then fails its hash check).
  std::vector<char> bytes(fs.file_size(path).value_or(0));
  std::size_t used = 0;
  for (;;) {
    if (used == bytes.size()) bytes.resize(bytes.size() + kReadChunk);
    std::size_t got = file->read(bytes.data() + used, std::min(bytes.size() - used, kReadChunk));
    if (got == 0) break;
    if (hasher) hasher->update(bytes.data() + used, got);
    used += got;
  }
  bytes.resize(used);
  return bytes;
}

FileDigest hash_file(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm) {
  auto hasher = Hasher::create(algorithm);
  auto file = fs.open_for_read(path);
  std::vector<char> chunk(kReadChunk);
  FileDigest digest;
  for (;;) {
    std::size_t got = file->read(chunk.data(), chunk.size());
    if (got == 0) break;
    hasher->update(chunk.data(), got);
    digest.size += got;
  }
  digest.hash = hasher->hex_digest();
  return digest;
}

}  // namespace ckpt::io

namespace ckpt::io {

FileDigest write_file_atomically(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm,
                                 const PayloadWriter& write_payload) {
  static std::atomic<std::uint64_t> sequence{0};
  std::filesystem::path dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  std::filesystem::path temp_path =
      dir / names::temp_file(path.filename().string(), ::getpid(), ++sequence);
  HashingTempFile temp(fs, temp_path, algorithm);
  write_payload(temp);
  FileDigest digest = temp.sync_and_close();
  fs.rename(temp_path, path);
  temp.release();
  fs.sync_dir(dir);
  return digest;
}

}  // namespace ckpt::io
