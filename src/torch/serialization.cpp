#include "ckpt/serialization.hpp"

#include <unistd.h>

#include <atomic>

#include "ckpt/errors.hpp"
#include "io/atomic_file.hpp"
#include "io/file_source.hpp"
#include "io/mapped_file.hpp"
#include "store/file_names.hpp"
#include "torch/payload_codec.hpp"

namespace ckpt {

void save_file(const State& state, const std::filesystem::path& path, const SaveOptions& options) {
  auto payload = torch_layer::encode(state, path);
  std::shared_ptr<FileSystem> fs = options.file_system ? options.file_system : FileSystem::posix();
  const std::filesystem::path dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  io::require_free_space(*fs, dir, path, payload.size_hint);
  // Named as the store names its temp files: `<name>.<pid>-<n>.tmp`, as serialization.hpp
  // promises.
  static std::atomic<std::uint64_t> sequence{0};
  const std::filesystem::path temp_path =
      path.parent_path() / names::temp_file(path.filename().string(), ::getpid(), ++sequence);
  // No hash: there is no index to record one in.
  io::write_file_atomically(*fs, path, temp_path, payload.write);
}

namespace {
// Reads `path` as `options` ask (mapped or through the file-system seam) with `decode`.
template <typename Decode>
auto decode_file(const std::filesystem::path& path, const LoadOptions& options, Decode&& decode) {
  torch_layer::require_usable_device(options.device);
  if (options.memory_map) {
    auto mapping = io::MappedFile::open(path);
    return decode(*mapping, options, path);
  }
  io::FileSource source(*FileSystem::posix(), path);
  return decode(source, options, path);
}
}  // namespace

State load_file(const std::filesystem::path& path, const LoadOptions& options) {
  return decode_file(path, options, [](PayloadSource& source, const LoadOptions& o, const std::filesystem::path& p) {
    return torch_layer::decode(source, o, p);
  });
}

c10::IValue load_value(const std::filesystem::path& path, const LoadOptions& options) {
  return decode_file(path, options, [](PayloadSource& source, const LoadOptions& o, const std::filesystem::path& p) {
    return torch_layer::decode_value(source, o, p);
  });
}

State load_file(const std::filesystem::path& path, c10::Device device) {
  LoadOptions options;
  options.device = device;
  return load_file(path, options);
}

}  // namespace ckpt
