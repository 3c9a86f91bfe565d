// CheckpointReader: read-only access to a checkpoint directory's index and files.
//
// For tools and scripts beside a running trainer: it never takes the writer lock, never
// writes, never recovers (a reader sees the directory as the last commit left it; the
// writer repairs on its next open). SQLite's WAL mode lets it read while the writer
// writes. Torch-free: a program that links only ckpt::core starts in milliseconds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/file_system.hpp"
#include "ckpt/store.hpp"

namespace ckpt {

struct CheckpointEvent {
  std::int64_t id = 0;
  std::string at;     // UTC, ISO-8601
  std::string event;  // saved, new_best, rotated_out, resumed_from, ... (docs/schema.md)
  std::optional<std::int64_t> checkpoint_id;
  std::string detail;
};

struct VerifyResult {
  CheckpointRecord record;
  bool ok = false;
  std::string problem;  // empty when ok: "missing", "size 10 != 20", "hash ... != ...",
                        // "would not load: <the restricted reader's refusal>"
};

class CheckpointReader {
 public:
  // Throws IndexError when the directory has no index (not a ckpt directory), the index
  // is damaged, or it was written by a newer ckpt.
  explicit CheckpointReader(std::filesystem::path dir, std::shared_ptr<FileSystem> file_system = nullptr);
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;
  CheckpointReader& operator=(CheckpointReader&&) noexcept;

  const std::filesystem::path& dir() const noexcept;
  // Committed and consumed checkpoints; with `include_history`, every row ever written.
  std::vector<CheckpointRecord> checkpoints(bool include_history = false) const;
  // What load_latest_checkpoint() would load, and what load_best_model() would.
  std::optional<CheckpointRecord> latest() const;
  std::optional<CheckpointRecord> best() const;
  std::vector<CheckpointEvent> events() const;
  // Every named metric of every row (history included), by checkpoint id, then in the
  // order recorded.
  std::vector<NamedMetric> metrics() const;
  // What CheckpointStore::gc(keep) would remove now (rotation's order; default: the
  // retention the last writer used, else 5; 0 keeps all). Changes nothing.
  std::vector<CheckpointRecord> gc_plan(std::optional<int> keep = std::nullopt) const;
  // The retention the last writer used, if recorded.
  std::optional<int> max_to_keep() const;
  // SQLite's integrity check of the index: "ok", or what is damaged.
  std::string integrity_check() const;
  // Rehashes every committed or consumed checkpoint file against its row.
  // `progress(bytes_done, bytes_total)` is called as files are read.
  std::vector<VerifyResult> verify(const std::function<void(std::uint64_t, std::uint64_t)>& progress = {}) const;

 private:
  VerifyResult verify_one(const CheckpointRecord& row) const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ckpt
