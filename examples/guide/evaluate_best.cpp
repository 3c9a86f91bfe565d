// The guide's evaluation of the best model: load best_model.pth, restore the model,
// evaluate it on the test set. Exits 1 when there is no best model.
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
  // Initialize the manager
  ckpt::CheckpointManager manager("checkpoints", torch::kCPU);

  // Load the best model
  std::optional<ckpt::State> checkpoint = manager.load_best_model();

  if (!checkpoint) {
    spdlog::error("no best model checkpoint found!");
    return 1;
  }

  // Restore the model
  Net model = create_model();
  ckpt::load_state_dict(*model, checkpoint->get<ckpt::State>("model"));
  model->eval();

  // Evaluate on the test set
  double test_acc = evaluate(model, test_loader);
  spdlog::info("best model's test accuracy: {:.2f}%", test_acc);
  // [/readme]

  spdlog::info("(it was saved after epoch {}, with validation accuracy {:.2f}%)", checkpoint->get<int>("epoch"),
               checkpoint->get<float>("val_acc"));
  return 0;
}
