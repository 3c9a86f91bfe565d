#include "io/file_source.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <vector>

#include "ckpt/errors.hpp"

namespace ckpt::io {

namespace {
// A gap this small between the hashed prefix and a read (zip headers, padding) is read
// and hashed first rather than left to finish().
constexpr std::uint64_t kMaxGap = 64 << 10;
constexpr std::size_t kChunk = 4 << 20;
}  // namespace

void check_read_range(const std::filesystem::path& path, std::uint64_t offset, std::size_t n, std::uint64_t size) {
  if (offset > size || n > size - offset) {
    throw FormatError(ErrorCode::format,
                      fmt::format("{}: {} bytes at offset {} lie beyond the end of the file ({} bytes)", path.string(),
                                  n, offset, size),
                      path);
  }
}

FileSource::FileSource(FileSystem& fs, std::filesystem::path path, std::unique_ptr<Hasher> hasher)
    : path_(std::move(path)), file_(fs.open_for_read(path_)), hasher_(std::move(hasher)) {
  auto size = fs.file_size(path_);
  if (!size) throw IoError(ErrorCode::io, fmt::format("{}: not a regular file", path_.string()), path_);
  size_ = *size;
}

void FileSource::read_exactly(std::uint64_t offset, void* buffer, std::size_t n) {
  auto* out = static_cast<char*>(buffer);
  while (n > 0) {
    std::size_t got = file_->read_at(offset, out, n);
    if (got == 0) {
      throw FormatError(ErrorCode::format,
                        fmt::format("{}: file ended at byte {} while {} more were expected (truncated while reading?)",
                                    path_.string(), offset, n),
                        path_);
    }
    offset += got;
    out += got;
    n -= got;
  }
}

void FileSource::hash_up_to(std::uint64_t end) {
  std::vector<char> scratch(static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, end - hashed_until_)));
  while (hashed_until_ < end) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(scratch.size(), end - hashed_until_));
    read_exactly(hashed_until_, scratch.data(), n);
    hasher_->update(scratch.data(), n);
    hashed_until_ += n;
  }
}

void FileSource::read_at(std::uint64_t offset, void* buffer, std::size_t n) {
  check_read_range(path_, offset, n, size_);
  if (hasher_ && offset > hashed_until_ && offset - hashed_until_ <= kMaxGap) hash_up_to(offset);
  auto* out = static_cast<char*>(buffer);
  // Large reads go in chunks so each is hashed while still in cache.
  for (std::size_t done = 0; done < n;) {
    std::size_t chunk = std::min(kChunk, n - done);
    std::uint64_t at = offset + done;
    read_exactly(at, out + done, chunk);
    if (hasher_ && at <= hashed_until_ && at + chunk > hashed_until_) {
      std::uint64_t skip = hashed_until_ - at;
      hasher_->update(out + done + skip, chunk - skip);
      hashed_until_ = at + chunk;
    }
    done += chunk;
  }
}

std::string FileSource::finish() {
  hash_up_to(size_);
  return hasher_->hex_digest();
}

}  // namespace ckpt::io
