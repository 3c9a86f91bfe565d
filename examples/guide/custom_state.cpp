// The guide's custom state: a checkpoint holds whatever the caller puts in it. Trains one
// epoch, saves a state with the guide's keys (model, optimizer, scheduler, epoch,
// global_step, metrics, config, experiment name, timestamp), then loads it back and
// prints what it holds. Python reads the same file with torch.load.
//
// Usage: guide_custom_state [--epochs N]
#include <ckpt/ckpt.hpp>
#include <ckpt/training.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

#include "tiny_task.hpp"

int main(int argc, char** argv) {
  const int64_t epochs = parse_args(argc, argv, "guide_custom_state", 1);
  const Loader train_loader = make_loader(1024, 1), val_loader = make_loader(256, 2);
  Net model = create_model();
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  ckpt::StepLR scheduler(optimizer, /*step_size=*/5, /*gamma=*/0.5);
  int64_t epoch = 0, global_step = 0;
  double best_acc = 0.0, train_loss = 0.0, val_acc = 0.0;
  for (; epoch < epochs; ++epoch) {
    train_loss = train_one_epoch(model, optimizer, train_loader);
    global_step += static_cast<int64_t>(train_loader.size());
    val_acc = validate(model, val_loader);
    best_acc = std::max(best_acc, val_acc);
    scheduler.step();
  }
  epoch = epochs - 1;  // the last epoch completed

  // [readme:custom-state]
  ckpt::CheckpointManager manager("checkpoints", torch::kCPU);

  // Any state can be saved
  ckpt::State state{
      // The model and its training
      {"model", ckpt::state_dict(*model)},
      {"optimizer", ckpt::state_dict(optimizer)},
      {"scheduler", scheduler.state_dict()},

      // Training state
      {"epoch", epoch},
      {"global_step", global_step},

      // Metrics
      {"best_acc", best_acc},
      {"train_loss", train_loss},
      {"val_acc", val_acc},

      // Other metadata
      {"config", ckpt::State{{"lr", 1e-2}, {"batch_size", 64}, {"hidden", 32}}},
      {"experiment_name", "mlp_spirals"},
      {"timestamp", fmt::format("{:%FT%T}", fmt::localtime(std::time(nullptr)))},
  };

  manager.save_epoch_checkpoint(state, epoch);
  // [/readme]

  // Back, as a resume would see it.
  // [readme:custom-state-load]
  std::optional<ckpt::State> loaded = manager.load_latest_checkpoint();
  ckpt::State config = loaded->get<ckpt::State>("config");
  auto batch_size = config.get<int>("batch_size");  // the int types C++ code uses, range-checked
  auto lr = config.get<float>("lr");
  auto name = loaded->get<std::string>("experiment_name");
  torch::Tensor weight = loaded->get<ckpt::State>("model").get<torch::Tensor>("fc1.weight");
  // [/readme]

  fmt::print("keys: {}\n", fmt::join(loaded->keys(), ", "));
  fmt::print("experiment {} at {}: epoch {}, global step {}, batch size {}, lr {}, fc1.weight {}x{}\n", name,
             loaded->get<std::string>("timestamp"), loaded->get<int>("epoch"), loaded->get<int64_t>("global_step"),
             batch_size, lr, weight.size(0), weight.size(1));
  return 0;
}
