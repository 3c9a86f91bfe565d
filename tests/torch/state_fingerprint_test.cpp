// The manager's "unchanged since the last save" test (torch/state_fingerprint.hpp), with
// real modules and optimizers, and the guide's loop it serves: each epoch's best model is
// a hard link to the epoch checkpoint saved of the same state, its bytes hashed but never
// written.
#include "support/torch_pch.hpp"

#include <sys/stat.h>

#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>

#include "ckpt/training.hpp"
#include "store/test_hooks.hpp"  // on_step: test hooks
#include "support/test_dir.hpp"
#include "torch/state_fingerprint.hpp"

using namespace ckpt;
using namespace ckpt::test;
using torch_layer::StateFingerprint;

namespace {

struct Trainer {
  torch::nn::Linear model{8, 4};
  torch::optim::SGD optimizer{model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9)};

  void step() {
    optimizer.zero_grad();
    model->forward(at::ones({2, 8})).sum().backward();
    optimizer.step();
  }
  // The guide's checkpoint dict.
  State state(std::int64_t epoch, double val_acc) {
    State state{{"epoch", epoch}, {"val_acc", val_acc}};
    state.set("model", state_dict(*model));
    state.set("optimizer", state_dict(optimizer));
    return state;
  }
};

bool same(const State& a, const State& b) { return StateFingerprint(a).matches(StateFingerprint(b)); }

ino_t inode_of(const std::filesystem::path& path) {
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

}  // namespace

TEST_CASE("a state is unchanged until a tensor is written in place or a value changes", "[fingerprint]") {
  Trainer trainer;
  trainer.step();  // the optimizer has momentum buffers now
  State state = trainer.state(1, 0.5);
  const StateFingerprint saved(state);
  CHECK(saved.matches(StateFingerprint(state)));
  // Rebuilt from the same, untouched model and optimizer (new tensor objects, same bytes).
  CHECK(saved.matches(StateFingerprint(trainer.state(1, 0.5))));

  SECTION("optimizer.step() changes the parameters and the momentum buffers") {
    trainer.step();
    CHECK_FALSE(saved.matches(StateFingerprint(state)));
    CHECK_FALSE(saved.matches(StateFingerprint(trainer.state(1, 0.5))));
  }
  SECTION("only a metric changes") {
    state.set("val_acc", 0.6);
    CHECK_FALSE(saved.matches(StateFingerprint(state)));
  }
  SECTION("a nested value changes") {
    State nested{{"lr", 0.1}, {"milestones", c10::List<int64_t>({1, 2})}};
    State with = state;
    with.set("scheduler", nested);
    const StateFingerprint before(with);
    CHECK(before.matches(StateFingerprint(with)));
    nested.set("milestones", c10::List<int64_t>({1, 3}));
    with.set("scheduler", nested);
    CHECK_FALSE(before.matches(StateFingerprint(with)));
  }
  SECTION("a tensor replaced by another of the same shape, even where the old one was freed") {
    State small{{"t", at::zeros({4})}};
    const StateFingerprint before(small);
    small.set("t", at::zeros({4}));  // the first tensor's memory is free for reuse now
    CHECK_FALSE(before.matches(StateFingerprint(small)));
  }
}

TEST_CASE("what a fingerprint cannot follow never matches", "[fingerprint]") {
  at::Tensor inference;
  {
    c10::InferenceMode guard;
    inference = at::ones({3});
  }
  State state{{"t", inference}};
  CHECK_FALSE(same(state, state));
}

TEST_CASE("the guide's loop writes each state once: the best model links to its epoch checkpoint",
          "[manager][dedupe][guide]") {
  TestDir dir("guide-dedupe");
  StoreOptions options;
  std::vector<std::string> steps;
  store::test_hooks(options).on_step = [&steps](std::string_view step) { steps.emplace_back(step); };
  CheckpointManager manager(dir.path(), c10::kCPU, 5, options);
  Trainer trainer;
  double best_acc = 0;
  for (std::int64_t epoch = 1; epoch <= 3; ++epoch) {
    trainer.step();
    const double val_acc = 0.5 + 0.1 * static_cast<double>(epoch);
    State state = trainer.state(epoch, val_acc);
    state.set("best_acc", best_acc);
    steps.clear();
    manager.save_epoch_checkpoint(state, epoch);
    // A changed state is written (and compared: nothing else holds its bytes).
    CHECK(steps == std::vector<std::string>{"temp_written", "temp_synced", "pending_committed", "renamed",
                                            "dir_synced", "committed", "obsolete_deleted"});
    best_acc = val_acc;
    steps.clear();
    auto best = manager.save_best_model(state, val_acc);
    // The same state: hashed without a file, linked; nothing written or synced.
    CHECK(steps == std::vector<std::string>{"temp_linked", "pending_committed", "renamed", "dir_synced",
                                            "committed", "obsolete_deleted"});
    CHECK(inode_of(dir / "best_model.pth") == inode_of(dir / ("checkpoint_epoch_" + std::to_string(epoch) + ".pth")));
    CHECK(best.metric == val_acc);
  }
  auto loaded = manager.load_best_model();
  REQUIRE(loaded);
  CHECK(loaded->get<std::int64_t>("epoch") == 3);
}
