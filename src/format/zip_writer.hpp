// A streaming writer of the zip archives PyTorch uses for .pth files.
//
// Records are stored uncompressed, their data aligned to 64 bytes (the 'FB' padding
// extra field PyTorch's writer uses), each followed by a data descriptor, so the archive
// is written in one forward pass with nothing buffered but the central directory. Data
// goes from the caller's memory to the sink in chunks, the CRC-32 (libdeflate) computed
// on each chunk while it is in cache. ZIP64 records are used where a size or offset
// needs them. Timestamps are zero: the same records give the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/payload_io.hpp"

namespace ckpt::format {

inline constexpr std::uint64_t kZip64Limit = 0xffffffffu;

class ZipWriter {
 public:
  // `root` is the archive's top folder ("archive"). `zip64_threshold` exists for tests,
  // which force ZIP64 structures on small archives.
  ZipWriter(ByteSink& sink, std::string root, std::uint64_t zip64_threshold = kZip64Limit);

  // Writes root/name with `size` bytes from `data`.
  void write_record(std::string_view name, const void* data, std::uint64_t size);
  // Writes the central directory and end records. No record may follow.
  void finish();

  std::uint64_t bytes_written() const noexcept { return position_; }

 private:
  struct Entry {
    std::string name;
    std::uint64_t offset;
    std::uint64_t size;
    std::uint32_t crc;
    bool zip64_local;
  };
  void put(const std::string& bytes);

  ByteSink& sink_;
  std::string root_;
  std::uint64_t zip64_threshold_;
  std::uint64_t position_ = 0;
  std::vector<Entry> entries_;
};

// The bytes an archive with these record sizes will occupy beside the data: headers,
// padding, descriptors and the central directory (an upper bound, for free-space checks).
std::uint64_t zip_overhead_bound(std::size_t records, std::size_t longest_name);

}  // namespace ckpt::format
