// Torch-free checks that a file is a complete PyTorch payload, used when recovery finds a
// checkpoint file the index has no row for (adopt it or quarantine it), or a committed
// name holding other bytes than its row's (another writer's save, or damage).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ckpt/file_system.hpp"
#include "ckpt/store.hpp"
#include "io/file_hash.hpp"

namespace ckpt::store {

struct ProbeResult {
  io::FileDigest digest;
  bool looks_complete = false;  // a whole zip archive, or a legacy (pre-1.6) pickle stream
  std::string reason;           // why not, when it does not
};

// Reads the file once, hashing it and checking its framing as format/ defines it: a zip
// archive must start with a local file header and end with an end record that
// format::parse_zip_end accepts; a legacy payload must start with the pickle of torch's
// magic number (format::legacy_magic_length). A truncated or overwritten file fails,
// with format/'s reason.
ProbeResult probe_payload(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm);

// A payload read with the restricted reader (format/, the one load_file uses): every zip
// record's CRC-32 and alignment padding checked, then the structure parsed (a refused
// global, a damaged pickle, a missing storage fail it), hashing the file in the same pass.
struct PayloadCheck {
  io::FileDigest digest;
  std::string problem;  // empty when the payload reads whole; else the reader's refusal
  bool damaged = false;  // the problem is a record failing its CRC-32 or damaged padding
  // The top-level int and float entries of a dict payload (bools excluded), in order.
  std::vector<std::pair<std::string, double>> numbers;
  std::optional<std::int64_t> epoch;  // its int `epoch` entry
  std::string content_key;            // see content_key(); empty for a legacy payload
};

// What a zip payload holds, independent of its archive's folder name (torch.save names
// it after the file: the same state saved as best_model.pth and as checkpoint_epoch_7.pth
// differs in those bytes only): each record's name below the folder, size and CRC-32,
// from the central directory (nothing else is read). Empty for a legacy payload.
std::string content_key(PayloadSource& source);
// The same for a file; empty when it cannot be read as a zip payload.
std::string content_key(FileSystem& fs, const std::filesystem::path& path);
// How much check_payload reads: the structure only (the pickle; for a file whose hash
// already vouches for its bytes), or also every record's CRC-32 and padding.
enum class CheckDepth { structure, whole };
// Throws IoError when the file cannot be read (a read error is not a verdict on it).
PayloadCheck check_payload(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm,
                           CheckDepth depth = CheckDepth::whole);

}  // namespace ckpt::store
