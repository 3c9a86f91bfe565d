// Every name the store gives a file in a checkpoint directory, in one place, with the
// parser that maps a name back to what it is (see tests/core/file_names_test.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ckpt/layout.hpp"
#include "ckpt/store.hpp"

namespace ckpt::names {

// The guide's names (their home is the public ckpt/layout.hpp).
inline constexpr std::string_view kBestModel = layout::kBestModel;
inline constexpr std::string_view kEpochPrefix = layout::kEpochPrefix;
inline constexpr std::string_view kStepPrefix = layout::kStepPrefix;
inline constexpr std::string_view kInterrupt = layout::kInterrupt;
inline constexpr std::string_view kPayloadSuffix = layout::kPayloadSuffix;

inline constexpr std::string_view kIndex = layout::kIndex;
inline constexpr std::string_view kLock = layout::kLock;
inline constexpr std::string_view kQuarantineDir = "quarantine";
inline constexpr std::string_view kTempSuffix = ".tmp";
inline constexpr std::string_view kShardInfix = ".shard-";

// checkpoint_epoch_<epoch>.pth. REQUIRES: epoch >= 0.
std::string epoch_file(std::int64_t epoch);
// checkpoint_step_<step>.pth. REQUIRES: step >= 0.
std::string step_file(std::int64_t step);
// The file name of a checkpoint of this kind. For kind == epoch: step_file(step) when a
// step is given (the epoch is then only recorded), else epoch_file(epoch).
// REQUIRES: kind != epoch, or epoch or step set. The best model and the interrupt
// checkpoint keep their one name whatever their epoch and step.
std::string checkpoint_file(CheckpointKind kind, std::optional<std::int64_t> epoch,
                            std::optional<std::int64_t> step = std::nullopt);

// `<final>.<pid>-<sequence>.tmp`: unique per process and save, so concurrent attempts
// never share a temp file, and still `<final>...tmp` like the guide's `<final>.tmp`.
std::string temp_file(std::string_view final_name, long pid, std::uint64_t sequence);

// One rank's shard of a multi-rank checkpoint whose manifest is `manifest` (a name of
// checkpoint_file's; docs/schema.md, "Shards"):
//   <manifest stem>.shard-<rank>-of-<world size>.<token>.pth
// e.g. checkpoint_epoch_5.shard-2-of-4.3f9a1c07-12.pth. `token` names the save attempt
// (ckpt::distributed: the run's id and the save's number), so the shards of a new best
// model never overwrite the committed best's until the new one commits.
// REQUIRES: 0 <= rank < world_size; token non-empty, of [0-9a-z-] only.
std::string shard_file(std::string_view manifest, int rank, int world_size, std::string_view token);
struct ParsedShardName {
  std::string manifest;  // the checkpoint file it belongs to (best_model.pth, ...)
  int rank = 0;
  int world_size = 0;
  std::string token;
};
// Recognises shard_file's names (canonical numbers, a manifest name parse_checkpoint_file
// accepts), and nothing else: parse_shard_file(shard_file(m, r, w, t)) == {m, r, w, t}.
std::optional<ParsedShardName> parse_shard_file(std::string_view name);

struct ParsedCheckpointName {
  CheckpointKind kind;
  std::optional<std::int64_t> epoch;  // checkpoint_epoch_N.pth's N
  std::optional<std::int64_t> step;   // checkpoint_step_N.pth's N (kind epoch, epoch unset)
};
// Recognises the guide's three names and checkpoint_step_N.pth. Numbers must be
// canonical decimal (no sign, no leading zeros) so that parse(format(x)) == x and back.
std::optional<ParsedCheckpointName> parse_checkpoint_file(std::string_view name);

// A temp file of ours or of the guide's Python implementation: a checkpoint name
// followed by anything and ending in ".tmp".
bool is_temp_file(std::string_view name);
// One of ours (temp_file's `<final>.<pid>-<sequence>.tmp`), not another writer's.
bool is_own_temp_file(std::string_view name);

// The state entries the guide's examples name: the epoch a state is of, and the
// validation metric its loop saves as `val_acc`.
inline constexpr std::string_view kEpochEntry = "epoch";
inline constexpr std::string_view kGuideMetric = "val_acc";

}  // namespace ckpt::names
