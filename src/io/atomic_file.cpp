#include "io/atomic_file.hpp"

#include <cerrno>

#include <fmt/format.h>

#include "ckpt/errors.hpp"
#include "io/temp_file.hpp"

namespace ckpt::io {

std::uint64_t write_file_atomically(FileSystem& fs, const std::filesystem::path& path,
                                    const std::filesystem::path& temp_path,
                                    const std::function<void(ByteSink&)>& write_payload) {
  const std::filesystem::path dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  TempFile temp(fs, temp_path);
  write_payload(temp);
  const std::uint64_t size = temp.sync_and_close();
  fs.rename(temp_path, path);
  temp.release();
  fs.sync_dir(dir);
  return size;
}

void require_free_space(FileSystem& fs, const std::filesystem::path& dir, const std::filesystem::path& target,
                        std::uint64_t size_hint) {
  const std::uint64_t available = fs.free_space(dir);
  if (available < size_hint + kFreeSpaceMargin) {
    throw IoError(ErrorCode::disk_full,
                  fmt::format("{}: not enough free space to save: need {} bytes (+{} margin), {} available",
                              target.string(), size_hint, kFreeSpaceMargin, available),
                  target, ENOSPC);
  }
}

}  // namespace ckpt::io
