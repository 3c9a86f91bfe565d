// Training state in PyTorch's layout: modules, optimizers, StepLR, RNG, InterruptGuard.
#include "support/torch_pch.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/activation.h>
#include <torch/optim.h>

#include "ckpt/training.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

torch::nn::Sequential make_model(std::uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::BatchNorm1d(8), torch::nn::ReLU(),
                               torch::nn::Linear(8, 3));
}

void train_steps(torch::nn::Sequential& model, torch::optim::Optimizer& optimizer, int steps, std::uint64_t seed) {
  torch::manual_seed(seed);
  for (int i = 0; i < steps; ++i) {
    auto x = torch::randn({16, 4});
    auto loss = model->forward(x).pow(2).mean();
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
}

bool same_parameters(torch::nn::Sequential& a, torch::nn::Sequential& b) {
  auto pa = a->parameters();
  auto pb = b->parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    if (!pa[i].equal(pb[i])) return false;
  }
  return true;
}

template <typename Optimizer, typename Options>
void check_optimizer_round_trip(const Options& options, const char* name) {
  INFO(name);
  auto original = make_model(1);
  Optimizer optimizer(original->parameters(), options);
  train_steps(original, optimizer, 3, 10);
  State saved = state_dict(optimizer);
  State model_saved = state_dict(*original);

  // A fresh model and optimizer restored from the State continue exactly as the original.
  auto restored = make_model(2);
  load_state_dict(*restored, model_saved);
  Optimizer restored_optimizer(restored->parameters(), Options(0.5));
  load_state_dict(restored_optimizer, saved);
  train_steps(original, optimizer, 3, 20);
  train_steps(restored, restored_optimizer, 3, 20);
  CHECK(same_parameters(original, restored));
}

}  // namespace

TEST_CASE("a module's state_dict has Python's names in Python's order", "[training][module]") {
  auto model = make_model(0);
  CHECK(state_dict(*model).keys() == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias",
                                                                "1.running_mean", "1.running_var",
                                                                "1.num_batches_tracked", "3.weight", "3.bias"});
  CHECK(state_dict(*model).get<at::Tensor>("1.num_batches_tracked").scalar_type() == at::kLong);
}

TEST_CASE("load_state_dict copies in place, so the optimizer keeps working on the same tensors",
          "[training][module]") {
  auto source = make_model(1);
  auto target = make_model(2);
  void* before = target[0]->as<torch::nn::Linear>()->weight.data_ptr();
  auto report = load_state_dict(*target, state_dict(*source));
  CHECK(report.ok());
  CHECK(target[0]->as<torch::nn::Linear>()->weight.data_ptr() == before);
  CHECK(same_parameters(source, target));
}

TEST_CASE("load_state_dict reports every problem; strict mode throws one error listing them all",
          "[training][module]") {
  auto model = make_model(1);
  State state = state_dict(*model);
  state.erase("3.bias");
  state.set("extra.weight", at::ones({1}));
  state.set("0.weight", at::ones({2, 2}));
  state.set("1.num_batches_tracked", at::zeros({}, at::kFloat));
  try {
    load_state_dict(*model, state);
    FAIL("strict load accepted a mismatching state");
  } catch (const StateError& error) {
    std::string message = error.what();
    CHECK_THAT(message, Catch::Contains("3.bias") && Catch::Contains("extra.weight") &&
                            Catch::Contains("0.weight: shape [2, 2] in the checkpoint, [8, 4] in the model") &&
                            Catch::Contains("1.num_batches_tracked: dtype"));
  }
  auto report = load_state_dict(*model, state, /*strict=*/false);
  CHECK(report.missing_keys == std::vector<std::string>{"3.bias"});
  CHECK(report.unexpected_keys == std::vector<std::string>{"extra.weight"});
  CHECK(report.mismatches.size() == 2);
}

