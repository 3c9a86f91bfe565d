#include "ckpt/manager.hpp"

#include "torch/payload_codec.hpp"
#include "util/log.hpp"

namespace ckpt {

namespace {

using torch_layer::PayloadCodec;

StoreOptions with_max_to_keep(StoreOptions options, int max_to_keep) {
  options.max_to_keep = max_to_keep;
  return options;
}

}  // namespace

CheckpointManager::CheckpointManager(std::filesystem::path save_dir, c10::Device device, int max_to_keep)
    : CheckpointManager(std::move(save_dir), device, max_to_keep, StoreOptions{}) {}

CheckpointManager::CheckpointManager(std::filesystem::path save_dir, c10::Device device, int max_to_keep,
                                     StoreOptions options)
    : device_(device) {
  // Checked before the directory is touched: a bad device must not leave a lock behind.
  torch_layer::require_usable_device(device);
  store_ = std::make_unique<CheckpointStore>(std::move(save_dir), with_max_to_keep(std::move(options), max_to_keep));
}

CheckpointManager::~CheckpointManager() = default;
CheckpointManager::CheckpointManager(CheckpointManager&&) noexcept = default;
CheckpointManager& CheckpointManager::operator=(CheckpointManager&&) noexcept = default;

CheckpointRecord CheckpointManager::save_best_model(const State& state, double metric) {
  auto payload = PayloadCodec::standard().encode(state);
  auto record = store_->save(CheckpointKind::best, std::nullopt, metric, payload.size_hint, payload.write);
  log::write(spdlog::level::info, "saved best model (metric {}) to {}", metric, (save_dir() / record.file).string());
  return record;
}

std::optional<State> CheckpointManager::load_best_model() {
  auto payload = store_->load_best();
  if (!payload) {
    log::write(spdlog::level::info, "no best model in {}", save_dir().string());
    return std::nullopt;
  }
  State state = PayloadCodec::standard().decode(payload->bytes, device_, save_dir() / payload->record.file);
  log::write(spdlog::level::info, "loaded best model from {}", (save_dir() / payload->record.file).string());
  return state;
}

CheckpointRecord CheckpointManager::save_epoch_checkpoint(const State& state, std::int64_t epoch,
                                                          std::optional<double> metric) {
  auto payload = PayloadCodec::standard().encode(state);
  auto record = store_->save(CheckpointKind::epoch, epoch, metric, payload.size_hint, payload.write);
  log::write(spdlog::level::info, "saved epoch {} checkpoint to {}", epoch, (save_dir() / record.file).string());
  return record;
}

std::optional<State> CheckpointManager::load_latest_checkpoint() {
  auto payload = store_->load_latest();
  if (!payload) {
    log::write(spdlog::level::info, "no checkpoint to resume from in {}", save_dir().string());
    return std::nullopt;
  }
  return PayloadCodec::standard().decode(payload->bytes, device_, save_dir() / payload->record.file);
}

CheckpointRecord CheckpointManager::save_interrupt_checkpoint(const State& state) {
  log::write(spdlog::level::warn, "training interrupted: saving an interrupt checkpoint in {}", save_dir().string());
  auto payload = PayloadCodec::standard().encode(state);
  auto record = store_->save(CheckpointKind::interrupt, std::nullopt, std::nullopt, payload.size_hint, payload.write);
  log::write(spdlog::level::critical, "interrupt checkpoint saved to {}; it is safe to exit",
             (save_dir() / record.file).string());
  return record;
}

const std::filesystem::path& CheckpointManager::save_dir() const noexcept { return store_->dir(); }
int CheckpointManager::max_to_keep() const noexcept { return store_->max_to_keep(); }

}  // namespace ckpt
