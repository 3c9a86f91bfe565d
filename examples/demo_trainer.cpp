// demo_trainer: the guide's training loop in C++, on ckpt's public API only.
//
// Trains a small MLP to classify points of two interleaved spirals (generated, so the
// demo needs no download), with the guide's checkpointing:
//   - on start, load_latest_checkpoint() and resume after its epoch;
//   - every epoch, save_epoch_checkpoint() (rotation keeps the newest --keep);
//   - when validation accuracy improves, save_best_model();
//   - on Ctrl+C (SIGINT) or SIGTERM, finish the current step, save_interrupt_checkpoint()
//     and exit. --interrupt-at-epoch N sends this process a real SIGINT midway through
//     epoch N, so the whole path can be shown without a keyboard.
//
// Usage: demo_trainer [--dir DIR] [--epochs N] [--keep K] [--interrupt-at-epoch N]
#include <ckpt/ckpt.hpp>
#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct Options {
  std::string dir = "demo_checkpoints";
  int64_t epochs = 30;
  int keep = 5;
  int64_t interrupt_at_epoch = -1;
};

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "demo_trainer: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--dir") {
      options.dir = value();
    } else if (arg == "--epochs") {
      options.epochs = std::stoll(value());
    } else if (arg == "--keep") {
      options.keep = std::stoi(value());
    } else if (arg == "--interrupt-at-epoch") {
      options.interrupt_at_epoch = std::stoll(value());
    } else {
      std::fprintf(stderr, "usage: demo_trainer [--dir DIR] [--epochs N] [--keep K] [--interrupt-at-epoch N]\n");
      std::exit(2);
    }
  }
  return options;
}

// The signal handler only sets a flag; the loop saves at a step boundary. Writing files
// inside a signal handler is never safe.
std::atomic<bool> stop_requested{false};
extern "C" void request_stop(int) { stop_requested = true; }

// Two interleaved spirals, 2-D points, labels 0/1; deterministic for a seed.
std::pair<torch::Tensor, torch::Tensor> make_spirals(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto t = torch::rand({n}) * 2 * M_PI + 0.5;
  auto label = torch::randint(0, 2, {n}, torch::kLong);
  auto sign = label.to(torch::kFloat) * 2 - 1;
  auto x = torch::stack({t * torch::cos(t) * sign, t * torch::sin(t) * sign}, 1) / 10;
  return {x + torch::randn({n, 2}) * 0.02, label};
}

// Until the training-state issue adds ckpt::state_dict for modules, the demo copies
// parameters and buffers itself, under the names PyTorch would give them.
ckpt::State module_state(const torch::nn::Module& module) {
  ckpt::State state;
  for (const auto& item : module.named_parameters()) state.set(item.key(), item.value().detach().clone());
  for (const auto& item : module.named_buffers()) state.set(item.key(), item.value().detach().clone());
  return state;
}

void load_module_state(torch::nn::Module& module, const ckpt::State& state) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters()) item.value().copy_(state.get<torch::Tensor>(item.key()));
  for (auto& item : module.named_buffers()) item.value().copy_(state.get<torch::Tensor>(item.key()));
}

double accuracy(torch::nn::Sequential& model, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard no_grad;
  model->eval();
  auto predicted = model->forward(x).argmax(1);
  model->train();
  return predicted.eq(y).to(torch::kFloat).mean().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse_options(argc, argv);
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);

  auto [train_x, train_y] = make_spirals(2048, 1);
  auto [val_x, val_y] = make_spirals(512, 2);
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(2, 64), torch::nn::ReLU(), torch::nn::Linear(64, 64),
                              torch::nn::ReLU(), torch::nn::Linear(64, 2));
  const double lr = 0.25;
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(lr));

  ckpt::CheckpointManager manager(options.dir, torch::kCPU, options.keep);

  int64_t start_epoch = 1;
  double best_acc = 0;
  if (auto state = manager.load_latest_checkpoint()) {
    load_module_state(*model, state->get<ckpt::State>("model"));
    start_epoch = state->get<int64_t>("epoch") + 1;
    best_acc = state->get<double>("best_acc");
    std::printf("resumed: continuing at epoch %lld (best val acc so far %.3f)\n",
                static_cast<long long>(start_epoch), best_acc);
  } else {
    std::printf("no checkpoint in %s: starting from scratch\n", options.dir.c_str());
  }

  const int64_t batch_size = 64;
  const int64_t batches = train_x.size(0) / batch_size;
  for (int64_t epoch = start_epoch; epoch <= options.epochs; ++epoch) {
    // A fixed shuffle per epoch, so a resumed run sees the same batches it would have.
    torch::manual_seed(1000 + epoch);
    auto order = torch::randperm(train_x.size(0));
    double loss_sum = 0;
    for (int64_t b = 0; b < batches; ++b) {
      if (epoch == options.interrupt_at_epoch && b == batches / 2) std::raise(SIGINT);
      if (stop_requested) {
        // The guide's KeyboardInterrupt branch: the epoch in progress is not complete,
        // so the snapshot says the last complete one and resume repeats this epoch.
        ckpt::State state{{"epoch", epoch - 1}, {"best_acc", best_acc}};
        state.set("model", module_state(*model));
        state.set("optimizer", ckpt::State{{"lr", lr}});
        manager.save_interrupt_checkpoint(state);
        std::printf("interrupted during epoch %lld: state saved, safe to exit\n", static_cast<long long>(epoch));
        return 130;
      }
      auto index = order.slice(0, b * batch_size, (b + 1) * batch_size);
      auto loss = torch::nn::functional::cross_entropy(model->forward(train_x.index_select(0, index)),
                                                       train_y.index_select(0, index));
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>();
    }
    double train_loss = loss_sum / static_cast<double>(batches);
    double val_acc = accuracy(model, val_x, val_y);

    ckpt::State state{{"epoch", epoch}, {"best_acc", std::max(best_acc, val_acc)},
                      {"train_loss", train_loss}, {"val_acc", val_acc}};
    state.set("model", module_state(*model));
    state.set("optimizer", ckpt::State{{"lr", lr}});
    manager.save_epoch_checkpoint(state, epoch, val_acc);
    bool improved = val_acc > best_acc;
    if (improved) {
      best_acc = val_acc;
      manager.save_best_model(state, best_acc);
    }
    std::printf("epoch %3lld  train loss %.4f  val acc %.3f%s\n", static_cast<long long>(epoch), train_loss, val_acc,
                improved ? "  (new best)" : "");
  }

  std::printf("done: best val acc %.3f\n", best_acc);
  std::printf("files:   ls %s\n", options.dir.c_str());
  std::printf("history: sqlite3 %s/index.sqlite \"SELECT at, event, detail FROM events ORDER BY id\"\n",
              options.dir.c_str());
  return 0;
}
