// Turns a failed system call into a ckpt::IoError that names the path and the cause.
#pragma once

#include <cerrno>
#include <filesystem>
#include <string_view>

namespace ckpt::io {

// Throws IoError for `errno_value`, classified as disk_full, permission_denied or io.
// Message: "<path>: <operation> failed: <strerror>".
[[noreturn]] void throw_os_error(int errno_value, std::string_view operation,
                                 const std::filesystem::path& path);

// Retries a system call interrupted by a signal (EINTR): training programs install
// signal handlers (ckpt::InterruptGuard does) that would otherwise fail a save midway.
template <typename Call>
auto retry_on_eintr(Call call) {
  decltype(call()) result;
  do {
    result = call();
  } while (result == -1 && errno == EINTR);
  return result;
}

}  // namespace ckpt::io
