// Streaming content hashes for payload files: XXH3-128 (xxHash) by default, SHA-256
// (OpenSSL libcrypto) on request. Computed while bytes are written or read, so a file
// is never read a second time just to hash it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "ckpt/payload_io.hpp"

namespace ckpt::io {

class Hasher {
 public:
  virtual ~Hasher() = default;
  virtual void update(const void* data, std::size_t n) = 0;
  // Lower-case hex, as `xxhsum -H2` or `sha256sum` print it. Call once, at the end.
  virtual std::string hex_digest() = 0;

  static std::unique_ptr<Hasher> create(HashAlgorithm algorithm);
};

// Parses "xxh3-128" / "sha256" as stored in the index's hash_algo column.
bool parse_hash_algorithm(std::string_view name, HashAlgorithm& out) noexcept;

}  // namespace ckpt::io
