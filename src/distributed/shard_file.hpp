// One rank's shard file of a multi-rank checkpoint (issue 16; docs/schema.md, "Shards"),
// torch-free: written durably with its whole-file hash and its block hashes in the same
// pass, and read back by byte ranges, every block a read touches checked against its
// hash, so a resharding load that reads only part of a shard still uses no unverified byte.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/file_system.hpp"
#include "ckpt/store.hpp"

namespace ckpt::distributed {

// The granularity of a shard's block hashes: a range read costs at most one block more
// at each end; 1 GiB of shards carries 16 KiB of hashes.
inline constexpr std::uint64_t kShardBlockSize = 1 << 20;

// Writes what `write` produces to `dir / file` durably: a temp file (`<file>.<pid>-<n>.tmp`),
// fsync, rename, directory fsync. Returns the shard's record: size, whole-file hash by
// `algorithm`, block hashes (xxh3-64 per kShardBlockSize), rank and world size; placement
// is the caller's. Throws IoError naming the file (the temp file is removed; a process
// killed midway leaves it for the next open's recovery) or what `write` throws.
ShardRecord write_shard(FileSystem& fs, const std::filesystem::path& dir, const std::string& file, int rank,
                        int world_size, HashAlgorithm algorithm, const PayloadWriter& write);

// The block hashes of `bytes` as write_shard records them (for tests and tools).
std::string block_hashes_of(const void* data, std::size_t n, std::uint64_t block_size = kShardBlockSize);

// A shard file as a PayloadSource whose every read is checked: read_at reads the blocks
// the range touches (keeping the last one read, so sequential small reads cost nothing
// extra) and throws CorruptError naming the file and the block when one does not match
// its hash, FormatError for a range beyond the recorded size, IoError when it cannot be
// read. A file of another size than recorded is CorruptError at construction.
class VerifiedShardSource final : public PayloadSource {
 public:
  VerifiedShardSource(FileSystem& fs, std::filesystem::path path, const ShardRecord& shard);
  ~VerifiedShardSource() override;
  std::uint64_t size() const override { return size_; }
  void read_at(std::uint64_t offset, void* buffer, std::size_t n) override;
  // Bytes read from the file so far (whole blocks): what a partial load cost.
  std::uint64_t bytes_read() const noexcept { return bytes_read_; }

 private:
  void load_block(std::uint64_t block);

  std::filesystem::path path_;
  std::unique_ptr<ReadableFile> file_;
  std::uint64_t size_ = 0;
  std::uint64_t block_size_ = 0;
  std::vector<std::uint64_t> hashes_;
  std::vector<char> block_;
  std::uint64_t cached_block_ = UINT64_MAX;
  std::uint64_t bytes_read_ = 0;
};

}  // namespace ckpt::distributed
