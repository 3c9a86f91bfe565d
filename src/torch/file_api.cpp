#include <fmt/format.h>

#include "ckpt/errors.hpp"
#include "ckpt/serialization.hpp"
#include "io/hashed_file.hpp"
#include "torch/payload_codec.hpp"

namespace ckpt {

void save_file(const State& state, const std::filesystem::path& path) {
  auto payload = torch_layer::PayloadCodec::standard().encode(state);
  io::write_file_atomically(*FileSystem::posix(), path, HashAlgorithm::xxh3_128, payload.write);
}

State load_file(const std::filesystem::path& path, c10::Device device) {
  torch_layer::require_usable_device(device);
  std::vector<char> bytes = io::read_whole_file(*FileSystem::posix(), path);
  return torch_layer::PayloadCodec::standard().decode(bytes, device, path);
}

}  // namespace ckpt
