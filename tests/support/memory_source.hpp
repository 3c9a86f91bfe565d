// Payload bytes in memory for the format tests: a PayloadSource over a string (reading
// past its end is a FormatError, as a file's end is) and a ByteSink that appends to one.
#pragma once

#include <cstring>
#include <string>
#include <string_view>

#include "ckpt/errors.hpp"
#include "ckpt/store.hpp"

namespace ckpt::test {

class MemorySource final : public PayloadSource {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  std::uint64_t size() const override { return bytes_.size(); }
  void read_at(std::uint64_t offset, void* buffer, std::size_t n) override {
    if (offset > bytes_.size() || n > bytes_.size() - offset) {
      throw FormatError(ErrorCode::format, "read beyond the end of the payload");
    }
    std::memcpy(buffer, bytes_.data() + offset, n);
  }

 private:
  std::string_view bytes_;  // must outlive the source
};

struct StringSink final : ByteSink {
  std::string bytes;
  void write(const void* data, std::size_t n) override { bytes.append(static_cast<const char*>(data), n); }
};

}  // namespace ckpt::test
