// Every malformed-input failure of the format layer is a ckpt::FormatError; the caller
// that knows the file adds its path.
#pragma once

#include <fmt/format.h>

#include "ckpt/errors.hpp"

namespace ckpt::format {

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw FormatError(ErrorCode::format, fmt::format(format, std::forward<Args>(args)...));
}

// a + b and a * b for sizes read from a file: FormatError instead of wrapping around.
std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const char* what);
std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const char* what);

}  // namespace ckpt::format
