#include "io/file_hash.hpp"

#include <vector>

#include "io/hasher.hpp"

namespace ckpt::io {

namespace {
constexpr std::size_t kReadChunk = 4 << 20;
}  // namespace

FileDigest hash_file(FileSystem& fs, const std::filesystem::path& path, HashAlgorithm algorithm) {
  auto hasher = Hasher::create(algorithm);
  auto file = fs.open_for_read(path);
  std::vector<char> chunk(kReadChunk);
  FileDigest digest;
  for (;;) {
    std::size_t got = file->read(chunk.data(), chunk.size());
    if (got == 0) break;
    hasher->update(chunk.data(), got);
    digest.size += got;
  }
  digest.hash = hasher->hex_digest();
  return digest;
}

}  // namespace ckpt::io
