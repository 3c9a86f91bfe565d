// How a State becomes payload bytes and back: the one seam between the torch-free store
// and format layers (bytes, object graphs) and libtorch (IValues, tensors).
#pragma once

#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>

#include "ckpt/serialization.hpp"
#include "ckpt/state.hpp"
#include "ckpt/store.hpp"

namespace ckpt::torch_layer {

struct EncodedPayload {
  std::uint64_t size_hint = 0;  // an upper bound, for the free-space check
  PayloadWriter write;          // streams the payload; valid while the State lives
};

// Prepares to write `state` in torch.save's zip format (see format/checkpoint_format.hpp).
// Tensor bytes are streamed from tensor memory when write runs; the State must outlive
// the writer. Throws FormatError for values that cannot be saved (naming the key), also
// when libtorch throws while a tensor is prepared (c10::Error, rethrown naming `target`,
// the file the payload is for).
EncodedPayload encode(const State& state, const std::filesystem::path& target);

// Parses a payload from `source`; `source_path` names the file in errors.
// Throws FormatError (and IoError from the source); whatever libtorch or the allocator
// throws while decoding is turned into a FormatError naming the file.
State decode(PayloadSource& source, const LoadOptions& options, const std::filesystem::path& source_path);
// The payload's root value, whatever it is (torch.save(tensor), a list, a dict with any
// keys). Same errors.
c10::IValue decode_value(PayloadSource& source, const LoadOptions& options, const std::filesystem::path& source_path);

// Checks that this libtorch build can allocate on `device`; throws InvalidArgument.
void require_usable_device(c10::Device device);

}  // namespace ckpt::torch_layer
