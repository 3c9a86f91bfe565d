// Restore in place's two passes (ckpt/restore.hpp), for restore_file and the manager.
#pragma once

#include <c10/core/Device.h>

#include <filesystem>
#include <memory>

#include "ckpt/payload_io.hpp"
#include "ckpt/restore.hpp"

namespace ckpt::torch_layer {

class InPlaceRestore {
 public:
  // `rest_device`: where the other entries' tensors go.
  InPlaceRestore(const RestoreTarget& target, const RestoreOptions& options, c10::Device rest_device);
  ~InPlaceRestore();
  InPlaceRestore(const InPlaceRestore&) = delete;
  InPlaceRestore& operator=(const InPlaceRestore&) = delete;

  // Pass 1, on a source the caller may be hashing: parses, checks against the target,
  // reads every record once (CRC-32), decodes the other entries. Changes nothing in the
  // target. Each call replaces the previous call's result.
  void verify(PayloadSource& source, const std::filesystem::path& path);
  // Pass 2, on the same file (REQUIRES: verify returned for it): writes the tensors into
  // the target, then installs the optimizer state. Errors say "partly restored".
  void apply(PayloadSource& source, const std::filesystem::path& path);
  // What apply left for the caller. REQUIRES: apply returned.
  RestoreResult take_result();

 private:
  struct Plan;
  RestoreTarget target_;
  RestoreOptions options_;
  c10::Device rest_device_;
  std::unique_ptr<Plan> plan_;
};

}  // namespace ckpt::torch_layer
