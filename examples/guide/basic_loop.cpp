// The guide's basic usage: every epoch save an epoch checkpoint; when validation
// accuracy improves, save the best model. The rolling cleanup keeps the newest 5.
//
// Usage: guide_basic_loop [--epochs N]   (in the directory that gets ./checkpoints)
#include <ckpt/ckpt.hpp>
#include <ckpt/training.hpp>
#include <spdlog/spdlog.h>

#include "tiny_task.hpp"

int main(int argc, char** argv) {
  const int64_t epochs = parse_args(argc, argv, "guide_basic_loop", 8);
  const Loader train_loader = make_loader(1024, 1), val_loader = make_loader(256, 2);

  // [readme:basic-loop]
  Net model = create_model();
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  ckpt::StepLR scheduler(optimizer, /*step_size=*/5, /*gamma=*/0.5);

  // Initialize the manager
  ckpt::CheckpointManager manager("checkpoints", torch::kCPU, /*max_to_keep=*/5);

  // Training loop
  double best_acc = 0.0;

  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    double train_loss = train_one_epoch(model, optimizer, train_loader);
    double val_acc = validate(model, val_loader);
    scheduler.step();

    // 1. Save the epoch checkpoint (every epoch)
    ckpt::State state{{"epoch", epoch},
                      {"model", ckpt::state_dict(*model)},
                      {"optimizer", ckpt::state_dict(optimizer)},
                      {"scheduler", scheduler.state_dict()},
                      {"best_acc", best_acc},
                      {"train_loss", train_loss},
                      {"val_acc", val_acc}};
    manager.save_epoch_checkpoint(state, epoch);

    // 2. Save the best model (when it improves)
    if (val_acc > best_acc) {
      best_acc = val_acc;
      manager.save_best_model(state, /*metric=*/best_acc);
    }
  }
  // [/readme]

  spdlog::info("done: {} epochs, best validation accuracy {:.2f}%", epochs, best_acc);
  return 0;
}
