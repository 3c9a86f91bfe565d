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

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ckpt/store.hpp"

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

 private:
  PayloadSource& source_;
  std::string root_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, std::size_t> by_name_;
};

// Whether the first bytes look like a zip archive (local file header signature).
bool looks_like_zip(PayloadSource& source);

std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n);

}  // namespace ckpt::format
