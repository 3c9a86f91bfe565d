// The guide's usage patterns, ported line by line, plus the manager's error paths.
#include "support/torch_pch.hpp"
#include "support/test_dir.hpp"

#include <cmath>
#include <map>

using namespace ckpt;
using namespace ckpt::test;

namespace {

// A stand-in for model.state_dict() / optimizer.state_dict() that changes every epoch.
State model_state(int64_t epoch) {
  return State{{"fc.weight", at::full({4, 4}, static_cast<double>(epoch))}, {"fc.bias", at::arange(4) + epoch}};
}

double val_acc_at(int64_t epoch) { return 0.5 + 0.4 * std::sin(epoch * 0.37) * std::exp(-epoch / 80.0) + epoch * 0.003; }

std::vector<std::string> checkpoint_files(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& name : file_names(dir)) {
    if (name.size() > 4 && name.substr(name.size() - 4) == ".pth") names.push_back(name);
  }
  return names;
}

}  // namespace

TEST_CASE("guide pattern 1: a 100-epoch loop keeps the newest 5 epochs and the best", "[manager][guide]") {
  TestDir dir("guide1");
  CheckpointManager manager(dir.path(), c10::kCPU, 5);
  double best_acc = 0;
  int64_t best_epoch = -1;
  for (int64_t epoch = 1; epoch <= 100; ++epoch) {
    double val_acc = val_acc_at(epoch);
    State state{{"epoch", epoch}, {"best_acc", best_acc}, {"train_loss", 1.0 / epoch}, {"val_acc", val_acc}};
    state.set("model", model_state(epoch));
    state.set("optimizer", State{{"lr", 0.01}});
    manager.save_epoch_checkpoint(state, epoch);
    if (val_acc > best_acc) {
      best_acc = val_acc;
      best_epoch = epoch;
      state.set("best_acc", best_acc);
      manager.save_best_model(state, best_acc);
    }
  }
  CHECK(checkpoint_files(dir.path()) ==
        std::vector<std::string>{"best_model.pth", "checkpoint_epoch_100.pth", "checkpoint_epoch_96.pth",
                                 "checkpoint_epoch_97.pth", "checkpoint_epoch_98.pth", "checkpoint_epoch_99.pth"});
  auto best = manager.load_best_model();
  REQUIRE(best);
  CHECK(best->get<int64_t>("epoch") == best_epoch);
  CHECK(best->get<double>("best_acc") == best_acc);
  CHECK(manager.store().best()->metric == best_acc);
  // Beside the payloads: only the index and its lock.
  CHECK(file_names(dir.path()).size() == 6 + 4);
}

TEST_CASE("a faithful port records the state's numbers as named metrics, and the best model's epoch",
          "[manager][guide][metrics]") {
  TestDir dir("metrics");
  CheckpointManager manager(dir.path(), c10::kCPU, 5);
  // The guide's save_epoch_checkpoint(state, epoch) carries no metric argument.
  State state{{"epoch", int64_t{3}}, {"best_acc", 0.5}, {"train_loss", 0.25}, {"val_acc", 0.75},
              {"finished", false}, {"name", "run-1"}};
  state.set("model", model_state(3));
  auto epoch_row = manager.save_epoch_checkpoint(state, 3);
  CHECK(epoch_row.metric == 0.75);
  CHECK(epoch_row.metric_source == "val_acc in the state");
  std::vector<std::pair<std::string, double>> named;
  for (const auto& metric : manager.store().metrics_of(epoch_row.id)) named.emplace_back(metric.name, metric.value);
  // Ints and floats at the top level, in the state's order; bools, strings and nested states are not metrics.
  CHECK(named == std::vector<std::pair<std::string, double>>{{"epoch", 3}, {"best_acc", 0.5}, {"train_loss", 0.25}, {"val_acc", 0.75}});
  CHECK(manager.save_epoch_checkpoint(state, 3, 0.875).metric_source == "the save's argument");

  auto best = manager.save_best_model(state, 0.75);
  CHECK(best.state_epoch == 3);  // from the state's epoch entry
  CHECK(best.metric_source == "the save's argument");
  CHECK(manager.save_best_model(state, 0.75, /*epoch=*/4).state_epoch == 4);
  state.erase("epoch");
  CHECK_FALSE(manager.save_best_model(state, 0.75).state_epoch);
}

