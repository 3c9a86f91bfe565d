// The .pth payload as a whole: torch.save's zip layout (torch 1.6 to 2.x) and the legacy
// pre-1.6 stream, read into a layout (object graph + where each storage's bytes are),
// and written from an object graph whose storages point at memory.
//
// What the writer produces (format version 3, as torch 1.13 and 2.x write and read):
//   archive/data.pkl      the object graph, pickle protocol 2 (see pickle_writer.hpp)
//   archive/byteorder     "little" (torch >= 2.1 writes it; 1.13 ignores it)
//   archive/data/<key>    one record per storage, keys "0", "1", ... in first-use order
//   archive/version       "3\n"
// The top folder is always "archive", so the bytes do not depend on the file's name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ckpt/errors.hpp"
#include "ckpt/payload_io.hpp"
#include "format/memory_budget.hpp"
#include "format/value.hpp"

namespace ckpt::format {

enum class Container { zip, legacy };

struct StorageLocation {
  std::uint64_t offset = 0;            // of the first data byte in the file
  std::uint64_t nbytes = 0;
  std::optional<std::uint32_t> crc32;  // zip records only
};

struct CheckpointLayout {
  Container container = Container::zip;
  ValuePtr root;
  std::vector<std::shared_ptr<StorageInfo>> storages;  // in order of first use
  std::unordered_map<std::string, StorageLocation> locations;
  std::string archive_root;  // zip only
  int version = 0;           // zip: the version record; legacy: 1001
  // The budget the graph was charged to; whoever converts or walks it further (a
  // decoder, an inspector) charges the same one.
  std::shared_ptr<MemoryBudget> budget;
};

// The one way a storage record's bytes are read and checked: into `out` (location.nbytes
// bytes) when it is given, else through `scratch` (its size bounds each read; nothing is
// kept: a check only), in reads of at most `chunk` bytes, the CRC-32 (zip records)
// computed as the bytes arrive. Throws FormatError (ErrorCode::corrupt) naming `path` and
// data/<key> when the CRC-32 does not match (storage_crc_error), and what the source throws.
void read_storage_record(PayloadSource& source, const std::string& key, const StorageLocation& location, char* out,
                         std::vector<char>* scratch, const std::filesystem::path& path, std::size_t chunk = 1 << 20);
// The error a storage record whose bytes fail their CRC-32 is reported with.
FormatError storage_crc_error(const std::string& key, const std::filesystem::path& path);

// Reads the structure (never tensor data) and checks that every storage the pickle uses
// exists with exactly the bytes its element count needs. Throws FormatError. Reads and
// holds only the structure: data.pkl (a zip) or the legacy stream's leading pickles,
// never the storages' bytes.
CheckpointLayout read_layout(PayloadSource& source);

// The legacy (pre-1.6) stream starts with a pickle of torch's magic number
// 0x1950a86a20f9469cfc6c: PROTO 2..5, a FRAME for protocols 4 and 5, LONG1 of 10 bytes,
// STOP. Returns that pickle's length if the first `n` bytes of a file start with it,
// else 0. kLegacyHeadMax bytes always suffice.
inline constexpr std::size_t kLegacyHeadMax = 24;
std::size_t legacy_magic_length(const unsigned char* head, std::size_t n);

// A payload ready to write: its pickle is built (small), its storages point at memory.
// write() streams the archive; size_bound() bounds its size for the free-space check.
struct PreparedCheckpoint {
  std::string pickle;
  std::vector<std::shared_ptr<StorageInfo>> storages;  // each with `data` set

  std::uint64_t size_bound() const;
  void write(ByteSink& sink) const;
};

// Throws FormatError for a graph that cannot be written (see pickle_writer.hpp).
PreparedCheckpoint prepare_checkpoint(const ValuePtr& root, std::vector<std::shared_ptr<StorageInfo>> storages);

}  // namespace ckpt::format
