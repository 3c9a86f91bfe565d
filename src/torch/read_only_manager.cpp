// ReadOnlyCheckpointManager: CheckpointReader's verified bytes, decoded by the manager's
// payload codec. Nothing here opens a checkpoint file: the reader read it once and hashed
// those bytes, and the decoder reads the same bytes from memory.
#include "ckpt/read_only_manager.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "ckpt/errors.hpp"
#include "io/file_source.hpp"
#include "log/log.hpp"
#include "torch/payload_codec.hpp"

namespace ckpt {

namespace {

// The verified bytes as a PayloadSource: reads beyond the end are FormatErrors naming
// the file, as a file's are (io::check_read_range).
class VerifiedBytes final : public PayloadSource {
 public:
  VerifiedBytes(const std::vector<char>& bytes, std::filesystem::path path) : bytes_(bytes), path_(std::move(path)) {}
  std::uint64_t size() const override { return bytes_.size(); }
  void read_at(std::uint64_t offset, void* buffer, std::size_t n) override {
    io::check_read_range(path_, offset, n, bytes_.size());
    if (n > 0) std::memcpy(buffer, bytes_.data() + offset, n);
  }

 private:
  const std::vector<char>& bytes_;
  std::filesystem::path path_;
};

std::filesystem::path checked_device(std::filesystem::path dir, c10::Device device) {
  // Before the directory is opened, as the manager checks it.
  torch_layer::require_usable_device(device);
  return dir;
}

}  // namespace

ReadOnlyCheckpointManager::ReadOnlyCheckpointManager(std::filesystem::path save_dir, c10::Device device,
                                                     ReaderOptions options)
    : reader_(checked_device(std::move(save_dir), device), std::move(options)), device_(device) {}

ReadOnlyCheckpointManager::~ReadOnlyCheckpointManager() = default;
ReadOnlyCheckpointManager::ReadOnlyCheckpointManager(ReadOnlyCheckpointManager&&) noexcept = default;
ReadOnlyCheckpointManager& ReadOnlyCheckpointManager::operator=(ReadOnlyCheckpointManager&&) noexcept = default;

const std::filesystem::path& ReadOnlyCheckpointManager::save_dir() const noexcept { return reader_.dir(); }

ReadOnlyLoad ReadOnlyCheckpointManager::decoded(std::optional<ReaderLoad> load) const {
  ReadOnlyLoad result;
  if (!load) return result;
  result.skipped = std::move(load->skipped);
  const std::filesystem::path path = save_dir() / load->payload.record.file;
  {
    VerifiedBytes source(load->payload.bytes, path);
    LoadOptions options;
    options.device = device_;
    result.state = torch_layer::decode(source, options, path);
  }
  // The file's bytes go as soon as the tensors hold theirs.
  std::vector<char>().swap(load->payload.bytes);
  result.record = std::move(load->payload.record);
  log::write(spdlog::level::info, "loaded {} (read-only)", path.string());
  return result;
}

ReadOnlyLoad ReadOnlyCheckpointManager::load_latest_checkpoint() const {
  auto load = reader_.load_latest();
  if (!load) log::write(spdlog::level::info, "no checkpoint that verifies in {}", save_dir().string());
  return decoded(std::move(load));
}

ReadOnlyLoad ReadOnlyCheckpointManager::load_best_model() const {
  auto load = reader_.load_best();
  if (!load) log::write(spdlog::level::info, "no best model that verifies in {}", save_dir().string());
  return decoded(std::move(load));
}

ReadOnlyLoad ReadOnlyCheckpointManager::load(std::int64_t checkpoint_id) const {
  return decoded(reader_.load(checkpoint_id));
}

std::optional<CheckpointRecord> ReadOnlyCheckpointManager::wait_for_new(std::int64_t after_commit_seq,
                                                                        std::chrono::milliseconds timeout,
                                                                        const WaitCondition& condition) const {
  return reader_.wait_for_new(after_commit_seq, timeout, condition);
}

CheckpointPin ReadOnlyCheckpointManager::pin(std::int64_t checkpoint_id, std::chrono::milliseconds ttl,
                                             std::string holder) const {
  return reader_.pin(checkpoint_id, ttl, std::move(holder));
}

std::optional<PinnedCheckpoint> ReadOnlyCheckpointManager::wait_for_next(std::int64_t after_commit_seq,
                                                                         std::chrono::milliseconds timeout,
                                                                         std::chrono::milliseconds ttl,
                                                                         const WaitCondition& condition,
                                                                         std::string holder) const {
  // Checked here so that an InvalidArgument from pin() below can only mean "not live".
  if (ttl.count() <= 0) {
    throw InvalidArgument(fmt::format("{}: a pin's ttl must be > 0 ms, got {}", save_dir().string(), ttl.count()),
                          save_dir());
  }
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
  std::int64_t after = after_commit_seq;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto record = reader_.wait_for_new(after, std::max(left, std::chrono::milliseconds(0)), condition);
    if (!record) return std::nullopt;
    after = record->commit_seq;
    try {
      CheckpointPin pin = reader_.pin(record->id, ttl, holder);
      return PinnedCheckpoint{std::move(*record), std::move(pin)};
    } catch (const InvalidArgument& error) {
      // Rotated out (or replaced) between the wait and the pin: it cannot be loaded.
      log::write(spdlog::level::warn, "{}: {} was gone before it could be pinned, waiting for the next ({})",
                 save_dir().string(), record->file, error.what());
    }
  }
}

}  // namespace ckpt
