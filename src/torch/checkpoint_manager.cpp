#include "ckpt/manager.hpp"

#include "torch/payload_codec.hpp"
#include "util/log.hpp"

namespace ckpt {

namespace {


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
  auto payload = torch_layer::encode(state);
  auto record = store_->save(CheckpointKind::best, std::nullopt, metric, payload.size_hint, payload.write);
  log::write(spdlog::level::info, "saved best model (metric {}) to {}", metric, (save_dir() / record.file).string());
  return record;
}

std::optional<State> CheckpointManager::load_best_model() {
  std::optional<State> state;
  auto record = store_->load_best(decoder_into(state));
  if (!record) {
    log::write(spdlog::level::info, "no best model in {}", save_dir().string());
    return std::nullopt;
  }
  log::write(spdlog::level::info, "loaded best model from {}", (save_dir() / record->file).string());
  return state;
}

CheckpointRecord CheckpointManager::save_epoch_checkpoint(const State& state, std::int64_t epoch,
                                                          std::optional<double> metric) {
  auto payload = torch_layer::encode(state);
  auto record = store_->save(CheckpointKind::epoch, epoch, metric, payload.size_hint, payload.write);
  log::write(spdlog::level::info, "saved epoch {} checkpoint to {}", epoch, (save_dir() / record.file).string());
  return record;
}

std::optional<State> CheckpointManager::load_latest_checkpoint() {
  std::optional<State> state;
  if (!store_->load_latest(decoder_into(state))) {
    log::write(spdlog::level::info, "no checkpoint to resume from in {}", save_dir().string());
    return std::nullopt;
  }
  return state;
}

PayloadReader CheckpointManager::decoder_into(std::optional<State>& state) const {
  // The store may run this on several candidates (falling back past corrupt ones); the
  // last run is the one whose hash matched.
  return [this, &state](PayloadSource& source, const CheckpointRecord& record) {
    LoadOptions options;
    options.device = device_;
    state = torch_layer::decode(source, options, save_dir() / record.file);
  };
}

CheckpointRecord CheckpointManager::save_interrupt_checkpoint(const State& state) {
  log::write(spdlog::level::warn, "training interrupted: saving an interrupt checkpoint in {}", save_dir().string());
  auto payload = torch_layer::encode(state);
  auto record = store_->save(CheckpointKind::interrupt, std::nullopt, std::nullopt, payload.size_hint, payload.write);
  log::write(spdlog::level::critical, "interrupt checkpoint saved to {}; it is safe to exit",
             (save_dir() / record.file).string());
  return record;
}

const std::filesystem::path& CheckpointManager::save_dir() const noexcept { return store_->dir(); }
int CheckpointManager::max_to_keep() const noexcept { return store_->max_to_keep(); }

}  // namespace ckpt
