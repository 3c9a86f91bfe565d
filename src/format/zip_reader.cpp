#include "format/zip_reader.hpp"

#include <libdeflate.h>

#include <algorithm>

#include "format/format_error.hpp"

namespace ckpt::format {

namespace {

constexpr std::uint64_t kEocdSize = 22;
constexpr std::uint64_t kMaxComment = 0xffff;
constexpr std::uint64_t kCentralEntrySize = 46;

std::uint64_t le(const unsigned char* p, int width) {
  std::uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return v;
}

// A bounds-checked cursor over a buffer read from the file.
class Cursor {
 public:
  Cursor(const std::string& buffer, std::size_t pos, const char* what) : buffer_(buffer), pos_(pos), what_(what) {}
  std::uint64_t take(int width) {
    need(width);
    std::uint64_t v = le(reinterpret_cast<const unsigned char*>(buffer_.data()) + pos_, width);
    pos_ += width;
    return v;
  }
  std::string_view bytes(std::uint64_t n) {
    need(n);
    std::string_view view(buffer_.data() + pos_, n);
    pos_ += n;
    return view;
  }
  std::size_t pos() const { return pos_; }

 private:
  void need(std::uint64_t n) {
    if (n > buffer_.size() - pos_) fail("zip: {} is truncated", what_);
  }
  const std::string& buffer_;
  std::size_t pos_;
  const char* what_;
};

std::string read(PayloadSource& source, std::uint64_t offset, std::uint64_t n) {
  if (offset > source.size() || n > source.size() - offset) {
    fail("zip: {} bytes at offset {} lie beyond the end of the file ({} bytes)", n, offset, source.size());
  }
  std::string buffer(n, '\0');
  source.read_at(offset, buffer.data(), n);
  return buffer;
}

bool safe_name(std::string_view name) {
  if (name.empty() || name.front() == '/' || name.find('\\') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos) {
    return false;
  }
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t end = name.find('/', start);
    std::string_view part = name.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (part == ".." || part == ".") return false;
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return true;
}

}  // namespace

std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n) { return libdeflate_crc32(crc, data, n); }

bool looks_like_zip(PayloadSource& source) {
  if (source.size() < 4) return false;
  unsigned char magic[4];
  source.read_at(0, magic, 4);
  return le(magic, 4) == 0x04034b50;
}

