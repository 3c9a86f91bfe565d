// Reads the central directory of a PyTorch zip archive and locates its records, trusting
// nothing: every size and offset is checked against the file's size with checked
// arithmetic, names with '..', absolute paths or backslashes are refused, compressed
// records are refused (torch never compresses), and memory use is bounded by the
// central directory's real size. Malformed input is a FormatError, never a crash.
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
};

class ZipReader {
 public:
  explicit ZipReader(PayloadSource& source);

  const std::string& root() const noexcept { return root_; }
  const std::vector<ZipEntry>& entries() const noexcept { return entries_; }
  const ZipEntry* find(std::string_view name) const;
  // Where the record's data starts, from its local header (validated).
  std::uint64_t data_offset(const ZipEntry& entry);
  // Reads a whole record (bounded by `max_size`) and checks its CRC-32.
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
