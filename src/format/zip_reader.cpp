#include "format/zip_reader.hpp"

#include <libdeflate.h>

#include <algorithm>
#include <numeric>

#include "format/format_error.hpp"
#include "format/printable.hpp"

namespace ckpt::format {

namespace {

constexpr std::uint64_t kEocdSize = 22;
constexpr std::uint64_t kCentralEntrySize = 46;
// A central entry with the longest name, extra field and comment.
constexpr std::uint64_t kMaxCentralEntrySize = kCentralEntrySize + 3 * 0xffff;
constexpr std::uint64_t kLocalHeaderSize = 30;
// The central directory is read this much at a time (more than the longest entry).
constexpr std::size_t kDirectoryChunk = 256 << 10;
// read_record's CRC pass reads a large record this much at a time.
constexpr std::size_t kCrcChunk = 1 << 20;

std::uint64_t le(const unsigned char* p, int width) {
  std::uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return v;
}

// A record name from the file, safe to put in a message: control bytes (below 0x20, DEL,
// C1) and bytes that are not valid UTF-8 escaped (\xNN; \n, \r, \t), valid UTF-8 kept.
// format::printable's convention, the one the CLI and checkpoint_format.cpp use (a
// message quoting it passes through printable_message unchanged); the one place to
// change if names get a dedicated helper.
std::string escaped(std::string_view name) { return printable(name); }

// A bounds-checked cursor over a buffer read from the file.
class Cursor {
 public:
  Cursor(std::string_view buffer, const char* what) : buffer_(buffer), what_(what) {}
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
  std::size_t remaining() const { return buffer_.size() - pos_; }

 private:
  void need(std::uint64_t n) {
    if (n > buffer_.size() - pos_) fail("zip: {} is truncated", what_);
  }
  std::string_view buffer_;
  std::size_t pos_ = 0;
  const char* what_;
};

// Reads [offset, offset + size) of the source front to back through a buffer of at most
// kDirectoryChunk bytes, so what a central directory claims costs nothing until its
// entries are parsed, and the first bad one stops the read.
class DirectoryReader {
 public:
  DirectoryReader(PayloadSource& source, std::uint64_t offset, std::uint64_t size)
      : source_(source), offset_(offset), size_(size) {}
  std::uint64_t take(int width) {
    const unsigned char* p = ensure(width);
    pos_ += width;
    return le(p, width);
  }
  // n <= 0xffff (a name, an extra field).
  std::string_view bytes(std::uint64_t n) {
    const auto* p = reinterpret_cast<const char*>(ensure(n));
    pos_ += n;
    return std::string_view(p, n);
  }
  void skip(std::uint64_t n) {
    check(n);
    pos_ += n;
  }