ZipReader::ZipReader(PayloadSource& source) : source_(source) {
  const std::uint64_t file_size = source.size();
  if (file_size < kEocdSize) fail("zip: file of {} bytes is too short for an archive", file_size);
  const std::uint64_t tail_size = std::min(file_size, kEocdSize + kMaxComment);
  const std::string tail = read(source, file_size - tail_size, tail_size);
  const auto* t = reinterpret_cast<const unsigned char*>(tail.data());

  std::size_t eocd = std::string::npos;
  for (std::size_t pos = tail.size() - kEocdSize + 1; pos-- > 0;) {
    if (le(t + pos, 4) == 0x06054b50 && pos + kEocdSize + le(t + pos + 20, 2) == tail.size()) {
      eocd = pos;
      break;
    }
  }
  if (eocd == std::string::npos) fail("zip: no end-of-central-directory record (truncated file?)");
  const std::uint64_t eocd_offset = file_size - tail.size() + eocd;
  std::uint64_t count = le(t + eocd + 10, 2);
  std::uint64_t cd_size = le(t + eocd + 12, 4);
  std::uint64_t cd_offset = le(t + eocd + 16, 4);
  std::uint64_t cd_end = eocd_offset;
  const bool needs_zip64 = count == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu;
  // PyTorch's writer (miniz) may add the ZIP64 end records even when no field needs
  // them; either way they sit between the central directory and the classic end record.
  const bool has_locator = eocd >= 20 && le(t + eocd - 20, 4) == 0x07064b50;
  if (needs_zip64 && !has_locator) fail("zip: ZIP64 archive without its locator");
  if (has_locator) {
    const std::uint64_t record_offset = le(t + eocd - 20 + 8, 8);
    const std::string record = read(source, record_offset, 56);
    const auto* r = reinterpret_cast<const unsigned char*>(record.data());
    if (le(r, 4) != 0x06064b50) fail("zip: bad ZIP64 end-of-central-directory record");
    count = le(r + 32, 8);
    cd_size = le(r + 40, 8);
    cd_offset = le(r + 48, 8);
    cd_end = record_offset;
  }
  if (cd_offset > cd_end || cd_size != cd_end - cd_offset) {
    fail("zip: central directory ({} bytes at {}) does not end where its end record starts ({})", cd_size, cd_offset,
         cd_end);
  }
  if (count > cd_size / kCentralEntrySize) fail("zip: {} entries cannot fit in a {}-byte central directory", count, cd_size);

  const std::string cd = read(source, cd_offset, cd_size);
  Cursor cursor(cd, 0, "central directory");
  entries_.reserve(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    if (cursor.take(4) != 0x02014b50) fail("zip: bad central directory entry {}", i);
    cursor.take(2);  // version made by
    cursor.take(2);  // version needed
    cursor.take(2);  // flags
    const std::uint64_t method = cursor.take(2);
    cursor.take(4);  // time, date
    ZipEntry entry;
    entry.crc = static_cast<std::uint32_t>(cursor.take(4));
    std::uint64_t compressed = cursor.take(4);
    entry.size = cursor.take(4);
    const std::uint64_t name_length = cursor.take(2);
    const std::uint64_t extra_length = cursor.take(2);
    const std::uint64_t comment_length = cursor.take(2);
    cursor.take(8);  // disk, attributes
    entry.header_offset = cursor.take(4);
    std::string full_name(cursor.bytes(name_length));
    Cursor extra(cd, cursor.pos(), "ZIP64 extra field");
    cursor.bytes(extra_length);
    cursor.bytes(comment_length);
    // ZIP64 extra: present fields replace the 32-bit ones that read 0xffffffff, in order.
    for (std::size_t end = extra.pos() + extra_length; extra.pos() + 4 <= end;) {
      const std::uint64_t id = extra.take(2);
      const std::uint64_t length = extra.take(2);
      if (id != 0x0001) {
        extra.bytes(length);
        continue;
      }
      Cursor field(cd, extra.pos(), "ZIP64 extra field");
      extra.bytes(length);
      if (entry.size == 0xffffffffu) entry.size = field.take(8);
      if (compressed == 0xffffffffu) compressed = field.take(8);
      if (entry.header_offset == 0xffffffffu) entry.header_offset = field.take(8);
    }
    if (method != 0 || compressed != entry.size) {
      fail("zip: record '{}' is compressed (method {}); PyTorch archives store records uncompressed", full_name, method);
    }
    if (!safe_name(full_name)) fail("zip: unsafe record name '{}'", full_name);
    std::size_t slash = full_name.find('/');
    if (slash == std::string::npos || slash == 0) fail("zip: record '{}' is not inside an archive folder", full_name);
    if (root_.empty()) root_ = full_name.substr(0, slash);
    if (full_name.compare(0, slash, root_) != 0 || slash != root_.size()) {
      fail("zip: record '{}' is outside the archive folder '{}'", full_name, root_);
    }
    entry.name = full_name.substr(slash + 1);
    if (entry.header_offset >= cd_offset || entry.size > cd_offset - entry.header_offset) {
      fail("zip: record '{}' ({} bytes at {}) overlaps the central directory", entry.name, entry.size,
           entry.header_offset);
    }
    if (!by_name_.emplace(entry.name, entries_.size()).second) fail("zip: record '{}' appears twice", entry.name);
    entries_.push_back(std::move(entry));
  }
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  auto found = by_name_.find(std::string(name));
  return found == by_name_.end() ? nullptr : &entries_[found->second];
}

std::uint64_t ZipReader::data_offset(const ZipEntry& entry) {
  const std::string header = read(source_, entry.header_offset, 30);
  const auto* h = reinterpret_cast<const unsigned char*>(header.data());
  if (le(h, 4) != 0x04034b50) fail("zip: record '{}' has no local header at {}", entry.name, entry.header_offset);
  const std::uint64_t offset = entry.header_offset + 30 + le(h + 26, 2) + le(h + 28, 2);
  if (offset > source_.size() || entry.size > source_.size() - offset) {
    fail("zip: record '{}' ({} bytes at {}) extends beyond the end of the file", entry.name, entry.size, offset);
  }
  return offset;
}

std::string ZipReader::read_record(const ZipEntry& entry, std::uint64_t max_size) {
  if (entry.size > max_size) fail("zip: record '{}' is {} bytes, more than the {} allowed", entry.name, entry.size, max_size);
  std::string data = read(source_, data_offset(entry), entry.size);
  if (crc32(0, data.data(), data.size()) != entry.crc) fail("zip: record '{}' fails its CRC-32 check", entry.name);
  return data;
}

}  // namespace ckpt::format
