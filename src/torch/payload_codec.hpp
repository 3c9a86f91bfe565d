// How a State becomes payload bytes and back: the one seam between the torch-free store
// and format layers (bytes, object graphs) and libtorch (IValues, tensors).
#pragma once

#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <unordered_set>
#include <vector>

#include "ckpt/serialization.hpp"
#include "ckpt/state.hpp"
#include "ckpt/store.hpp"
#include "format/checkpoint_format.hpp"

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
// Dense tensors of a layout, by their TensorInfo.
using TensorSet = std::unordered_set<const format::TensorInfo*>;
// decode, from a layout already read (layout_of), with the dense tensors in
// `placeholders` not read unless another tensor shares their storage: each is then an
// empty tensor of its dtype, for the caller to replace (a resharded load's slices).
State decode_state(PayloadSource& source, const format::CheckpointLayout& layout, const LoadOptions& options,
                   const std::filesystem::path& source_path, const TensorSet& placeholders = {});
// The payload's root value, whatever it is (torch.save(tensor), a list, a dict with any
// keys). Same errors.
c10::IValue decode_value(PayloadSource& source, const LoadOptions& options, const std::filesystem::path& source_path);

// ---- The pieces of decode, for restore in place (torch/restore.cpp) ----

// format::read_layout, with `path` on its errors.
format::CheckpointLayout layout_of(PayloadSource& source, const std::filesystem::path& path);
// Reads the storages `roots` use (in file order, each once, CRC-32 checked) onto
// options.device and converts each root, sharing kept across roots (`placeholders`: as
// decode_state).
std::vector<c10::IValue> decode_roots(PayloadSource& source, const format::CheckpointLayout& layout,
                                      const std::vector<format::ValuePtr>& roots, const LoadOptions& options,
                                      const std::filesystem::path& path, const TensorSet& placeholders = {});
// Converts `roots` reading nothing: each dense tensor is what `make_dense` returns for
// it (a placeholder); sparse tensors are built over those, meta tensors as decode does.
using DenseTensorFactory = std::function<at::Tensor(const format::TensorInfo&, c10::ScalarType)>;
std::vector<c10::IValue> decode_placeholders(const format::CheckpointLayout& layout,
                                             const std::vector<format::ValuePtr>& roots,
                                             const DenseTensorFactory& make_dense);
c10::ScalarType scalar_type_of(format::DType dtype);
// Called in a catch block: rethrows the exception being handled as decode does, ckpt's
// errors as they are (a FormatError with `path` in front), libtorch's and the
// allocator's as a FormatError naming `path`.
[[noreturn]] void rethrow_named(const std::filesystem::path& path);

// Checks that this libtorch build can allocate on `device`; throws InvalidArgument.
void require_usable_device(c10::Device device);

}  // namespace ckpt::torch_layer