 private:
  void check(std::uint64_t n) const {
    if (n > size_ - pos_) fail("zip: central directory is truncated");
  }
  const unsigned char* ensure(std::uint64_t n) {
    check(n);
    if (pos_ < buffer_start_ || pos_ + n > buffer_start_ + buffer_.size()) {
      buffer_start_ = pos_;
      buffer_.resize(static_cast<std::size_t>(std::min<std::uint64_t>(kDirectoryChunk, size_ - pos_)));
      source_.read_at(offset_ + pos_, buffer_.data(), buffer_.size());
    }
    return reinterpret_cast<const unsigned char*>(buffer_.data()) + (pos_ - buffer_start_);
  }
  PayloadSource& source_;
  const std::uint64_t offset_;
  const std::uint64_t size_;
  std::uint64_t pos_ = 0;
  std::uint64_t buffer_start_ = 0;
  std::string buffer_;
};

std::string read(PayloadSource& source, std::uint64_t offset, std::uint64_t n) {
  if (offset > source.size() || n > source.size() - offset) {
    fail("zip: {} bytes at offset {} lie beyond the end of the file ({} bytes)", n, offset, source.size());
  }
  std::string buffer(n, '\0');
  source.read_at(offset, buffer.data(), n);
  return buffer;
}

// The central directory must end where the (ZIP64 or classic) end record starts.
void check_directory_end(std::uint64_t cd_offset, std::uint64_t cd_size, std::uint64_t cd_end) {
  if (cd_offset > cd_end || cd_size != cd_end - cd_offset) {
    fail("zip: central directory ({} bytes at {}) does not end where its end record starts ({})", cd_size, cd_offset,
         cd_end);
  }
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

// Applies the central entry's extra block: each field must lie within the block, and the
// ZIP64 field (0x0001) supplies, in order and within its own length, the 64-bit values of
// the size, compressed size and header offset that read 0xffffffff.
void apply_extra_fields(std::string_view block, const std::string& full_name, ZipEntry& entry,
                        std::uint64_t& compressed) {
  Cursor extra(block, "extra field");
  // Fewer than 4 bytes left cannot hold a field header: ignored, as Python's zipfile does.
  while (extra.remaining() >= 4) {
    const std::uint64_t id = extra.take(2);
    const std::uint64_t length = extra.take(2);
    if (length > extra.remaining()) {
      fail("zip: extra field 0x{:04x} of record '{}' is {} bytes, more than the {} left in its {}-byte extra block", id,
           escaped(full_name), length, extra.remaining(), block.size());
    }
    Cursor field(extra.bytes(length), "ZIP64 extra field");
    if (id != 0x0001) continue;
    const bool size64 = entry.size == 0xffffffffu;
    const bool compressed64 = compressed == 0xffffffffu;
    const bool offset64 = entry.header_offset == 0xffffffffu;
    const std::uint64_t needed = 8 * (std::uint64_t(size64) + compressed64 + offset64);
    if (length < needed) {
      fail("zip: ZIP64 extra field of record '{}' is {} bytes, needs {}", escaped(full_name), length, needed);
    }
    if (size64) entry.size = field.take(8);
    if (compressed64) compressed = field.take(8);
    if (offset64) entry.header_offset = field.take(8);
  }
}

}  // namespace

std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n) { return libdeflate_crc32(crc, data, n); }

bool looks_like_zip(const unsigned char* head, std::size_t n) { return n >= 4 && le(head, 4) == 0x04034b50; }

bool looks_like_zip(PayloadSource& source) {
  if (source.size() < 4) return false;
  unsigned char magic[4];
  source.read_at(0, magic, 4);
  return looks_like_zip(magic, 4);
}

ZipEnd parse_zip_end(std::string_view tail, std::uint64_t file_size) {
  if (file_size < kEocdSize || tail.size() < kEocdSize) {
    fail("zip: file of {} bytes is too short for an archive", file_size);
  }
  const auto* t = reinterpret_cast<const unsigned char*>(tail.data());
  std::size_t eocd = std::string::npos;
  for (std::size_t pos = tail.size() - kEocdSize + 1; pos-- > 0;) {
    if (le(t + pos, 4) == 0x06054b50 && pos + kEocdSize + le(t + pos + 20, 2) == tail.size()) {
      eocd = pos;
      break;
    }
  }
  if (eocd == std::string::npos) fail("zip: no end-of-central-directory record (truncated file?)");
  ZipEnd end;
  end.record_offset = file_size - tail.size() + eocd;
  end.entry_count = le(t + eocd + 10, 2);
  end.directory_size = le(t + eocd + 12, 4);
  end.directory_offset = le(t + eocd + 16, 4);
  const bool needs_zip64 =
      end.entry_count == 0xffff || end.directory_size == 0xffffffffu || end.directory_offset == 0xffffffffu;
  // PyTorch's writer (miniz) may add the ZIP64 end records even when no field needs
  // them; either way they sit between the central directory and the classic end record.
  const bool has_locator = eocd >= 20 && le(t + eocd - 20, 4) == 0x07064b50;
  if (needs_zip64 && !has_locator) fail("zip: ZIP64 archive without its locator");
  if (has_locator) {
    end.zip64_record_offset = le(t + eocd - 20 + 8, 8);
  } else {
    check_directory_end(end.directory_offset, end.directory_size, end.record_offset);
  }
  return end;
}

ZipReader::ZipReader(PayloadSource& source) : source_(source) {
  const std::uint64_t file_size = source.size();
  const std::uint64_t tail_size = std::min<std::uint64_t>(file_size, kZipEndMax);
  const ZipEnd end = parse_zip_end(read(source, file_size - tail_size, tail_size), file_size);
  std::uint64_t count = end.entry_count;
  std::uint64_t cd_size = end.directory_size;
  std::uint64_t cd_offset = end.directory_offset;
  if (end.zip64_record_offset) {
    const std::uint64_t record_offset = *end.zip64_record_offset;
    const std::string record = read(source, record_offset, 56);
    const auto* r = reinterpret_cast<const unsigned char*>(record.data());
    if (le(r, 4) != 0x06064b50) fail("zip: bad ZIP64 end-of-central-directory record");
    count = le(r + 32, 8);
    cd_size = le(r + 40, 8);
    cd_offset = le(r + 48, 8);
    check_directory_end(cd_offset, cd_size, record_offset);
  }
  // Each entry is 46 to 46 + 3 * 65535 bytes: the count and the size must agree both ways.
  if (count > cd_size / kCentralEntrySize) fail("zip: {} entries cannot fit in a {}-byte central directory", count, cd_size);
  if (count <= UINT64_MAX / kMaxCentralEntrySize && cd_size > count * kMaxCentralEntrySize) {
    fail("zip: {} entries cannot fill a {}-byte central directory (at most {} bytes each)", count, cd_size,
         kMaxCentralEntrySize);
  }

  // Parsed as it is read: memory grows with the entries parsed, not with what the end
  // record claims (no reserve(count) either).
  DirectoryReader cursor(source, cd_offset, cd_size);
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
    apply_extra_fields(cursor.bytes(extra_length), full_name, entry, compressed);
    cursor.skip(comment_length);
    if (method != 0 || compressed != entry.size) {
      fail("zip: record '{}' is compressed (method {}); PyTorch archives store records uncompressed", escaped(full_name),
           method);
    }
    if (!safe_name(full_name)) fail("zip: unsafe record name '{}'", escaped(full_name));
    std::size_t slash = full_name.find('/');
    if (slash == std::string::npos || slash == 0) {
      fail("zip: record '{}' is not inside an archive folder", escaped(full_name));
    }
    if (root_.empty()) root_ = full_name.substr(0, slash);
    if (full_name.compare(0, slash, root_) != 0 || slash != root_.size()) {
      fail("zip: record '{}' is outside the archive folder '{}'", escaped(full_name), escaped(root_));
    }
    entry.name = full_name.substr(slash + 1);
    // The local header (30 bytes at least) and the data must end before the directory.
    if (entry.header_offset >= cd_offset || entry.size > cd_offset - entry.header_offset ||
        cd_offset - entry.header_offset - entry.size < kLocalHeaderSize) {
      fail("zip: record '{}' ({} bytes at {}) overlaps the central directory", escaped(entry.name), entry.size,
           entry.header_offset);
    }
    if (!by_name_.emplace(entry.name, entries_.size()).second) {
      fail("zip: record '{}' appears twice", escaped(entry.name));
    }
    entries_.push_back(std::move(entry));
  }

