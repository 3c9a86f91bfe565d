// The guide's interrupt recovery: resume from the latest checkpoint at start; on Ctrl+C,
// save an interrupt checkpoint and exit. Run it, press Ctrl+C (or pass --sigint-at-step K),
// run it again: it resumes after the last epoch it completed.
//
// Python catches KeyboardInterrupt wherever it lands. In C++, ckpt::InterruptGuard turns
// SIGINT and SIGTERM into a flag that the loop polls after each step: no file is written
// inside a signal handler, and the saved model is the one of a whole step. The state's
// "epoch" is the last epoch completed (as in the guide, the resume starts at epoch + 1),
// so an epoch interrupted midway is trained again from its start; examples/demo_trainer.cpp
// also saves the position within the epoch, for an exact resume.
//
// Usage: guide_interrupt_recovery [--epochs N] [--sigint-at-step K]
#include <ckpt/ckpt.hpp>
#include <ckpt/training.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "tiny_task.hpp"

namespace {

const Loader train_loader = make_loader(1024, 1), val_loader = make_loader(256, 2);

// [readme:interrupt-recovery]
int train(int64_t epochs) {
  ckpt::CheckpointManager manager("checkpoints", torch::kCPU);
  ckpt::InterruptGuard interrupt;  // from here on, Ctrl+C (SIGINT) and SIGTERM only set a flag

  Net model = create_model();
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));

  int64_t start_epoch = 0;
  double best_acc = 0.0;

  // Try to resume training
  if (std::optional<ckpt::State> checkpoint = manager.load_latest_checkpoint()) {
    ckpt::load_state_dict(*model, checkpoint->get<ckpt::State>("model"));
    ckpt::load_state_dict(optimizer, checkpoint->get<ckpt::State>("optimizer"));
    start_epoch = checkpoint->get<int64_t>("epoch") + 1;
    best_acc = checkpoint->get<double>("best_acc");
    spdlog::info("resuming after epoch {}, best accuracy: {:.2f}%", start_epoch - 1, best_acc);
  }

  // Training loop
  for (int64_t epoch = start_epoch; epoch < epochs; ++epoch) {
    for (const Batch& batch : train_loader) {
      train_step(model, optimizer, batch);

      if (interrupt.requested()) {  // the guide's `except KeyboardInterrupt`, at a step boundary
        spdlog::warn("interrupt signal (Ctrl+C) received, saving the current state...");
        // Epoch `epoch` is not complete: the state is of the one before, and a resume repeats it.
        ckpt::State state{{"epoch", epoch - 1},
                          {"model", ckpt::state_dict(*model)},
                          {"optimizer", ckpt::state_dict(optimizer)},
                          {"best_acc", best_acc}};
        manager.save_interrupt_checkpoint(state);
        spdlog::critical("interrupt checkpoint saved, safe to exit.");
        return 130;
      }
    }
    double val_acc = validate(model, val_loader);
    best_acc = std::max(best_acc, val_acc);

    // Save the checkpoint
    ckpt::State state{{"epoch", epoch},
                      {"model", ckpt::state_dict(*model)},
                      {"optimizer", ckpt::state_dict(optimizer)},
                      {"best_acc", best_acc},
                      {"val_acc", val_acc}};
    manager.save_epoch_checkpoint(state, epoch);
  }
  return 0;
}
// [/readme]

}  // namespace

int main(int argc, char** argv) {
  const int64_t epochs = parse_args(argc, argv, "guide_interrupt_recovery", 6);
  const int status = train(epochs);
  if (status == 0) spdlog::info("done: trained up to epoch {}", epochs - 1);
  return status;
}
