// Helpers for the torch-free store tests: payloads that look like real .pth archives,
// saving raw bytes, and the invariant checker every crash test ends with.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/store.hpp"

namespace ckpt::test {

// A small, real .pth payload (torch.save's zip layout, written by ckpt's writer, which the
// restricted reader reads whole): {"seed": seed, "data": a uint8 tensor of `data_size`
// bytes that depend on `seed`}, so different seeds give different bytes and hashes.
std::string zip_payload(int seed, std::size_t data_size = 4096);
// A state in the guide's shape, as its Python loop saves it: {"epoch": epoch, "model":
// {"w": 16 float32 values from `seed`}, "best_acc": best_acc, "val_acc": val_acc}.
std::string guide_payload(std::int64_t epoch, double val_acc, double best_acc, int seed);

// Bytes that differ from every other seed's at almost every offset, so a file cut short,
// holding parts of two writes, or a record read from the wrong place shows.
std::string pattern(std::size_t size, std::uint32_t seed = 1);

// Store options on the file system `fs` (a FaultFileSystem, say), keeping `max_to_keep`.
StoreOptions options_with(std::shared_ptr<FileSystem> fs, int max_to_keep = StoreOptions{}.max_to_keep);

// A loaded checkpoint's bytes, as a string to compare with a payload.
inline std::string payload_text(const VerifiedPayload& payload) { return std::string(payload.bytes.begin(), payload.bytes.end()); }

CheckpointRecord save_bytes(CheckpointStore& store, CheckpointKind kind, std::optional<std::int64_t> epoch,
                            const std::string& bytes, std::optional<double> metric = std::nullopt);
CheckpointRecord save_epoch(CheckpointStore& store, std::int64_t epoch, const std::string& bytes);
// Saves epochs `first` to `last`, each with zip_payload(epoch).
void save_epochs(CheckpointStore& store, std::int64_t first, std::int64_t last);

struct IndexRow {
  std::int64_t id;
  std::string kind;
  std::optional<std::int64_t> epoch;
  std::string file;
  std::string hash;
  std::string status;
};
// All rows of the index, read through a separate read-only connection.
std::vector<IndexRow> index_rows(const std::filesystem::path& dir);
std::vector<std::string> index_events(const std::filesystem::path& dir);
std::string xxh3_of(const std::filesystem::path& path);

// Checks the core invariants on a directory whose store is closed:
//   1. every committed or consumed row's file exists with the recorded size and hash;
//   2. no temp files remain and every checkpoint-named file has such a row;
//   3. every such row's shards are there with their recorded size and hash, and no other
//      shard file is;
//   and no row is left pending, and PRAGMA integrity_check says ok.
// Returns one line per violation; empty when all hold.
std::vector<std::string> invariant_violations(const std::filesystem::path& dir);

// A test's knob from the environment (CKPT_KILL_ROUNDS, ...): its number, or `fallback`
// when the variable is unset.
double env_number(const char* name, double fallback);

// Runs `body` in a forked child and returns its exit status (or 128 + signal).
int run_in_child(const std::function<void()>& body);

}  // namespace ckpt::test
