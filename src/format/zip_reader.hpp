// Reads the central directory of a PyTorch zip archive and locates its records, trusting
// nothing: every size and offset is checked against the file's size with checked
// arithmetic, names with '..', absolute paths or backslashes are refused, compressed
// records are refused (torch never compresses), records whose bytes overlap are refused
// (no byte is read for two records), extra fields are read within their declared
// lengths, and memory use is bounded by what is actually parsed: the central directory
// is read in chunks, and a record's CRC-32 is checked in a streaming pass before its
// claimed size is allocated. Malformed input is a FormatError, never a crash; names
// from the file are escaped (control bytes, invalid UTF-8 as \xNN) in its message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ckpt/payload_io.hpp"

namespace ckpt::format {

struct ZipEntry {
  std::string name;  // relative to the archive's root folder ("data.pkl", "data/0")
  std::uint64_t header_offset = 0;
  std::uint64_t size = 0;
  std::uint32_t crc = 0;
  // Where the next record's local header (or the central directory) starts: the
  // record's data must end there.
  std::uint64_t end_limit = 0;
};

class ZipReader {
 public:
  explicit ZipReader(PayloadSource& source);

  const std::string& root() const noexcept { return root_; }
  const std::vector<ZipEntry>& entries() const noexcept { return entries_; }
  const ZipEntry* find(std::string_view name) const;
  // Where the record's data starts, from its local header (validated).
  std::uint64_t data_offset(const ZipEntry& entry);
  // Reads a whole record (bounded by `max_size`) and checks its CRC-32: for a record over
  // 1 MiB, in a streaming pass before the record's size is allocated. Memory: the size.
  std::string read_record(const ZipEntry& entry, std::uint64_t max_size);
  // What is damaged in a record read back against its central-directory entry: its bytes
  // through CRC-32 (streamed, 1 MiB at a time), then the one part no checksum covers that
  // has a known form, the padding PyTorch's writer and ckpt's align records with (an "FB"
  // extra field of 'Z's). Nothing if both are intact. Throws FormatError for a record that
  // cannot be located (as data_offset).
  std::optional<std::string> record_damage(const ZipEntry& entry);

 private:
  std::uint32_t streamed_crc(std::uint64_t offset, std::uint64_t size);

  PayloadSource& source_;
  std::string root_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, std::size_t> by_name_;
};

// Whether the first bytes look like a zip archive (local file header signature).
bool looks_like_zip(PayloadSource& source);
// The same for the first `n` bytes of a file, already read.
bool looks_like_zip(const unsigned char* head, std::size_t n);

// The end of a zip archive: its end-of-central-directory record, which sits in the last
// kZipEndMax bytes of the file (22 bytes and a comment of up to 65535).
inline constexpr std::size_t kZipEndMax = 22 + 0xffff;
struct ZipEnd {
  std::uint64_t record_offset = 0;  // of the end record in the file
  std::uint64_t entry_count = 0;
  std::uint64_t directory_offset = 0;
  std::uint64_t directory_size = 0;
  // Set when a ZIP64 locator precedes the end record: where its ZIP64 end record is,
  // whose entry count, directory offset and size replace the three above (the caller
  // reads it; the central directory then ends where it starts).
  std::optional<std::uint64_t> zip64_record_offset;
};
// Finds and checks the end record in `tail`, the last min(file_size, kZipEndMax) bytes of
// a file of `file_size` bytes: the record that ends exactly at the file's end with its
// comment; a ZIP64 locator when a field is at its ZIP64 marker; without ZIP64, a
// central directory that ends where the end record starts. Throws FormatError (a
// truncated or overwritten file) otherwise. Reads nothing else: ZipReader goes on to the
// ZIP64 record and the directory, the store's probe stops here.
ZipEnd parse_zip_end(std::string_view tail, std::uint64_t file_size);

std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n);

}  // namespace ckpt::format
