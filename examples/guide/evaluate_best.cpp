// The guide's evaluation of the best model: load best_model.pth, restore the model,
// evaluate it on the test set. Exits 1 when there is no best model.
//
// It opens the checkpoints read-only (ckpt::ReadOnlyCheckpointManager), so it also runs
// while a training run writes to them: the guide's CheckpointManager would take the
// directory's writer lock and fail with LockedError beside the trainer.
//
// Usage: guide_evaluate_best   (in a directory whose ./checkpoints a training run wrote)
#include <ckpt/ckpt.hpp>
#include <ckpt/training.hpp>
#include <spdlog/spdlog.h>

#include "tiny_task.hpp"

int main(int argc, char** argv) {
  parse_args(argc, argv, "guide_evaluate_best", 0);
  const Loader test_loader = make_loader(512, 3);

  // [readme:evaluate-best]
  // Open the checkpoints read-only: no writer lock, so this runs beside training
  ckpt::ReadOnlyCheckpointManager manager("checkpoints", torch::kCPU);

  // Load the best model (verified against the index)
  ckpt::ReadOnlyLoad checkpoint = manager.load_best_model();

  if (!checkpoint) {
    for (const auto& skipped : checkpoint.skipped) spdlog::error("passed over {}", skipped.problem);
    spdlog::error("no best model checkpoint found!");
    return 1;
  }

  // Restore the model
  Net model = create_model();
  ckpt::load_state_dict(*model, checkpoint.state->get<ckpt::State>("model"));
  model->eval();

  // Evaluate on the test set
  double test_acc = evaluate(model, test_loader);
  spdlog::info("best model's test accuracy: {:.2f}%", test_acc);
  // [/readme]

  spdlog::info("(it was saved after epoch {}, with validation accuracy {:.2f}%)", checkpoint.state->get<int>("epoch"),
               checkpoint.state->get<float>("val_acc"));
  return 0;
}
