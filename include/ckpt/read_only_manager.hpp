// ReadOnlyCheckpointManager: the manager's loads for an evaluator (or any other reader)
// running beside the trainer that owns the directory.
//
// CheckpointManager takes the directory's writer lock, so a second one, such as the
// guide's evaluation script started while training runs, fails with LockedError. This
// class opens the directory as a CheckpointReader (ckpt/reader.hpp) does: it never takes
// the lock, never recovers, never quarantines, never marks an interrupt checkpoint
// consumed, never records an event; it writes nothing but the `pins` rows it is asked
// for. Its loads are the manager's verified loads (the whole file's hash against its
// index row; a candidate that does not match is passed over and reported, not retired)
// decoded into the manager's State, with tensors on the chosen device. It works on a
// read-only directory (ReaderOptions::access; docs/durability.md, "Readers", for what the
// immutable mode costs).
//
// The evaluator's loop (docs/training.md, "Evaluating beside a running trainer"):
//
//   ckpt::ReadOnlyCheckpointManager checkpoints("checkpoints", torch::kCPU);
//   std::int64_t seen = 0;
//   while (auto next = checkpoints.wait_for_next(seen, std::chrono::minutes(10), std::chrono::minutes(5))) {
//     seen = next->record.commit_seq;
//     auto loaded = checkpoints.load(next->record.id);  // pinned: rotation keeps it
//     if (loaded) evaluate(*loaded.state);
//   }                                                   // the pin is released here
//
// Each load reads the file once into memory, hashes those bytes and decodes the same
// bytes: nothing is read again after verification, so a file replaced meanwhile cannot
// slip through. The cost: the file's bytes and the decoded tensors are both in memory
// while it decodes (about twice the checkpoint's size at the peak).
//
// Thread safety: as CheckpointReader's (one thread at a time, or guard it).
#pragma once

#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/reader.hpp"
#include "ckpt/state.hpp"
#include "ckpt/store.hpp"

namespace ckpt {

// What a read-only load returns. `state` and `record` are both set (the state decoded
// from the file of that index row) or both empty (nothing verified). `skipped` lists,
// newest first, each candidate passed over and why, naming its file
// ("checkpoint_epoch_3.pth: xxh3-128 hash ..., index recorded ..."): also when nothing
// verified, so an evaluator can say why there is nothing to evaluate.
struct ReadOnlyLoad {
  std::optional<State> state;
  std::optional<CheckpointRecord> record;
  std::vector<SkippedCheckpoint> skipped;

  explicit operator bool() const noexcept { return state.has_value(); }
};

// A checkpoint wait_for_next found and pinned: rotation does not delete it while `pin`
// is held (the pin's destructor releases it; CheckpointPin, ckpt/reader.hpp).
struct PinnedCheckpoint {
  CheckpointRecord record;
  CheckpointPin pin;
};

class ReadOnlyCheckpointManager {
 public:
  // Opens `save_dir` read-only (the manager's default directory name). A directory that
  // does not exist yet or has no index yet (the evaluator started before the trainer) is
  // not an error: it holds nothing yet (loads return no state, wait_for_new and
  // wait_for_next wait for the trainer's first commit), and is opened on the first call
  // that finds its index; a warning says so. Throws InvalidArgument for a device this
  // libtorch build cannot use (checked first), and as CheckpointReader's constructor
  // once the index exists: IndexError when it is damaged or a newer ckpt wrote it (each
  // call retries the open until it succeeds).
  explicit ReadOnlyCheckpointManager(std::filesystem::path save_dir = "checkpoint", c10::Device device = c10::kCPU,
                                     ReaderOptions options = {});
  ~ReadOnlyCheckpointManager();
  ReadOnlyCheckpointManager(ReadOnlyCheckpointManager&&) noexcept;
  ReadOnlyCheckpointManager& operator=(ReadOnlyCheckpointManager&&) noexcept;

  // What CheckpointManager::load_latest_checkpoint() would load (the most recently
  // committed epoch, step or interrupt checkpoint), passing over candidates that do not
  // verify to the next older one. An interrupt checkpoint is loaded but not consumed
  // (that is the trainer's resume). Throws FormatError naming the file when a file that
  // matches its row cannot be decoded, IndexError when the index cannot be read.
  ReadOnlyLoad load_latest_checkpoint() const;
  // What CheckpointManager::load_best_model() would load. A best model that does not
  // verify has no fallback: state empty, and `skipped` says why. Errors as above.
  ReadOnlyLoad load_best_model() const;
  // The checkpoint with index id `checkpoint_id` (a CheckpointRecord's id). State empty
  // when no live row has that id (never committed, rotated out, replaced, retired).
  // Throws CorruptError naming the file when its file does not match the row (missing,
  // another size or hash), IoError naming it when it cannot be read, FormatError as above.
  ReadOnlyLoad load(std::int64_t checkpoint_id) const;

  // CheckpointReader::wait_for_new: the first checkpoint committed after
  // `after_commit_seq` that matches `condition`, in commit order, or nullopt when
  // `timeout` passes first. Pass the last record's commit_seq to get the next one.
  std::optional<CheckpointRecord> wait_for_new(std::int64_t after_commit_seq, std::chrono::milliseconds timeout,
                                               const WaitCondition& condition = {}) const;
  // CheckpointReader::pin: a lease of `ttl` on a live checkpoint. Throws InvalidArgument
  // (ttl <= 0, or the checkpoint is not live), IoError (permission_denied) when this user
  // cannot write the index.
  CheckpointPin pin(std::int64_t checkpoint_id, std::chrono::milliseconds ttl, std::string holder = {}) const;
  // wait_for_new, then pin, as one step: the next matching checkpoint committed after
  // `after_commit_seq`, pinned for `ttl`. One rotated out between being seen and being
  // pinned is passed over (logged) and the wait goes on to the next commit, within the
  // same `timeout`. nullopt when `timeout` passes first. Throws InvalidArgument for
  // ttl <= 0, IoError (permission_denied) when pins cannot be written.
  std::optional<PinnedCheckpoint> wait_for_next(std::int64_t after_commit_seq, std::chrono::milliseconds timeout,
                                                std::chrono::milliseconds ttl, const WaitCondition& condition = {},
                                                std::string holder = {}) const;

  const std::filesystem::path& save_dir() const noexcept;
  c10::Device device() const noexcept { return device_; }
  // The reader underneath, for index queries (checkpoints(), best(), metrics(), events()).
  // Throws IndexError naming the directory while it has no index.
  const CheckpointReader& reader() const;

 private:
  // The reader, opened now if the index has appeared; nullptr while there is none.
  const CheckpointReader* open() const;
  ReadOnlyLoad decoded(ReaderLoad&& load) const;

  std::filesystem::path save_dir_;
  ReaderOptions options_;
  c10::Device device_;
  mutable std::unique_ptr<CheckpointReader> reader_;  // opened once the index exists
};

}  // namespace ckpt
