#include "ckpt/serialization.hpp"
#include "io/file_source.hpp"
#include "io/hashed_file.hpp"
#include "io/mapped_file.hpp"
#include "torch/payload_codec.hpp"

namespace ckpt {

void save_file(const State& state, const std::filesystem::path& path, const SaveOptions& options) {
  auto payload = torch_layer::encode(state);
  std::shared_ptr<FileSystem> fs = options.file_system ? options.file_system : FileSystem::posix();
  io::write_file_atomically(*fs, path, HashAlgorithm::xxh3_128, payload.write);
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
