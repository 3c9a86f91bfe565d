// A torch-free structural check that a file is a complete PyTorch payload, used when
// recovery finds a checkpoint file the index has no row for (adopt it or quarantine it).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "ckpt/file_system.hpp"
#include "ckpt/store.hpp"
#include "io/hashed_file.hpp"

namespace ckpt::store {

struct ProbeResult {
  io::FileDigest digest;
  bool looks_complete = false;  // a whole zip archive, or a legacy (pre-1.6) pickle stream
  std::string reason;           // why not, when it does not
};

// Reads the file once, hashing it and checking its framing: a zip archive must start
// with a local file header and end with an end-of-central-directory record whose
// central directory lies inside the file; a legacy payload must start with the pickle
// protocol-2 header and torch's magic number. A truncated or overwritten file fails.
ProbeResult probe_payload(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm);

}  // namespace ckpt::store
