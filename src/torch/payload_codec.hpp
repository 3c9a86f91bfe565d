// How a State becomes payload bytes and back: the one seam between the store (bytes)
// and libtorch (IValues). Today it is libtorch's own pickle serializer; the
// serialization issue replaces it with a streaming writer and a safe reader, and
// nothing outside this interface changes.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <vector>

#include "ckpt/state.hpp"
#include "ckpt/store.hpp"

namespace ckpt::torch_layer {

struct EncodedPayload {
  std::uint64_t size_hint = 0;  // for the free-space check before anything is written
  PayloadWriter write;          // streams the payload; valid while the State lives
};

class PayloadCodec {
 public:
  virtual ~PayloadCodec() = default;
  // Prepares to write `state`. The State must outlive the returned writer.
  virtual EncodedPayload encode(const State& state) = 0;
  // Parses a payload; tensors end up on `device`. `source` names the file in errors.
  // Throws FormatError.
  virtual State decode(const std::vector<char>& bytes, c10::Device device, const std::filesystem::path& source) = 0;

  static PayloadCodec& standard();
};

// Checks that this libtorch build can allocate on `device`; throws InvalidArgument.
void require_usable_device(c10::Device device);

}  // namespace ckpt::torch_layer
