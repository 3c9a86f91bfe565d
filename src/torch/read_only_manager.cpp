// ReadOnlyCheckpointManager: CheckpointReader's verified bytes, decoded by the manager's
// payload codec. Nothing here opens a checkpoint file: the reader read it once and hashed
// those bytes, and the decoder reads the same bytes from memory.
#include "ckpt/read_only_manager.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "ckpt/errors.hpp"
#include "ckpt/layout.hpp"
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

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds until(Clock::time_point deadline) {
  return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()),
                  std::chrono::milliseconds(0));
}

}  // namespace

ReadOnlyCheckpointManager::ReadOnlyCheckpointManager(std::filesystem::path save_dir, c10::Device device,
                                                     ReaderOptions options)
    : save_dir_(std::move(save_dir)), options_(std::move(options)), device_(device) {
  // Before the directory is opened, as the manager checks it.
  torch_layer::require_usable_device(device);
  if (!options_.file_system) options_.file_system = FileSystem::posix();
  if (!open()) {
    log::write(spdlog::level::warn, "{}: no {} yet (no trainer has opened it): nothing to load until one does",
               save_dir_.string(), layout::kIndex);
  }
}

ReadOnlyCheckpointManager::~ReadOnlyCheckpointManager() = default;
ReadOnlyCheckpointManager::ReadOnlyCheckpointManager(ReadOnlyCheckpointManager&&) noexcept = default;
ReadOnlyCheckpointManager& ReadOnlyCheckpointManager::operator=(ReadOnlyCheckpointManager&&) noexcept = default;

const std::filesystem::path& ReadOnlyCheckpointManager::save_dir() const noexcept { return save_dir_; }

const CheckpointReader* ReadOnlyCheckpointManager::open() const {
  if (!reader_ && options_.file_system->file_size(save_dir_ / layout::kIndex)) {
    reader_ = std::make_unique<CheckpointReader>(save_dir_, options_);
  }
  return reader_.get();
}

const CheckpointReader& ReadOnlyCheckpointManager::reader() const {
  if (const CheckpointReader* reader = open()) return *reader;
  throw IndexError(ErrorCode::index,
                   fmt::format("{}: no {} yet (no trainer has opened this directory)", save_dir_.string(),
                               layout::kIndex),
                   save_dir_ / layout::kIndex);
}

ReadOnlyLoad ReadOnlyCheckpointManager::decoded(ReaderLoad&& load) const {
  ReadOnlyLoad result;
  result.skipped = std::move(load.skipped);
  const std::filesystem::path path = save_dir() / load.payload.record.file;
  {
    VerifiedBytes source(load.payload.bytes, path);
    LoadOptions options;
    options.device = device_;
    result.state = torch_layer::decode(source, options, path);
  }
  // The file's bytes go as soon as the tensors hold theirs.
  std::vector<char>().swap(load.payload.bytes);
  result.record = std::move(load.payload.record);
  log::write(spdlog::level::info, "loaded {} (read-only)", path.string());
  return result;
}

ReadOnlyLoad ReadOnlyCheckpointManager::load_latest_checkpoint() const {
  ReadOnlyLoad none;
  const CheckpointReader* reader = open();
  if (auto load = reader ? reader->load_latest(&none.skipped) : std::nullopt) return decoded(std::move(*load));
  log::write(spdlog::level::info, "no checkpoint that verifies in {}", save_dir().string());
  return none;
}

ReadOnlyLoad ReadOnlyCheckpointManager::load_best_model() const {
  ReadOnlyLoad none;
  const CheckpointReader* reader = open();
  if (auto load = reader ? reader->load_best(&none.skipped) : std::nullopt) return decoded(std::move(*load));
  log::write(spdlog::level::info, "no best model that verifies in {}", save_dir().string());
  return none;
}

ReadOnlyLoad ReadOnlyCheckpointManager::load(std::int64_t checkpoint_id) const {
  const CheckpointReader* reader = open();
  auto load = reader ? reader->load(checkpoint_id) : std::nullopt;
  if (!load) return {};
  return decoded(std::move(*load));
}

std::optional<CheckpointRecord> ReadOnlyCheckpointManager::wait_for_new(std::int64_t after_commit_seq,
                                                                        std::chrono::milliseconds timeout,
                                                                        const WaitCondition& condition) const {
  // Until the trainer creates the index, there is nothing to wait on but the file.
  const auto deadline = Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
  while (!open()) {
    const auto left = until(deadline);
    if (left.count() == 0) return std::nullopt;
    std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(200)));
  }
  return reader_->wait_for_new(after_commit_seq, until(deadline), condition);
}

CheckpointPin ReadOnlyCheckpointManager::pin(std::int64_t checkpoint_id, std::chrono::milliseconds ttl,
                                             std::string holder) const {
  return reader().pin(checkpoint_id, ttl, std::move(holder));
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
  const auto deadline = Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
  std::int64_t after = after_commit_seq;
  for (;;) {
    auto record = wait_for_new(after, until(deadline), condition);
    if (!record) return std::nullopt;
    after = record->commit_seq;
    try {
      CheckpointPin pin = reader_->pin(record->id, ttl, holder);
      return PinnedCheckpoint{std::move(*record), std::move(pin)};
    } catch (const InvalidArgument& error) {
      // Rotated out (or replaced) between the wait and the pin: it cannot be loaded.
      log::write(spdlog::level::warn, "{}: {} was gone before it could be pinned, waiting for the next ({})",
                 save_dir().string(), record->file, error.what());
    }
  }
}

}  // namespace ckpt