  // Records must not share bytes (else one 1 MiB record listed 200 times is read 200
  // times): in file order, each record's local header (30 bytes at least) and data end at
  // or before the next record's header. A data descriptor after the data is fine.
  std::vector<std::size_t> order(entries_.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return entries_[a].header_offset < entries_[b].header_offset; });
  for (std::size_t k = 0; k < order.size(); ++k) {
    ZipEntry& entry = entries_[order[k]];
    entry.end_limit = k + 1 < order.size() ? entries_[order[k + 1]].header_offset : cd_offset;
    // header_offset + 30 + size <= cd_offset was checked above: no overflow.
    if (entry.header_offset + kLocalHeaderSize + entry.size > entry.end_limit) {
      const ZipEntry& next = entries_[order[k + 1]];
      fail("zip: records '{}' ({} bytes at {}) and '{}' (at {}) overlap", escaped(entry.name), entry.size,
           entry.header_offset, escaped(next.name), next.header_offset);
    }
  }
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  auto found = by_name_.find(std::string(name));
  return found == by_name_.end() ? nullptr : &entries_[found->second];
}

std::uint64_t ZipReader::data_offset(const ZipEntry& entry) {
  const std::string header = read(source_, entry.header_offset, kLocalHeaderSize);
  const auto* h = reinterpret_cast<const unsigned char*>(header.data());
  if (le(h, 4) != 0x04034b50) {
    fail("zip: record '{}' has no local header at {}", escaped(entry.name), entry.header_offset);
  }
  const std::uint64_t offset = entry.header_offset + kLocalHeaderSize + le(h + 26, 2) + le(h + 28, 2);
  if (offset > source_.size() || entry.size > source_.size() - offset) {
    fail("zip: record '{}' ({} bytes at {}) extends beyond the end of the file", escaped(entry.name), entry.size, offset);
  }
  // The local header's name and extra field may not push the data into the next record.
  if (offset > entry.end_limit || entry.size > entry.end_limit - offset) {
    fail("zip: record '{}' ({} bytes at {}) runs into the next record or the central directory at {}",
         escaped(entry.name), entry.size, offset, entry.end_limit);
  }
  return offset;
}

