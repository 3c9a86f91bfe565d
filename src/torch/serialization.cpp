#include "ckpt/serialization.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "ckpt/errors.hpp"
#include "io/atomic_file.hpp"
#include "io/file_source.hpp"
#include "io/mapped_file.hpp"
#include "store/file_names.hpp"
#include "torch/payload_codec.hpp"

namespace ckpt {

namespace {

// Headroom beyond the payload's size bound, as the store keeps (src/store/checkpoint_store.cpp):
// file-system metadata, and not leaving the disk at exactly zero bytes.
constexpr std::uint64_t kFreeSpaceMargin = 1 << 20;

// Refuses before anything is written, so a save that cannot fit leaves no partial temp
// file to fill the disk (and the previous file at `path` untouched).
void check_free_space(FileSystem& fs, const std::filesystem::path& path, std::uint64_t size_hint) {
  const std::filesystem::path dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  const std::uint64_t available = fs.free_space(dir);
  if (available < size_hint + kFreeSpaceMargin) {
    throw IoError(ErrorCode::disk_full,
                  fmt::format("{}: not enough free space to save: need {} bytes (+{} margin), {} available",
                              path.string(), size_hint, kFreeSpaceMargin, available),
                  path, ENOSPC);
  }
}

}  // namespace

void save_file(const State& state, const std::filesystem::path& path, const SaveOptions& options) {
  auto payload = torch_layer::encode(state, path);
  std::shared_ptr<FileSystem> fs = options.file_system ? options.file_system : FileSystem::posix();
  check_free_space(*fs, path, payload.size_hint);
  // Named as the store names its temp files: `<name>.<pid>-<n>.tmp`, as serialization.hpp
  // promises.
  static std::atomic<std::uint64_t> sequence{0};
  const std::filesystem::path temp_path =
      path.parent_path() / names::temp_file(path.filename().string(), ::getpid(), ++sequence);
  // No hash: there is no index to record one in.
  io::write_file_atomically(*fs, path, temp_path, payload.write);
}

State load_file(const std::filesystem::path& path, const LoadOptions& options) {
  torch_layer::require_usable_device(options.device);
  if (options.memory_map) {
    auto mapping = io::MappedFile::open(path);
    return torch_layer::decode(*mapping, options, path);
  }
  io::FileSource source(*FileSystem::posix(), path);
  return torch_layer::decode(source, options, path);
}

c10::IValue load_value(const std::filesystem::path& path, const LoadOptions& options) {
  torch_layer::require_usable_device(options.device);
  if (options.memory_map) {
    auto mapping = io::MappedFile::open(path);
    return torch_layer::decode_value(*mapping, options, path);
  }
  io::FileSource source(*FileSystem::posix(), path);
  return torch_layer::decode_value(source, options, path);
}

State load_file(const std::filesystem::path& path, c10::Device device) {
  LoadOptions options;
  options.device = device;
  return load_file(path, options);
}

}  // namespace ckpt
