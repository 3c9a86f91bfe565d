// The guide's Trainer class: it owns the CheckpointManager, resumes in fit(), saves every
// epoch, saves the best by val_acc, and saves an interrupt checkpoint on Ctrl+C. Run it,
// interrupt it (Ctrl+C or --sigint-at-step K), run it again to resume.
//
// As in examples/guide/interrupt_recovery.cpp, a state's "epoch" is the last epoch
// completed: the resume starts at epoch + 1, and an epoch interrupted midway is trained
// again. examples/demo_trainer.cpp is the same class with an exact resume.
//
// Usage: guide_trainer [--epochs N] [--sigint-at-step K]
#include <ckpt/ckpt.hpp>
#include <ckpt/training.hpp>
#include <spdlog/spdlog.h>

#include <optional>
#include <utility>

#include "tiny_task.hpp"

namespace {

// [readme:trainer]
class Trainer {
 public:
  Trainer(Net model, torch::optim::Optimizer& optimizer, ckpt::StepLR& scheduler, torch::Device device)
      : model_(std::move(model)),
        optimizer_(optimizer),
        scheduler_(scheduler),
        device_(device),
        // Initialize the checkpoint manager
        ckpt_mgr_("checkpoints", device, /*max_to_keep=*/5) {}

  // Resume training
  void resume_training() {
    std::optional<ckpt::State> checkpoint = ckpt_mgr_.load_latest_checkpoint();

    if (checkpoint) {
      ckpt::load_state_dict(*model_, checkpoint->get<ckpt::State>("model"));
      ckpt::load_state_dict(optimizer_, checkpoint->get<ckpt::State>("optimizer"));
      scheduler_.load_state_dict(checkpoint->get<ckpt::State>("scheduler"));
      start_epoch_ = checkpoint->get<int64_t>("epoch") + 1;
      best_metric_ = checkpoint->get<double>("best_metric");
      spdlog::info("training resumed, starting at epoch {}", start_epoch_);
    } else {
      spdlog::info("training from scratch");
    }
  }

  // Save a checkpoint
  void save_checkpoint(int64_t epoch, const ckpt::State& metrics) {
    ckpt::State state{{"epoch", epoch},
                      {"model", ckpt::state_dict(*model_)},
                      {"optimizer", ckpt::state_dict(optimizer_)},
                      {"scheduler", scheduler_.state_dict()},
                      {"best_metric", best_metric_},
                      {"metrics", metrics}};

    // Save the epoch checkpoint
    ckpt_mgr_.save_epoch_checkpoint(state, epoch);

    // If it is the best model, save it as the best model too
    if (metrics.get<double>("val_acc") > best_metric_) {
      best_metric_ = metrics.get<double>("val_acc");
      ckpt_mgr_.save_best_model(state, /*metric=*/best_metric_);
    }
  }

  // The main training function; returns the exit status: 0, or 130 when interrupted
  int fit(const Loader& train_loader, const Loader& val_loader, int64_t epochs) {
    // Try to resume
    resume_training();
    ckpt::InterruptGuard interrupt;  // Ctrl+C (SIGINT) and SIGTERM only set a flag

    for (int64_t epoch = start_epoch_; epoch < epochs; ++epoch) {
      // Train and validate
      ckpt::State train_metrics = train_epoch(train_loader, interrupt);
      if (interrupt.requested()) {  // the guide's `except KeyboardInterrupt`, at a step boundary
        spdlog::warn("training interrupted, saving...");
        ckpt::State state{{"epoch", epoch - 1},  // the last epoch completed: a resume repeats this one
                          {"model", ckpt::state_dict(*model_)},
                          {"optimizer", ckpt::state_dict(optimizer_)},
                          {"scheduler", scheduler_.state_dict()},
                          {"best_metric", best_metric_}};
        ckpt_mgr_.save_interrupt_checkpoint(state);
        return 130;
      }
      ckpt::State val_metrics = validate(val_loader);

      ckpt::State metrics = train_metrics;
      for (const auto& [key, value] : val_metrics) metrics.set(key, value);

      // Save the checkpoint
      save_checkpoint(epoch, metrics);
    }
    spdlog::info("training done, best val_acc {:.2f}%", best_metric_);
    return 0;
  }

 private:
  // Stops early, at a step boundary, when an interrupt was requested.
  ckpt::State train_epoch(const Loader& loader, const ckpt::InterruptGuard& interrupt) {
    double loss_sum = 0;
    for (const Batch& batch : loader) {
      loss_sum += train_step(model_, optimizer_, batch);
      if (interrupt.requested()) return {};
    }
    scheduler_.step();
    return ckpt::State{{"train_loss", loss_sum / static_cast<double>(loader.size())}};
  }

  ckpt::State validate(const Loader& loader) { return ckpt::State{{"val_acc", ::validate(model_, loader)}}; }

  Net model_;
  torch::optim::Optimizer& optimizer_;
  ckpt::StepLR& scheduler_;
  torch::Device device_;
  ckpt::CheckpointManager ckpt_mgr_;
  int64_t start_epoch_ = 0;
  double best_metric_ = 0.0;
};
// [/readme]

}  // namespace

int main(int argc, char** argv) {
  const int64_t epochs = parse_args(argc, argv, "guide_trainer", 8);
  Net model = create_model();
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  ckpt::StepLR scheduler(optimizer, /*step_size=*/5, /*gamma=*/0.5);

  Trainer trainer(model, optimizer, scheduler, torch::kCPU);
  return trainer.fit(make_loader(1024, 1), make_loader(256, 2), epochs);
}