TEST_CASE("optimizer state round-trips and training continues bitwise identically", "[training][optimizer]") {
  check_optimizer_round_trip<torch::optim::SGD>(torch::optim::SGDOptions(0.1).momentum(0.9).nesterov(true), "SGD");
  check_optimizer_round_trip<torch::optim::Adam>(torch::optim::AdamOptions(0.01).amsgrad(true), "Adam");
  check_optimizer_round_trip<torch::optim::AdamW>(torch::optim::AdamWOptions(0.01), "AdamW");
  check_optimizer_round_trip<torch::optim::RMSprop>(torch::optim::RMSpropOptions(0.01).momentum(0.5).centered(true),
                                                    "RMSprop");
  check_optimizer_round_trip<torch::optim::Adagrad>(torch::optim::AdagradOptions(0.1), "Adagrad");
}

TEST_CASE("optimizer state_dict has Python's layout and types", "[training][optimizer]") {
  auto model = make_model(1);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(0.01));
  train_steps(model, adam, 2, 3);
  State state = state_dict(adam);
  auto groups = state.at("param_groups").toListRef();
  REQUIRE(groups.size() == 1);
  State group = State::from_generic_dict(groups[0].toGenericDict());
  CHECK(group.keys() == std::vector<std::string>{"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach",
                                                 "capturable", "differentiable", "fused", "params"});
  CHECK(group.at("betas").isTuple());
  CHECK(group.at("params").toIntVector() == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  auto per_param = state.at("state").toGenericDict();
  auto param0 = per_param.at(int64_t{0}).toGenericDict();
  at::Tensor step = param0.at("step").toTensor();
  CHECK(step.scalar_type() == at::kFloat);
  CHECK(step.dim() == 0);
  CHECK(step.item<float>() == 2.0f);
}

TEST_CASE("loading another optimizer's state, or mismatched groups, is a clear error", "[training][optimizer]") {
  auto model = make_model(1);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  train_steps(model, sgd, 1, 3);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(0.01));
  CHECK_THROWS_WITH(load_state_dict(adam, state_dict(sgd)), Catch::Contains("not an Adam state") &&
                                                                Catch::Contains("dampening"));
  auto smaller = torch::nn::Linear(4, 8);
  torch::optim::SGD other(smaller->parameters(), torch::optim::SGDOptions(0.1));
  CHECK_THROWS_WITH(load_state_dict(other, state_dict(sgd)), Catch::Contains("6 parameters in the checkpoint, 2"));
  State maximize = state_dict(adam);
  auto groups = maximize.at("param_groups").toList();
  auto group = groups.get(0).toGenericDict();
  group.insert_or_assign("maximize", true);
  CHECK_THROWS_WITH(load_state_dict(adam, maximize), Catch::Contains("maximize=True"));
}

TEST_CASE("StepLR follows Python's schedule and its state restores the learning rate", "[training][scheduler]") {
  auto model = make_model(1);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(1.0));
  StepLR scheduler(sgd, 2, 0.5);
  std::vector<double> lrs;
  for (int epoch = 0; epoch < 6; ++epoch) {
    lrs.push_back(sgd.param_groups()[0].options().get_lr());
    scheduler.step();
  }
  CHECK(lrs == std::vector<double>{1.0, 1.0, 0.5, 0.5, 0.25, 0.25});
  State saved = scheduler.state_dict();
  CHECK(saved.get<int64_t>("last_epoch") == 6);
  CHECK(saved.get<int64_t>("_step_count") == 7);

  torch::optim::SGD fresh(model->parameters(), torch::optim::SGDOptions(1.0));
  StepLR resumed(fresh, 2, 0.5);
  resumed.load_state_dict(saved);
  CHECK(fresh.param_groups()[0].options().get_lr() == 0.125);
  resumed.step();
  CHECK(fresh.param_groups()[0].options().get_lr() == 0.125);
  resumed.step();
  CHECK(fresh.param_groups()[0].options().get_lr() == 0.0625);
}

