// The shards of multi-rank checkpoints (ckpt::distributed; docs/schema.md, "Shards"), as
// the store sees them: files other processes wrote and synced, recorded with their
// checkpoint's row, checked for at commit and at open, removed with their checkpoint.
//
// A shard file is needed while its checkpoint's row is pending, committed, consumed,
// quarantined or missing (Index::needed_shard_files). Every other shard file is garbage:
// a save that never committed (a rank or rank 0 died, or the round aborted), or a
// checkpoint replaced, rotated out or removed. One exception keeps data an index lost:
// the shards of a manifest the index has no shard rows for (adopted after an index
// rebuild, or present without any row) stay, since the manifest still lists them.
// Shard files no row names are removed only by an open's recovery: while a store is
// open, they may be a save in progress.
#include "store/store_impl.hpp"

#include <fmt/format.h>

#include <set>

#include "log/log.hpp"

namespace ckpt {

namespace {
using namespace store_files;
}  // namespace

std::vector<ShardRecord> CheckpointStore::Impl::shards_of(std::int64_t checkpoint_id) {
  ensure_resolved();
  return index_->shards(checkpoint_id);
}

// Before anything is written: the shards are one per rank of one world, named for this
// checkpoint, and every one of them is there, with its size, as rank 0 sees the
// directory. A shard missing here most often means the ranks do not share the file system.
void CheckpointStore::Impl::check_shards(const SaveRequest& request, const std::string& final_name) {
  if (request.shards.empty()) return;
  const int world = request.shards.front().world_size;
  std::vector<bool> seen(static_cast<std::size_t>(std::max(world, 0)), false);
  for (const auto& shard : request.shards) {
    auto parsed = names::parse_shard_file(shard.file);
    if (shard.world_size != world || shard.rank < 0 || shard.rank >= world || seen[static_cast<std::size_t>(shard.rank)] ||
        !parsed || parsed->manifest != final_name || parsed->rank != shard.rank || parsed->world_size != world ||
        shard.block_size == 0) {
      throw InvalidArgument(fmt::format("{}: shard {} (rank {} of {}) is not one of {}'s shards, one per rank "
                                        "0..{} (file_names.hpp's shard_file, a block size)",
                                        dir_.string(), shard.file, shard.rank, shard.world_size, final_name, world - 1),
                            dir_ / shard.file);
    }
    seen[static_cast<std::size_t>(shard.rank)] = true;
  }
  if (static_cast<int>(request.shards.size()) != world) {
    throw InvalidArgument(fmt::format("{}: {} has {} shards for a world of {}", dir_.string(), final_name,
                                      request.shards.size(), world),
                          dir_ / final_name);
  }
  for (const auto& shard : request.shards) {
    const std::filesystem::path path = dir_ / shard.file;
    auto size = fs_->file_size(path);
    if (!size || *size != shard.size) {
      throw IoError(ErrorCode::io,
                    fmt::format("{}: rank {}'s shard {}; not committing {}", path.string(), shard.rank,
                                size ? fmt::format("is {} bytes, not the {} it reported", *size, shard.size)
                                     : std::string("is not there (do all ranks write to one shared directory?)"),
                                final_name),
                    path);
    }
  }
}

// Shard files in the directory that no row needs (see the file comment), given the rows
// about to be rolled back (recovery plans before it applies).
std::vector<std::string> CheckpointStore::Impl::unneeded_shard_files(const std::vector<std::string>& files,
                                                                     const std::set<std::int64_t>& rolling_back) {
  std::vector<std::string> shard_files;
  for (const auto& name : files) {
    if (names::parse_shard_file(name)) shard_files.push_back(name);
  }
  if (shard_files.empty()) return {};
  std::set<std::string> needed;
  for (auto& file : index_->needed_shard_files()) needed.insert(std::move(file));
  for (std::int64_t id : rolling_back) {
    for (const auto& shard : index_->shards(id)) needed.erase(shard.file);
  }
  std::set<std::string> sharded;
  for (auto& file : index_->live_files_with_shards()) sharded.insert(std::move(file));
  std::set<std::string> present(files.begin(), files.end());
  std::vector<std::string> unneeded;
  for (const auto& name : shard_files) {
    if (needed.count(name)) continue;
    const std::string manifest = names::parse_shard_file(name)->manifest;
    if (!sharded.count(manifest)) {
      auto live = index_->live_row_for(manifest);
      if ((!live && present.count(manifest)) || (live && live->origin == origins::kAdopted)) {
        log::write(level_enum::info, "{}: kept: the index has no shard rows for {}, which may list it",
                   (dir_ / name).string(), manifest);
        continue;
      }
    }
    unneeded.push_back(name);
  }
  return unneeded;
}

// After deletions: the shard files of the rows this store just retired (replaced, rotated
// out, removed), and only those. Shard files no row names (a save in progress, whose
// ranks wrote and reported them before rank 0's commit; an aborted one) are left to the
// next open's recovery, which runs before any rank writes. Unsynced, like the deletion
// of the files themselves: a shard a power loss brings back is garbage at the next open.
int CheckpointStore::Impl::remove_unneeded_shards() {
  if (!shards_in_use_ || retired_with_shards_.empty()) return 0;
  std::set<std::string> needed;
  for (auto& file : index_->needed_shard_files()) needed.insert(std::move(file));
  int removed = 0;
  for (std::int64_t id : retired_with_shards_) {
    for (const auto& shard : index_->shards(id)) {
      if (needed.count(shard.file) || !fs_->file_size(dir_ / shard.file)) continue;
      fs_->remove(dir_ / shard.file);
      ++removed;
    }
  }
  retired_with_shards_.clear();
  return removed;
}

// What is wrong with a live row's shards, or empty: a shard file gone or of another size,
// or with verify_hashes another hash.
std::string CheckpointStore::Impl::shard_problem(const CheckpointRecord& row, bool verify_hashes) {
  for (const auto& shard : index_->shards(row.id)) {
    const std::filesystem::path path = dir_ / shard.file;
    auto size = fs_->file_size(path);
    if (!size) {
      return fmt::format("rank {}'s shard {} not found", shard.rank, shard.file);
    }
    if (*size != shard.size) {
      return fmt::format("rank {}'s shard {}: size {} does not match the recorded {}", shard.rank, shard.file, *size,
                         shard.size);
    }
    if (verify_hashes) {
      std::string hash = digest_of(path, shard.hash_algo).hash;
      if (hash != shard.hash) {
        return fmt::format("rank {}'s shard {}: {} hash {} does not match the recorded {}", shard.rank, shard.file,
                           shard.hash_algo, hash, shard.hash);
      }
    }
  }
  return {};
}

}  // namespace ckpt
