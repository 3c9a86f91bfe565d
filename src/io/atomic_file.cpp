#include "io/atomic_file.hpp"

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

}  // namespace ckpt::io