std::string ZipReader::read_record(const ZipEntry& entry, std::uint64_t max_size) {
  if (entry.size > max_size) {
    fail("zip: record '{}' is {} bytes, more than the {} allowed", escaped(entry.name), entry.size, max_size);
  }
  const std::uint64_t offset = data_offset(entry);
  const auto bad_crc = [&] { fail("zip: record '{}' fails its CRC-32 check", escaped(entry.name)); };
  // A pass through a 1 MiB buffer first: a record whose size is a lie (1 GiB of a sparse
  // file) costs a read, not an allocation of its claimed size.
  if (entry.size > kCrcChunk && streamed_crc(offset, entry.size) != entry.crc) bad_crc();
  std::string data = read(source_, offset, entry.size);
  // Checked (again) on the bytes returned: the file may have changed since the pass.
  if (crc32(0, data.data(), data.size()) != entry.crc) bad_crc();
  return data;
}

std::uint32_t ZipReader::streamed_crc(std::uint64_t offset, std::uint64_t size) {
  std::string chunk(static_cast<std::size_t>(std::min<std::uint64_t>(kCrcChunk, size)), '\0');
  std::uint32_t crc = 0;
  for (std::uint64_t done = 0; done < size;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kCrcChunk, size - done));
    source_.read_at(offset + done, chunk.data(), n);
    crc = crc32(crc, chunk.data(), n);
    done += n;
  }
  return crc;
}

std::optional<std::string> ZipReader::record_damage(const ZipEntry& entry) {
  const std::uint64_t offset = data_offset(entry);
  if (streamed_crc(offset, entry.size) != entry.crc) {
    return fmt::format("record {} fails its CRC-32 check", escaped(entry.name));
  }
  const std::string header = read(source_, entry.header_offset, kLocalHeaderSize);
  const auto* h = reinterpret_cast<const unsigned char*>(header.data());
  const std::uint64_t extra_at = entry.header_offset + kLocalHeaderSize + le(h + 26, 2);
  const std::string extra = read(source_, extra_at, offset - extra_at);  // data_offset bounded it
  for (std::size_t at = 0; at + 4 <= extra.size();) {
    const auto* field = reinterpret_cast<const unsigned char*>(extra.data() + at);
    const std::uint64_t id = le(field, 2);
    const std::size_t length = static_cast<std::size_t>(le(field + 2, 2));
    const std::string_view body = std::string_view(extra).substr(at + 4, length);
    if (id == 0x4246 && body.find_first_not_of('Z') != std::string_view::npos) {
      return fmt::format("the padding of record {} is damaged", escaped(entry.name));
    }
    at += 4 + length;
  }
  return std::nullopt;
}

}  // namespace ckpt::format
