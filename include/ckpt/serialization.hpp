// One checkpoint file, without a directory index: the C++ torch.save / torch.load.
#pragma once

#include <c10/core/Device.h>

#include <filesystem>

#include "ckpt/state.hpp"

namespace ckpt {

// Writes `state` to `path` as a PyTorch zip-format payload that Python's torch.load
// reads: to a temp file beside it, fsync, rename, fsync the directory. When it returns
// the file survives a power loss; if it throws (IoError naming the file and cause) the
// previous file at `path`, if any, is untouched and no temp file is left.
void save_file(const State& state, const std::filesystem::path& path);

// Reads a payload written by save_file or by Python's torch.save, with every tensor
// moved to `device`. Throws IoError (cannot read), FormatError (not a payload, or not a
// dict with string keys).
State load_file(const std::filesystem::path& path, c10::Device device = c10::kCPU);

}  // namespace ckpt