TEST_CASE("guide pattern 2: an interrupt checkpoint resumes training where Ctrl+C stopped it", "[manager][guide]") {
  TestDir dir("guide2");
  const int64_t interrupted_at = 37;
  {
    CheckpointManager manager(dir.path());
    double best_acc = 0;
    for (int64_t epoch = 1; epoch <= 50; ++epoch) {
      if (epoch == interrupted_at) {  // the KeyboardInterrupt branch
        State state{{"epoch", epoch}, {"best_acc", best_acc}};
        state.set("model", model_state(epoch));
        state.set("optimizer", State{{"lr", 0.01}});
        manager.save_interrupt_checkpoint(state);
        break;
      }
      best_acc = std::max(best_acc, val_acc_at(epoch));
      State state{{"epoch", epoch}, {"best_acc", best_acc}};
      state.set("model", model_state(epoch));
      manager.save_epoch_checkpoint(state, epoch);
    }
  }
  CHECK(std::filesystem::exists(dir / CheckpointManager::INTERRUPT_CKPT_NAME));

  CheckpointManager manager(dir.path());
  int64_t start_epoch = 1;
  auto state = manager.load_latest_checkpoint();
  REQUIRE(state);
  start_epoch = state->get<int64_t>("epoch") + 1;
  CHECK(start_epoch == interrupted_at + 1);
  CHECK(state->get<State>("model").get<at::Tensor>("fc.weight").equal(model_state(interrupted_at).get<at::Tensor>("fc.weight")));
  // Unlike the guide, the file stays until new progress is committed...
  CHECK(std::filesystem::exists(dir / CheckpointManager::INTERRUPT_CKPT_NAME));
  State next{{"epoch", start_epoch}};
  next.set("model", model_state(start_epoch));
  manager.save_epoch_checkpoint(next, start_epoch);
  // ...and is gone once it has been.
  CHECK_FALSE(std::filesystem::exists(dir / CheckpointManager::INTERRUPT_CKPT_NAME));
  CHECK(manager.load_latest_checkpoint()->get<int64_t>("epoch") == start_epoch);
}

TEST_CASE("guide pattern 3: evaluation loads the best model, and says when there is none", "[manager][guide]") {
  TestDir dir("guide3");
  CheckpointManager manager(dir.path());
  CHECK_FALSE(manager.load_best_model());
  manager.save_best_model(State{{"model", model_state(9)}, {"best_acc", 0.93}}, 0.93);
  auto best = manager.load_best_model();
  REQUIRE(best);
  CHECK(best->get<State>("model").get<at::Tensor>("fc.bias").equal(model_state(9).get<at::Tensor>("fc.bias")));
}

TEST_CASE("guide pattern 4: any custom keys round-trip", "[manager][guide]") {
  TestDir dir("guide4");
  CheckpointManager manager(dir.path());
  State state{{"epoch", int64_t{3}}, {"global_step", int64_t{3000}}, {"experiment_name", std::string("baseline")},
              {"timestamp", std::string("2026-11-29T05:00:00Z")}};
  state.set("metrics", State{{"train_loss", 0.12}, {"val_acc", 0.88}});
  state.set("config", State{{"lr", 0.001}, {"batch_size", int64_t{64}}, {"augment", true}});
  state.set("model", model_state(3));
  manager.save_epoch_checkpoint(state, 3, 0.88);
  auto loaded = manager.load_latest_checkpoint();
  REQUIRE(loaded);
  CHECK(loaded->keys() == state.keys());
  CHECK(loaded->get<std::string>("experiment_name") == "baseline");
  CHECK(loaded->get<State>("config").get<int64_t>("batch_size") == 64);
  CHECK(loaded->get<State>("metrics").get<double>("val_acc") == 0.88);
  CHECK(manager.store().latest()->metric == 0.88);
}

namespace {
// Guide pattern 5: a Trainer that owns the manager, resumes in fit(), saves every epoch
// and the best by val_acc, and an interrupt checkpoint when asked to stop.
class Trainer {
 public:
  explicit Trainer(std::filesystem::path dir) : manager_(std::move(dir), c10::kCPU, 3) {}

