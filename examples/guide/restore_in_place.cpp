// Resuming without a second copy of the model: the latest checkpoint of a training run
// read straight into a model, optimizer and schedule built for it (ckpt/restore.hpp),
// checked against the ordinary load. Exits 1 when there is nothing to resume from.
//
// Usage: guide_restore_in_place   (in a directory whose ./checkpoints a training run wrote)
#include <ckpt/ckpt.hpp>
#include <ckpt/training.hpp>
#include <spdlog/spdlog.h>

#include "tiny_task.hpp"

int main(int argc, char** argv) {
  parse_args(argc, argv, "guide_restore_in_place", 0);
  const Loader val_loader = make_loader(256, 2);

  Net model = create_model();
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  ckpt::StepLR scheduler(optimizer, /*step_size=*/5, /*gamma=*/0.5);
  ckpt::CheckpointManager manager("checkpoints", torch::kCPU, /*max_to_keep=*/5);

  // Verified first (the file's hash, the model's and optimizer's shapes), then read into
  // the parameters and the optimizer's state; the other entries come back as a State.
  ckpt::RestoreTarget target{model.get(), &optimizer};
  std::optional<ckpt::RestoreResult> restored = manager.load_latest_checkpoint_into(target);
  if (!restored) {
    spdlog::error("no checkpoint to resume from");
    return 1;
  }
  scheduler.load_state_dict(restored->rest.get<ckpt::State>("scheduler"));
  const int64_t epoch = restored->rest.get<int64_t>("epoch");
  spdlog::info("restored epoch {} in place: validation accuracy {:.2f}%, learning rate {}", epoch,
               validate(model, val_loader), scheduler.get_last_lr().front());

  // The same values as the ordinary load gives.
  Net reference = create_model();
  torch::optim::Adam reference_optimizer(reference->parameters(), torch::optim::AdamOptions(1e-2));
  std::optional<ckpt::State> checkpoint = manager.load_latest_checkpoint();
  ckpt::load_state_dict(*reference, checkpoint->get<ckpt::State>("model"));
  ckpt::load_state_dict(reference_optimizer, checkpoint->get<ckpt::State>("optimizer"));
  auto same_parameters = [&] {
    auto a = model->parameters(), b = reference->parameters();
    for (size_t i = 0; i < a.size(); ++i) {
      if (!a[i].equal(b[i])) return false;
    }
    return true;
  };
  // And the optimizers continue alike: one more epoch on each.
  const Loader train_loader = make_loader(1024, 1);
  bool same = same_parameters();
  train_one_epoch(model, optimizer, train_loader);
  train_one_epoch(reference, reference_optimizer, train_loader);
  same = same && same_parameters();
  spdlog::info(same ? "the same parameters as load_latest_checkpoint() + load_state_dict(), and after one more epoch"
                    : "DIFFERENT parameters from load_latest_checkpoint() + load_state_dict()");
  return same ? 0 : 2;
}
