// One checkpoint file, without a directory index: the C++ torch.save / torch.load.
#pragma once

#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/file_system.hpp"
#include "ckpt/state.hpp"

namespace ckpt {

struct SaveOptions {
  // The file-system seam: the temp file's create, writes and fsync, the rename and the
  // directory fsync all go through it. nullptr means FileSystem::posix(). Tests pass one
  // that fails an operation or simulates a power loss.
  std::shared_ptr<FileSystem> file_system;
};

// Writes `state` to `path` as a PyTorch zip-format payload that Python's torch.load
// reads: to a temp file beside it, fsync, rename, fsync the directory. First, as the
// manager does, it checks the directory's free space (FileSystem::free_space) against
// the payload's size bound plus a 1 MiB margin: too little throws IoError with
// ErrorCode::disk_full, naming the file and the bytes needed and available, before
// anything is written. When it returns the file survives a power loss; if it throws
// (IoError naming the file and cause) the previous file at `path`, if any, is untouched
// and no temp file is left, except when the directory fsync, the last step, fails: the
// new file is then in place, but a power loss may bring back the previous one. A process
// crash or power loss during the call leaves either the previous file or the new one,
// complete, under `path` (an interrupted call may also leave its temp file beside it,
// `<name>.<pid>-<n>.tmp`, which nothing removes).
void save_file(const State& state, const std::filesystem::path& path, const SaveOptions& options = {});

struct LoadOptions {
  // Every loaded tensor ends up on this device.
  c10::Device device = c10::kCPU;
  // Zero-copy: CPU tensors point into a private, copy-on-write memory map of the file,
  // which lives as long as any of them does. Starts in milliseconds whatever the size;
  // pages are read when first touched. Only the pickle's CRC is checked (tensor bytes
  // are not read, so they are not verified; see docs/format.md).
  bool memory_map = false;
  // When not empty, only these top-level keys are loaded; the tensor data of the others
  // is never read.
  std::vector<std::string> only_keys;
};

// Reads a payload written by save_file or by Python's torch.save (zip format of torch
// 1.6 to 2.x, or the legacy pre-1.6 format). Only data is read, never code: globals
// outside an allowlist are refused. Each record's CRC-32 is checked as it is read.
// Each storage record becomes a storage of its own; small neighbouring records share one
// block of memory (docs/format.md, "The memory of an eager load's tensors").
// Throws IoError (cannot read), FormatError (not a payload, damaged, or not a dict with
// string keys) naming the file.
State load_file(const std::filesystem::path& path, const LoadOptions& options);
State load_file(const std::filesystem::path& path, c10::Device device = c10::kCPU);

// The root value of any torch.save file, as an IValue: a tensor (torch.save(tensor)), a
// list, a tuple, or a dict with any keys. Python values IValue cannot hold exactly are
// mapped as docs/format.md ("What ckpt reads, and what it refuses") says. Same checks and errors as
// load_file; options.only_keys must be empty.
c10::IValue load_value(const std::filesystem::path& path, const LoadOptions& options = {});

}  // namespace ckpt