  // Trains until `epochs`, or stops (as on Ctrl+C) before `stop_at`. Returns the epochs run.
  std::vector<int64_t> fit(int64_t epochs, int64_t stop_at = -1) {
    std::vector<int64_t> ran;
    int64_t start_epoch = 1;
    if (auto state = manager_.load_latest_checkpoint()) {
      start_epoch = state->get<int64_t>("epoch") + 1;
      best_acc_ = state->get<double>("best_acc");
    }
    for (int64_t epoch = start_epoch; epoch <= epochs; ++epoch) {
      if (epoch == stop_at) {
        manager_.save_interrupt_checkpoint(state_at(epoch - 1));
        return ran;
      }
      ran.push_back(epoch);
      double val_acc = val_acc_at(epoch);
      manager_.save_epoch_checkpoint(state_at(epoch), epoch, val_acc);
      if (val_acc > best_acc_) {
        best_acc_ = val_acc;
        manager_.save_best_model(state_at(epoch), best_acc_);
      }
    }
    return ran;
  }

 private:
  State state_at(int64_t epoch) {
    State state{{"epoch", epoch}, {"best_acc", best_acc_}};
    state.set("model", model_state(epoch));
    return state;
  }

  CheckpointManager manager_;
  double best_acc_ = 0;
};
}  // namespace

TEST_CASE("guide pattern 5: a Trainer stopped partway resumes and runs each epoch exactly once", "[manager][guide]") {
  TestDir dir("guide5");
  std::vector<int64_t> all;
  {
    Trainer trainer(dir.path());
    auto first = trainer.fit(20, 8);
    all.insert(all.end(), first.begin(), first.end());
  }
  {
    Trainer trainer(dir.path());
    auto second = trainer.fit(20);
    all.insert(all.end(), second.begin(), second.end());
  }
  std::vector<int64_t> expected(20);
  std::iota(expected.begin(), expected.end(), 1);
  CHECK(all == expected);
  CHECK(checkpoint_files(dir.path()) == std::vector<std::string>{"best_model.pth", "checkpoint_epoch_18.pth",
                                                                  "checkpoint_epoch_19.pth", "checkpoint_epoch_20.pth"});
}

TEST_CASE("a corrupt newest checkpoint is quarantined and the manager resumes from the one before", "[manager]") {
  TestDir dir("corrupt");
  {
    CheckpointManager manager(dir.path());
    for (int64_t epoch = 1; epoch <= 3; ++epoch) manager.save_epoch_checkpoint(State{{"epoch", epoch}}, epoch);
  }
  flip_byte(dir / "checkpoint_epoch_3.pth");
  CheckpointManager manager(dir.path());
  auto state = manager.load_latest_checkpoint();
  REQUIRE(state);
  CHECK(state->get<int64_t>("epoch") == 2);
  CHECK(std::filesystem::exists(dir / "quarantine"));
}

TEST_CASE("a second manager on a directory fails at once, naming the holder", "[manager][lock]") {
  TestDir dir("locked");
  CheckpointManager first(dir.path());
  CHECK_THROWS_WITH(CheckpointManager(dir.path()), Catch::Contains("locked") && Catch::Contains("pid"));
}

TEST_CASE("bad constructor arguments are refused with clear errors and touch nothing", "[manager]") {
  TestDir dir("args");
  CHECK_THROWS_WITH(CheckpointManager(dir / "a", c10::kCPU, -3), Catch::Contains("max_to_keep"));
  CHECK_FALSE(std::filesystem::exists(dir / "a"));
  if (!at::hasCUDA()) {
    CHECK_THROWS_AS(CheckpointManager(dir / "b", c10::Device("cuda:0")), InvalidArgument);
    CHECK_FALSE(std::filesystem::exists(dir / "b"));
  }
  CheckpointManager manager(dir / "c");
  const auto before = file_names(dir / "c");
  CHECK_THROWS_AS(manager.save_epoch_checkpoint(State{}, -1), InvalidArgument);
  CHECK(file_names(dir / "c") == before);
  CHECK_FALSE(manager.load_latest_checkpoint());
}