TEST_CASE("the RNG state restores the same random stream", "[training][rng]") {
  torch::manual_seed(5);
  State saved = rng_state();
  CHECK(saved.get<at::Tensor>("cpu").numel() == 5056);
  at::Tensor first = torch::randn({8});
  set_rng_state(saved);
  CHECK(torch::randn({8}).equal(first));
}

TEST_CASE("InterruptGuard turns SIGINT into a flag, a second SIGINT kills, and old handlers come back",
          "[training][interrupt]") {
  // The child reports on a pipe that it lived through the first SIGINT with the flag set:
  // without that, a guard that never caught SIGINT would die of the first one and pass.
  int report[2];
  REQUIRE(::pipe(report) == 0);
  int status = 0;
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child == 0) {
    ::close(report[0]);
    {
      InterruptGuard guard;
      ::raise(SIGINT);
      const char flagged = guard.requested() && guard.signal() == SIGINT ? 'y' : 'n';
      if (::write(report[1], &flagged, 1) != 1) ::_exit(12);
      ::raise(SIGINT);  // the default action now: the process dies here
      ::_exit(11);
    }
  }
  ::close(report[1]);
  char flagged = 0;
  const ssize_t got = ::read(report[0], &flagged, 1);
  ::close(report[0]);
  ::waitpid(child, &status, 0);
  CHECK(got == 1);
  CHECK(flagged == 'y');
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGINT);

  struct sigaction before {};
  sigaction(SIGTERM, nullptr, &before);
  {
    InterruptGuard guard;
    CHECK_THROWS_AS(InterruptGuard(), InvalidArgument);
    ::raise(SIGTERM);
    CHECK(guard.signal() == SIGTERM);
    guard.reset();
    CHECK_FALSE(guard.requested());
  }
  struct sigaction after {};
  sigaction(SIGTERM, nullptr, &after);
  CHECK(after.sa_handler == before.sa_handler);
}

namespace {
template <typename Optimizer, typename Options>
void check_python_optimizer(const std::filesystem::path& file, const Options& options) {
  INFO(file.filename().string());
  State saved = load_file(file);
  auto model = make_model(99);
  load_state_dict(*model, saved.get<State>("model"));
  Optimizer optimizer(model->parameters(), options);
  load_state_dict(optimizer, saved.get<State>("optimizer"));
  // One more step on the same input must land where Python's did.
  auto inputs = saved.at("inputs").toTensorList();
  auto loss = model->forward(inputs.get(3)).pow(2).mean();
  optimizer.zero_grad();
  loss.backward();
  optimizer.step();
  State after = saved.get<State>("after");
  for (const auto& [key, value] : state_dict(*model)) {
    INFO(key);
    CHECK(at::allclose(value.toTensor().to(at::kDouble), after.get<at::Tensor>(key).to(at::kDouble), 1e-6, 1e-6));
  }
}
}  // namespace

TEST_CASE("optimizer states written by Python's torch.optim load into libtorch's optimizers and continue alike",
          "[training][optimizer][python]") {
  TestDir dir("py-optim");
  std::string script = std::string(CKPT_SOURCE_DIR) + "/tests/python/optimizer_states.py";
  auto result = run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script) + " " + shell_quote(dir.path().string()) + " 2>&1");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  // Hyperparameters come from the state, so the options passed here are deliberately off.
  check_python_optimizer<torch::optim::SGD>(dir / "sgd.pth", torch::optim::SGDOptions(1.0));
  check_python_optimizer<torch::optim::Adam>(dir / "adam.pth", torch::optim::AdamOptions(1.0));
  check_python_optimizer<torch::optim::AdamW>(dir / "adamw.pth", torch::optim::AdamWOptions(1.0));
  check_python_optimizer<torch::optim::RMSprop>(dir / "rmsprop.pth", torch::optim::RMSpropOptions(1.0));
  check_python_optimizer<torch::optim::Adagrad>(dir / "adagrad.pth", torch::optim::AdagradOptions(1.0));
}
