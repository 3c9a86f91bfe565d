// Writes a format::Value graph as the data.pkl torch.save would write: pickle protocol
// 2, tensors as torch._utils._rebuild_tensor_v2 over persistent storage ids, parameters
// through _rebuild_parameter, OrderedDict where the value says so.
//
// Only opcodes and globals that torch's weights_only=True loaders accept are used
// (never torch.jit._pickle.*), so torch >= 2.6 loads the result with its default
// weights_only=True. (torch 1.13's restricted loader lacks BINFLOAT and knows ten dtypes,
// so it accepts only float-free states, and no meta tensor of bool, uint8 or bfloat16:
// docs/format.md, "Loading in Python with weights_only".) The output is a pure function
// of the graph: deterministic.
#pragma once

#include <string>

#include "format/value.hpp"

namespace ckpt::format {

// Throws FormatError for what cannot be written (bytes, a storage outside a tensor,
// nesting deeper than kMaxNesting, cycles).
std::string write_pickle(const ValuePtr& root);

}  // namespace ckpt::format