TEST_CASE("the guide's constants and defaults", "[manager]") {
  CHECK(std::string(CheckpointManager::BEST_MODEL_NAME) == "best_model.pth");
  CHECK(std::string(CheckpointManager::EPOCH_CKPT_PREFIX) == "checkpoint_epoch_");
  CHECK(std::string(CheckpointManager::INTERRUPT_CKPT_NAME) == "interrupt_checkpoint.pth");
  TestDir dir("defaults");
  {
    WorkingDirectory inside(dir.path());
    CheckpointManager manager;
    CHECK(manager.save_dir() == "checkpoint");
    CHECK(manager.max_to_keep() == 5);
    CHECK(manager.device() == c10::Device(c10::kCPU));
  }
  CHECK(std::filesystem::exists(dir / "checkpoint" / "index.sqlite"));
}

TEST_CASE("loaded tensors are on the manager's device", "[manager][device]") {
  TestDir dir("device");
  CheckpointManager manager(dir.path(), c10::Device("cpu"));
  manager.save_epoch_checkpoint(State{{"w", at::ones({2})}}, 1);
  CHECK(manager.load_latest_checkpoint()->get<at::Tensor>("w").device() == c10::Device(c10::kCPU));
}

TEST_CASE("save_checkpoint keys a checkpoint by step, records the caller's metrics over the state's, and resumes by commit",
          "[manager][steps]") {
  TestDir dir("steps");
  CheckpointManager manager(dir.path(), c10::kCPU, 3);
  auto state_at = [](int64_t epoch, int64_t step) {
    State state{{"epoch", epoch}, {"step", step}, {"train_loss", 0.9}, {"val_acc", 0.7}};
    state.set("model", model_state(step));
    return state;
  };
  manager.save_epoch_checkpoint(state_at(1, 1000), 1);
  CheckpointOptions options;  // {.epoch = 2, .step = 1500, .metrics = {...}} in C++20
  options.epoch = 2;
  options.step = 1500;
  options.metrics = {{"train_loss", 0.5}, {"val_loss", 0.25}};
  auto row = manager.save_checkpoint(state_at(2, 1500), options);
  CHECK(row.file == "checkpoint_step_1500.pth");
  CHECK(row.kind == CheckpointKind::epoch);
  CHECK(row.step == 1500);
  CHECK(row.epoch == 2);
  CHECK(row.metric == 0.7);  // the state's val_acc: the options name none
  std::map<std::string, double> metrics;
  int train_loss_rows = 0;
  for (const auto& metric : manager.store().metrics_of(row.id)) {
    metrics[metric.name] = metric.value;
    train_loss_rows += metric.name == "train_loss";
  }
  CHECK(train_loss_rows == 1);
  CHECK(metrics == std::map<std::string, double>{{"epoch", 2}, {"step", 1500}, {"train_loss", 0.5}, {"val_acc", 0.7}, {"val_loss", 0.25}});
  auto resumed = manager.load_latest_checkpoint();
  REQUIRE(resumed);
  CHECK(resumed->get<int64_t>("step") == 1500);
  CHECK(resumed->get<State>("model").get<at::Tensor>("fc.bias").equal(model_state(1500).get<at::Tensor>("fc.bias")));

  // The asynchronous form, then a val_acc given as an option: it is the row's metric too.
  options.step = 1600;
  options.metrics = {{"val_acc", 0.8}};
  manager.save_checkpoint_async(state_at(2, 1600), options);
  manager.wait();
  CHECK(manager.store().latest()->file == "checkpoint_step_1600.pth");
  CHECK(manager.store().latest()->metric == 0.8);
  // Without a step it is the guide's epoch checkpoint; without an epoch it is refused.
  CheckpointOptions epoch_only;
  epoch_only.epoch = 3;
  CHECK(manager.save_checkpoint(state_at(3, 2000), epoch_only).file == "checkpoint_epoch_3.pth");
  CheckpointOptions no_epoch;
  no_epoch.step = 2100;
  CHECK_THROWS_AS(manager.save_checkpoint(state_at(3, 2100), no_epoch), InvalidArgument);
  CHECK_THROWS_AS(manager.save_checkpoint_async(state_at(3, 2100), no_epoch), InvalidArgument);
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_step_2100.pth"));
  // (Rotation of mixed epoch and step checkpoints: tests/core/steps_test.cpp.)
  CHECK(manager.load_latest_checkpoint()->get<int64_t>("step") == 2000);
}
