#include "ckpt/manager.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <utility>
#include <vector>

#include "ckpt/errors.hpp"
#include "store/file_names.hpp"
#include "torch/describe_state.hpp"
#include "torch/payload_codec.hpp"
#include "torch/restore.hpp"
#include "torch/snapshot.hpp"
#include "torch/state_fingerprint.hpp"
#include "log/log.hpp"

namespace ckpt {

SaveRequest torch_layer::describe(const State& state, CheckpointKind kind, std::optional<std::int64_t> epoch,
                                  std::optional<double> metric, std::uint64_t size_hint) {
  SaveRequest request;
  request.kind = kind;
  request.epoch = epoch;
  request.size_hint = size_hint;
  std::optional<double> guide_metric;
  for (const auto& [key, value] : state) {
    std::optional<double> number;
    if (value.isInt()) number = static_cast<double>(value.toInt());
    if (value.isDouble()) number = value.toDouble();
    if (!number) continue;
    request.metrics.emplace_back(key, *number);
    if (key == names::kEpochEntry && value.isInt()) request.state_epoch = value.toInt();
    if (key == names::kGuideMetric) guide_metric = number;
  }
  if (metric) {
    request.metric = metric;
    request.metric_source = "the save's argument";
  } else if (guide_metric) {
    request.metric = guide_metric;
    request.metric_source = fmt::format("{} in the state", names::kGuideMetric);
  }
  return request;
}

namespace {

StoreOptions with_max_to_keep(StoreOptions options, int max_to_keep) {
  options.max_to_keep = max_to_keep;
  return options;
}



// save_checkpoint's key: the store's rules (SaveRequest), checked before the file name is
// formed from them.
void require_key(const std::filesystem::path& dir, const CheckpointOptions& options) {
  if (!options.epoch) {
    throw InvalidArgument(fmt::format("{}: save_checkpoint needs an epoch number (a step checkpoint records its epoch too)",
                                      dir.string()), dir);
  }
  for (const auto& [what, number] : {std::pair{"epoch", options.epoch}, std::pair{"step", options.step}}) {
    if (number && *number < 0) {
      throw InvalidArgument(fmt::format("{}: {} must be >= 0, got {}", dir.string(), what, *number), dir);
    }
  }
}

// The step and the caller's named metrics onto what describe() took from the state
// (CheckpointOptions::metrics: the caller's value wins, in the state's position).
void add_key(SaveRequest& request, const CheckpointOptions& options) {
  request.step = options.step;
  for (const auto& [name, value] : options.metrics) {
    auto same = std::find_if(request.metrics.begin(), request.metrics.end(), [&](const auto& m) { return m.first == name; });
    if (same != request.metrics.end()) {
      same->second = value;
    } else {
      request.metrics.emplace_back(name, value);
    }
    if (name == names::kGuideMetric) {
      request.metric = value;
      request.metric_source = "the save's argument";
    }
  }
}

std::string describe_key(const CheckpointOptions& options) {
  if (!options.step) return fmt::format("epoch {}", *options.epoch);
  return options.epoch ? fmt::format("step {} (epoch {})", *options.step, *options.epoch)
                       : fmt::format("step {}", *options.step);
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

CheckpointRecord CheckpointManager::save_best_model(const State& state, double metric, std::optional<std::int64_t> epoch) {
  auto payload = torch_layer::encode(state, save_dir() / names::checkpoint_file(CheckpointKind::best, std::nullopt));
  SaveRequest request = torch_layer::describe(state, CheckpointKind::best, std::nullopt, metric, payload.size_hint);
  if (epoch) request.state_epoch = epoch;
  auto record = save(std::move(request), state, payload.write);
  log::write(spdlog::level::info, "saved best model (metric {}{}) to {}", metric,
             record.state_epoch ? fmt::format(", epoch {}", *record.state_epoch) : "", (save_dir() / record.file).string());
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
  auto payload = torch_layer::encode(state, save_dir() / names::epoch_file(epoch));
  auto record = save(torch_layer::describe(state, CheckpointKind::epoch, epoch, metric, payload.size_hint), state, payload.write);
  log::write(spdlog::level::info, "saved epoch {} checkpoint to {}", epoch, (save_dir() / record.file).string());
  return record;
}

CheckpointRecord CheckpointManager::save_checkpoint(const State& state, const CheckpointOptions& options) {
  require_key(save_dir(), options);
  auto payload = torch_layer::encode(state, save_dir() / names::checkpoint_file(CheckpointKind::epoch, options.epoch, options.step));
  SaveRequest request = torch_layer::describe(state, CheckpointKind::epoch, options.epoch, std::nullopt, payload.size_hint);
  add_key(request, options);
  auto record = save(std::move(request), state, payload.write);
  log::write(spdlog::level::info, "saved {} checkpoint to {}", describe_key(options), (save_dir() / record.file).string());
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

namespace {
// The store's verify-then-apply load with restore in place's two passes.
template <typename Load>
std::optional<RestoreResult> restore_into(const std::filesystem::path& dir, c10::Device device,
                                          const RestoreTarget& target, const RestoreOptions& options, Load&& load) {
  torch_layer::InPlaceRestore restore(target, options, device);
  auto record = load([&](PayloadSource& source, const CheckpointRecord& row) { restore.verify(source, dir / row.file); },
                     [&](PayloadSource& source, const CheckpointRecord& row) { restore.apply(source, dir / row.file); });
  if (!record) return std::nullopt;
  log::write(spdlog::level::info, "restored {} in place", (dir / record->file).string());
  return restore.take_result();
}
}  // namespace

std::optional<RestoreResult> CheckpointManager::load_latest_checkpoint_into(const RestoreTarget& target,
                                                                            const RestoreOptions& options) {
  auto result = restore_into(save_dir(), device_, target, options, [&](const PayloadReader& verify, const PayloadReader& apply) {
    return store_->load_latest(verify, apply);
  });
  if (!result) log::write(spdlog::level::info, "no checkpoint to resume from in {}", save_dir().string());
  return result;
}

std::optional<RestoreResult> CheckpointManager::load_best_model_into(const RestoreTarget& target,
                                                                     const RestoreOptions& options) {
  auto result = restore_into(save_dir(), device_, target, options, [&](const PayloadReader& verify, const PayloadReader& apply) {
    return store_->load_best(verify, apply);
  });
  if (!result) log::write(spdlog::level::info, "no best model in {}", save_dir().string());
  return result;
}

CheckpointRecord CheckpointManager::save_interrupt_checkpoint(const State& state) {
  log::write(spdlog::level::warn, "training interrupted: saving an interrupt checkpoint in {}", save_dir().string());
  // The saves in flight finish first; their failures must not stop this save (the one the
  // user is waiting for before exiting): they stay queued, and the oldest is raised after.
  auto payload = torch_layer::encode(state, save_dir() / names::checkpoint_file(CheckpointKind::interrupt, std::nullopt));
  auto record = save(torch_layer::describe(state, CheckpointKind::interrupt, std::nullopt, std::nullopt, payload.size_hint), state,
                     payload.write, /*despite_failures=*/true);
  log::write(spdlog::level::critical, "interrupt checkpoint saved to {}; it is safe to exit",
             (save_dir() / record.file).string());
  store_->wait();  // raises the oldest earlier failure, if any (logged when it happened)
  return record;
}

void CheckpointManager::save_epoch_checkpoint_async(const State& state, std::int64_t epoch, std::optional<double> metric,
                                                    Snapshot snapshot) {
  if (epoch < 0) {
    throw InvalidArgument(fmt::format("{}: epoch must be >= 0, got {}", save_dir().string(), epoch), save_dir());
  }
  save_async(CheckpointKind::epoch, CheckpointOptions{epoch, std::nullopt, {}}, metric, std::nullopt, state, snapshot);
  log::write(spdlog::level::debug, "queued the epoch {} checkpoint for {}", epoch,
             (save_dir() / names::epoch_file(epoch)).string());
}

void CheckpointManager::save_checkpoint_async(const State& state, const CheckpointOptions& options, Snapshot snapshot) {
  require_key(save_dir(), options);
  save_async(CheckpointKind::epoch, options, std::nullopt, std::nullopt, state, snapshot);
  log::write(spdlog::level::debug, "queued the {} checkpoint for {}", describe_key(options),
             (save_dir() / names::checkpoint_file(CheckpointKind::epoch, options.epoch, options.step)).string());
}

void CheckpointManager::save_best_model_async(const State& state, double metric, std::optional<std::int64_t> epoch,
                                              Snapshot snapshot) {
  save_async(CheckpointKind::best, CheckpointOptions{}, metric, epoch, state, snapshot);
  log::write(spdlog::level::debug, "queued the best model (metric {}) for {}", metric,
             (save_dir() / names::checkpoint_file(CheckpointKind::best, std::nullopt)).string());
}

void CheckpointManager::wait() { store_->wait(); }

// The asynchronous form of save(): the fingerprint is of the caller's state (what the next
// save is compared with), the payload of the snapshot, which the writer keeps alive until
// the worker is done with it. The fingerprint counts as saved once queued: should this save
// fail, the next one's likely_duplicate is a wrong guess, which costs a hashing pass only.
void CheckpointManager::save_async(CheckpointKind kind, const CheckpointOptions& key,
                                   std::optional<double> metric, std::optional<std::int64_t> state_epoch,
                                   const State& state, Snapshot snapshot) {
  std::shared_ptr<const State> taken;
  if (snapshot == Snapshot::copy) {
    if (!staging_) staging_ = std::make_unique<torch_layer::StagingPool>();
    taken = std::make_shared<const State>(staging_->copy(state));
  } else {
    taken = std::make_shared<const State>(state);  // shares the caller's tensors
  }
  auto payload = torch_layer::encode(*taken, save_dir() / names::checkpoint_file(kind, key.epoch, key.step));
  SaveRequest request = torch_layer::describe(state, kind, key.epoch, metric, payload.size_hint);
  add_key(request, key);
  if (state_epoch) request.state_epoch = state_epoch;
  auto fingerprint = announce(request, state);
  store_->save_async(std::move(request), [taken, write = std::move(payload.write)](ByteSink& sink) { write(sink); });
  last_saved_ = std::move(fingerprint);
}

// Every save, synchronous or not: the state unchanged since the last save is announced
// as a likely duplicate, so that the store hashes it before writing anything and links it
// to that save's file. Returns the state's fingerprint, to keep once the save is accepted.
std::unique_ptr<torch_layer::StateFingerprint> CheckpointManager::announce(SaveRequest& request, const State& state) {
  auto fingerprint = std::make_unique<torch_layer::StateFingerprint>(state);
  request.likely_duplicate = last_saved_ && last_saved_->matches(*fingerprint);
  last_saved_.reset();  // a failed save leaves nothing to compare with
  return fingerprint;
}

CheckpointRecord CheckpointManager::save(SaveRequest request, const State& state, const PayloadWriter& write,
                                         bool despite_failures) {
  auto fingerprint = announce(request, state);
  auto record = despite_failures ? store_->save_despite_failures(request, write) : store_->save(request, write);
  last_saved_ = std::move(fingerprint);
  return record;
}

const std::filesystem::path& CheckpointManager::save_dir() const noexcept { return store_->dir(); }
int CheckpointManager::max_to_keep() const noexcept { return store_->max_to_keep(); }

}  // namespace ckpt
