// Restore in place: a checkpoint read straight into an existing module's parameters and
// buffers and an optimizer's state, as load_state_dict does, without building the
// checkpoint's tensors first.
//
//   ckpt::RestoreTarget target{model.get(), &optimizer};   // under "model" and "optimizer"
//   if (auto restored = manager.load_latest_checkpoint_into(target)) {
//     start_epoch = restored->rest.get<int64_t>("epoch") + 1;
//     scheduler.load_state_dict(restored->rest.get<ckpt::State>("scheduler"));
//   }
//
// Two passes over the file, so that nothing is applied unless the whole file verifies:
//   1. Verify: the pickle is parsed into tensor placeholders (no tensor data is
//      allocated), its structure checked against the target (keys, shapes, dtypes;
//      strict: one StateError listing every difference, as load_state_dict), and the
//      whole file streamed through a 1 MiB buffer: each record's CRC-32 checked and,
//      through the manager, the whole-file hash compared with the index row. The other
//      top-level entries (epoch, metrics, scheduler, rng: small values) are decoded here.
//   2. Apply, only once pass 1 passed: each tensor record is read (pread) straight into
//      the target tensor's memory when that is a contiguous CPU tensor of the record's
//      dtype covering the whole record, else through one record-sized staging buffer,
//      reused; each record's CRC-32 is checked again (the file could have changed between
//      the passes). Tensor versions are bumped as an in-place copy_ would. The optimizer's
//      groups and state are installed last, after every record was read and checked.
// Peak extra memory: the 1 MiB buffer (and, through the manager, the store's 4 MiB
// hashing buffer) plus the largest record that is staged; an ordinary model's records
// are all read in place. The target's tensors are written in place (the same objects,
// data_ptr unchanged: an optimizer built on the parameters keeps working). Optimizer
// state tensors the optimizer already holds with the parameter's shape, dtype and device
// are written in place too; others (a fresh optimizer has none) are allocated once, as
// the result needs them.
//
// A failure in pass 1 changes nothing. A failure in pass 2 (an I/O error, a CRC mismatch
// because the file changed after pass 1) throws an error whose message names the file
// and says the target is partly restored: some of the module's tensors, and of the
// optimizer's state tensors it already had, hold the checkpoint's values, the rest their
// old ones; the optimizer's groups (learning rates, ...) and which parameters have state
// are unchanged. Restore again, or from another checkpoint (docs/durability.md, "Restore
// in place: verify, then apply").
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/file_system.hpp"
#include "ckpt/state.hpp"

namespace torch::nn {
class Module;
}
namespace torch::optim {
class Optimizer;
}

namespace ckpt {

// What load_state_dict (training.hpp) and a restore found when the checkpoint's entries
// were matched against a module.
struct LoadReport {
  std::vector<std::string> missing_keys;     // the module has them, the State does not
  std::vector<std::string> unexpected_keys;  // the State has them, the module does not
  std::vector<std::string> mismatches;       // "fc.weight: shape [2, 3] in the checkpoint, [3, 3] in the model"
  bool ok() const { return missing_keys.empty() && unexpected_keys.empty() && mismatches.empty(); }
};

// What a restore fills, and where each part lives in the checkpoint.
struct RestoreTarget {
  torch::nn::Module* module = nullptr;           // required
  torch::optim::Optimizer* optimizer = nullptr;  // optional: SGD, Adam, AdamW, RMSprop, Adagrad
  // The top-level keys of the module's and the optimizer's state_dicts: the guide's
  // {"model": ..., "optimizer": ..., "epoch": ...}. An empty model_key means the whole
  // file is the module's state_dict (Python's torch.save(model.state_dict(), path));
  // an optimizer is then refused (InvalidArgument).
  std::string model_key = "model";
  std::string optimizer_key = "optimizer";
};

struct RestoreOptions {
  // As load_state_dict's: any missing or unexpected key or mismatch in the module's
  // entries, or a missing optimizer entry, throws one StateError listing them all and
  // nothing is changed. Not strict: the entries that match are restored, and
  // RestoreResult::module says what did not (a missing optimizer entry leaves the
  // optimizer as it is). The optimizer's own state must match either way.
  bool strict = true;
  // restore_file's file-system seam (nullptr: FileSystem::posix()). The manager uses its
  // store's.
  std::shared_ptr<FileSystem> file_system;
};

struct RestoreResult {
  // The checkpoint's other top-level entries (epoch, metrics, scheduler, rng), decoded as
  // load_file decodes them (tensors on the manager's device; restore_file: the CPU).
  State rest;
  LoadReport module;  // what did not match (empty in strict mode)
};

// Restores `path` (written by save_file, the manager or Python's torch.save) into
// `target` in the two passes above. Without an index there is no whole-file hash:
// pass 1 verifies each record's CRC-32 (zip payloads; the legacy pre-1.6 format has
// none). Throws StateError (structure), FormatError and IoError naming the file (pass 1:
// nothing changed; pass 2: "partly restored"), InvalidArgument (no module, a sparse or
// meta tensor where the target has a dense one).
RestoreResult restore_file(const std::filesystem::path& path, const RestoreTarget& target,
                           const RestoreOptions& options = {});

}  // namespace ckpt
