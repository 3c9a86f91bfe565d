#include "distributed/shard_file.hpp"

#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cstring>
#include <fmt/format.h>

#include "ckpt/errors.hpp"
#include "io/temp_file.hpp"
#include "store/file_names.hpp"

namespace ckpt::distributed {

namespace {

std::string hex64(std::uint64_t value) { return fmt::format("{:016x}", value); }

// Passes bytes on to a HashingTempFile and hashes them again per block, in one pass.
class BlockHashingSink final : public ByteSink {
 public:
  BlockHashingSink(ByteSink& next, std::uint64_t block_size)
      : next_(next), block_size_(block_size), state_(XXH3_createState()) {
    if (state_ == nullptr) throw std::bad_alloc();
    XXH3_64bits_reset(state_);
  }
  ~BlockHashingSink() override { XXH3_freeState(state_); }
  void write(const void* data, std::size_t n) override {
    next_.write(data, n);
    const char* bytes = static_cast<const char*>(data);
    while (n > 0) {
      const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(n, block_size_ - in_block_));
      XXH3_64bits_update(state_, bytes, take);
      in_block_ += take;
      bytes += take;
      n -= take;
      if (in_block_ == block_size_) end_block();
    }
  }
  std::string finish() {
    if (in_block_ > 0) end_block();
    return std::move(hashes_);
  }

 private:
  void end_block() {
    hashes_ += hex64(XXH3_64bits_digest(state_));
    XXH3_64bits_reset(state_);
    in_block_ = 0;
  }
  ByteSink& next_;
  std::uint64_t block_size_;
  XXH3_state_t* state_;
  std::uint64_t in_block_ = 0;
  std::string hashes_;
};

std::atomic<std::uint64_t> g_temp_sequence{0};

}  // namespace

std::string block_hashes_of(const void* data, std::size_t n, std::uint64_t block_size) {
  std::string hashes;
  const char* bytes = static_cast<const char*>(data);
  for (std::size_t at = 0; at < n; at += block_size) {
    hashes += hex64(XXH3_64bits(bytes + at, static_cast<std::size_t>(std::min<std::uint64_t>(block_size, n - at))));
  }
  return hashes;
}

ShardRecord write_shard(FileSystem& fs, const std::filesystem::path& dir, const std::string& file, int rank,
                        int world_size, HashAlgorithm algorithm, const PayloadWriter& write) {
  const std::filesystem::path path = dir / file;
  io::HashingTempFile temp(fs, dir / names::temp_file(file, ::getpid(), ++g_temp_sequence), algorithm);
  BlockHashingSink blocks(temp, kShardBlockSize);
  write(blocks);
  ShardRecord shard;
  shard.rank = rank;
  shard.world_size = world_size;
  shard.file = file;
  shard.block_size = kShardBlockSize;
  shard.block_hashes = blocks.finish();
  const io::FileDigest digest = temp.sync_and_close();
  shard.size = digest.size;
  shard.hash = digest.hash;
  shard.hash_algo = std::string(to_string(algorithm));
  fs.rename(temp.path(), path);
  temp.release();
  // Before this rank reports its shard, the name must survive a power loss: rank 0
  // commits the checkpoint on the strength of the report.
  fs.sync_dir(dir);
  return shard;
}

VerifiedShardSource::VerifiedShardSource(FileSystem& fs, std::filesystem::path path, const ShardRecord& shard)
    : path_(std::move(path)), size_(shard.size), block_size_(shard.block_size) {
  const std::uint64_t blocks = block_size_ == 0 ? 0 : (size_ + block_size_ - 1) / block_size_;
  // A block is read into memory whole: its size is bounded whatever a record says.
  if (block_size_ == 0 || block_size_ > (std::uint64_t{64} << 20) || shard.block_hashes.size() != blocks * 16) {
    throw CorruptError(ErrorCode::corrupt,
                       fmt::format("{}: rank {}'s shard record has {} block hash digits for {} bytes in blocks of {}",
                                   path_.string(), shard.rank, shard.block_hashes.size(), size_, block_size_),
                       path_);
  }
  hashes_.reserve(blocks);
  for (std::uint64_t i = 0; i < blocks; ++i) {
    std::uint64_t value = 0;
    for (char c : shard.block_hashes.substr(i * 16, 16)) {
      const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (digit < 0) {
        throw CorruptError(ErrorCode::corrupt, fmt::format("{}: block hash {} is not hex", path_.string(), i), path_);
      }
      value = value << 4 | static_cast<std::uint64_t>(digit);
    }
    hashes_.push_back(value);
  }
  auto actual = fs.file_size(path_);
  if (!actual || *actual != size_) {
    throw CorruptError(ErrorCode::corrupt,
                       fmt::format("{}: rank {}'s shard is {}, not the {} bytes its checkpoint recorded", path_.string(),
                                   shard.rank, actual ? fmt::format("{} bytes", *actual) : std::string("missing"),
                                   size_),
                       path_);
  }
  file_ = fs.open_for_read(path_);
}

VerifiedShardSource::~VerifiedShardSource() = default;

void VerifiedShardSource::load_block(std::uint64_t block) {
  if (block == cached_block_) return;
  const std::uint64_t begin = block * block_size_;
  const std::size_t length = static_cast<std::size_t>(std::min(block_size_, size_ - begin));
  block_.resize(length);
  std::size_t got = 0;
  while (got < length) {
    std::size_t n = file_->read_at(begin + got, block_.data() + got, length - got);
    if (n == 0) {
      throw CorruptError(ErrorCode::corrupt, fmt::format("{}: ends inside block {}", path_.string(), block), path_);
    }
    got += n;
  }
  bytes_read_ += length;
  if (XXH3_64bits(block_.data(), length) != hashes_[block]) {
    cached_block_ = UINT64_MAX;
    throw CorruptError(ErrorCode::corrupt,
                       fmt::format("{}: bytes {} to {} do not match the block hash its checkpoint recorded",
                                   path_.string(), begin, begin + length),
                       path_);
  }
  cached_block_ = block;
}

void VerifiedShardSource::read_at(std::uint64_t offset, void* buffer, std::size_t n) {
  if (offset > size_ || n > size_ - offset) {
    throw FormatError(ErrorCode::format,
                      fmt::format("{}: a read of {} bytes at {} goes past its end ({} bytes)", path_.string(), n,
                                  offset, size_),
                      path_);
  }
  char* out = static_cast<char*>(buffer);
  while (n > 0) {
    const std::uint64_t block = offset / block_size_;
    const std::size_t within = static_cast<std::size_t>(offset - block * block_size_);
    const std::size_t take = std::min<std::size_t>(n, static_cast<std::size_t>(block_size_) - within);
    if (within == 0 && take == block_size_ && block != cached_block_) {
      // A whole block straight into the caller's buffer, checked there.
      std::size_t got = 0;
      while (got < take) {
        std::size_t r = file_->read_at(offset + got, out + got, take - got);
        if (r == 0) throw CorruptError(ErrorCode::corrupt, fmt::format("{}: ends early", path_.string()), path_);
        got += r;
      }
      bytes_read_ += take;
      if (XXH3_64bits(out, take) != hashes_[block]) {
        throw CorruptError(ErrorCode::corrupt,
                           fmt::format("{}: bytes {} to {} do not match the block hash its checkpoint recorded",
                                       path_.string(), offset, offset + take),
                           path_);
      }
    } else {
      load_block(block);
      std::memcpy(out, block_.data() + within, take);
    }
    offset += take;
    out += take;
    n -= take;
  }
}

}  // namespace ckpt::distributed
