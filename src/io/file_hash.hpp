// A payload file's size and content hash, and hashing a file that is already written.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "ckpt/file_system.hpp"
#include "ckpt/payload_io.hpp"

namespace ckpt::io {

struct FileDigest {
  std::uint64_t size = 0;
  std::string hash;  // lower-case hex (io/hasher.hpp)
};

// Reads the file at `path` once, front to back, without keeping its bytes. Throws
// IoError when it cannot be opened or read.
FileDigest hash_file(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm);

}  // namespace ckpt::io
