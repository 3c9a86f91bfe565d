// The byte-level interfaces a payload passes through, below the store: where a writer
// puts its bytes (ByteSink), where a reader gets them (PayloadSource), and which content
// hash the store records (HashAlgorithm). The file layers (io/, format/) need only these,
// not the store; store.hpp includes this header, so a user of the store sees them there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ckpt {

enum class HashAlgorithm {
  xxh3_128,  // default: "xxh3-128", hex as `xxhsum -H2` prints it
  sha256,    // "sha256", hex as `sha256sum` prints it
};
std::string_view to_string(HashAlgorithm algorithm) noexcept;

// Where a PayloadWriter puts the payload's bytes. The store hashes them as they pass.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void write(const void* data, std::size_t n) = 0;
};

// Random access to a payload's bytes while it is being loaded.
class PayloadSource {
 public:
  virtual ~PayloadSource() = default;
  virtual std::uint64_t size() const = 0;
  // Reads exactly n bytes at `offset`. Throws FormatError for a range beyond the end,
  // IoError when the file cannot be read.
  virtual void read_at(std::uint64_t offset, void* buffer, std::size_t n) = 0;
};

}  // namespace ckpt
