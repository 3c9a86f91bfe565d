// demo_trainer: the guide's Trainer pattern in C++, on ckpt's public API only.
//
// Trains a small MLP to classify points of two interleaved spirals (generated, so the
// demo needs no download) with Adam and a StepLR schedule, and checkpoints as the
// guide does:
//   - fit() starts with load_latest_checkpoint() and resumes exactly where the last run
//     stopped: model, optimizer, schedule, RNG and the position inside the epoch. As in
//     the guide, a state's "epoch" is the last epoch completed and the resume starts at
//     epoch + 1; an interrupt checkpoint also says how many batches of that next epoch
//     were done ("batch"), so none is trained twice or skipped;
//   - every epoch, save_epoch_checkpoint() (rotation keeps the newest --keep);
//   - when validation accuracy improves, save_best_model();
//   - on Ctrl+C or SIGTERM (ckpt::InterruptGuard), the current step finishes, then
//     save_interrupt_checkpoint() and exit 130. --interrupt-at-epoch N sends this process
//     a real SIGINT midway through epoch N, to show the whole path without a keyboard.
//
// Usage: demo_trainer [--dir DIR] [--epochs N] [--keep K] [--interrupt-at-epoch N] [--help]
#include <ckpt/ckpt.hpp>
#include <ckpt/training.hpp>
#include <torch/torch.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace {

struct Options {
  std::string dir = "demo_checkpoints";
  int64_t epochs = 30;
  int keep = 5;
  int64_t interrupt_at_epoch = -1;
};

constexpr const char* kUsage =
    "usage: demo_trainer [--dir DIR] [--epochs N] [--keep K] [--interrupt-at-epoch N] [--help]\n"
    "\n"
    "Trains a small MLP on generated spirals, checkpointing as the guide's Trainer does;\n"
    "resumes from DIR's latest checkpoint when there is one.\n"
    "  --dir DIR                 checkpoint directory (default demo_checkpoints)\n"
    "  --epochs N                train epochs 1..N (default 30)\n"
    "  --keep K                  epoch checkpoints to keep (default 5)\n"
    "  --interrupt-at-epoch N    send this process a SIGINT midway through epoch N\n"
    "  --help                    print this and exit\n"
    "Exit status: 0 when training finished, 130 when interrupted (state saved), 2 on bad usage.\n";

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
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--dir") {
      options.dir = value();
    } else if (arg == "--epochs") {
      options.epochs = std::stoll(value());
    } else if (arg == "--keep") {
      options.keep = std::stoi(value());
    } else if (arg == "--interrupt-at-epoch") {
      options.interrupt_at_epoch = std::stoll(value());
    } else {
      std::fprintf(stderr, "demo_trainer: unknown argument '%s'\n%s", arg.c_str(), kUsage);
      std::exit(2);
    }
  }
  return options;
}

// Two interleaved spirals, 2-D points, labels 0/1; the same for the same seed.
std::pair<torch::Tensor, torch::Tensor> make_spirals(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto t = torch::rand({n}) * 2 * M_PI + 0.5;
  auto label = torch::randint(0, 2, {n}, torch::kLong);
  auto sign = label.to(torch::kFloat) * 2 - 1;
  auto x = torch::stack({t * torch::cos(t) * sign, t * torch::sin(t) * sign}, 1) / 10;
  return {x + torch::randn({n, 2}) * 0.02, label};
}

// The guide's Trainer: owns the model, the optimizer and the CheckpointManager.
class Trainer {
 public:
  explicit Trainer(const Options& options)
      : options_(options),
        model_(torch::nn::Linear(2, 64), torch::nn::ReLU(), torch::nn::Linear(64, 64), torch::nn::ReLU(),
               torch::nn::Linear(64, 2)),
        optimizer_(model_->parameters(), torch::optim::AdamOptions(0.01)),
        scheduler_(optimizer_, /*step_size=*/10, /*gamma=*/0.5),
        manager_(options.dir, torch::kCPU, options.keep) {
    std::tie(train_x_, train_y_) = make_spirals(2048, 1);
    std::tie(val_x_, val_y_) = make_spirals(512, 2);
  }

  // Returns the process exit code: 0 when training finished, 130 when interrupted.
  int fit() {
    ckpt::InterruptGuard interrupt;  // Ctrl+C only sets a flag; the loop saves
    int64_t start_epoch = 1, start_batch = 0;
    if (auto state = manager_.load_latest_checkpoint()) {
      restore(*state);
      start_epoch = state->get<int64_t>("epoch") + 1;  // the guide's: "epoch" is the one completed
      start_batch = state->get<int64_t>("batch");
      std::printf("resumed after epoch %lld: epoch %lld from batch %lld (best val acc so far %.3f)\n",
                  static_cast<long long>(start_epoch - 1), static_cast<long long>(start_epoch),
                  static_cast<long long>(start_batch), best_acc_);
    } else {
      torch::manual_seed(0);
      std::printf("no checkpoint in %s: starting from scratch\n", options_.dir.c_str());
    }

    const int64_t batch_size = 64;
    const int64_t batches = train_x_.size(0) / batch_size;
    for (int64_t epoch = start_epoch; epoch <= options_.epochs; ++epoch) {
      // The batch order depends only on the epoch, so a resumed run sees the same batches.
      auto order = torch::randperm(train_x_.size(0), torch::make_generator<torch::CPUGeneratorImpl>(1000 + epoch));
      for (int64_t batch = epoch == start_epoch ? start_batch : 0; batch < batches; ++batch) {
        if (epoch == options_.interrupt_at_epoch && batch == batches / 2) std::raise(SIGINT);
        auto index = order.slice(0, batch * batch_size, (batch + 1) * batch_size);
        auto loss = torch::nn::functional::cross_entropy(model_->forward(train_x_.index_select(0, index)),
                                                         train_y_.index_select(0, index));
        optimizer_.zero_grad();
        loss.backward();
        optimizer_.step();
        loss_sum_ += loss.item<double>();
        if (interrupt.requested()) {
          // The guide's KeyboardInterrupt branch, at a step boundary.
          manager_.save_interrupt_checkpoint(snapshot(epoch - 1, batch + 1));
          std::printf("interrupted during epoch %lld: state saved, safe to exit\n", static_cast<long long>(epoch));
          return 130;
        }
      }
      double train_loss = loss_sum_ / static_cast<double>(batches);
      loss_sum_ = 0;
      double val_acc = accuracy();
      scheduler_.step();
      bool improved = val_acc > best_acc_;
      if (improved) best_acc_ = val_acc;
      ckpt::State state = snapshot(epoch, 0);
      state.set("train_loss", train_loss).set("val_acc", val_acc);
      manager_.save_epoch_checkpoint(state, epoch);  // the index's metric: the state's val_acc
      if (improved) manager_.save_best_model(state, best_acc_);
      std::printf("epoch %3lld  train loss %.4f  val acc %.3f  lr %.4f%s\n", static_cast<long long>(epoch), train_loss,
                  val_acc, scheduler_.get_last_lr()[0], improved ? "  (new best)" : "");
    }
    std::printf("done: best val acc %.3f\n", best_acc_);
    std::printf("history: sqlite3 %s/index.sqlite \"SELECT at, event, detail FROM events ORDER BY id\"\n",
                options_.dir.c_str());
    return 0;
  }

 private:
  // [readme:exact-resume]
  // Everything an exact resume needs. "epoch" is the last epoch completed (the guide's
  // meaning) and "batch" how many batches of the next one are done: the resume continues
  // at epoch + 1, batch.
  ckpt::State snapshot(int64_t epoch, int64_t batch) {
    ckpt::State state{{"epoch", epoch}, {"batch", batch}, {"best_acc", best_acc_}, {"loss_sum", loss_sum_}};
    state.set("model", ckpt::state_dict(*model_));
    state.set("optimizer", ckpt::state_dict(optimizer_));
    state.set("scheduler", scheduler_.state_dict());
    state.set("rng", ckpt::rng_state());
    return state;
  }

  void restore(const ckpt::State& state) {
    ckpt::load_state_dict(*model_, state.get<ckpt::State>("model"));
    ckpt::load_state_dict(optimizer_, state.get<ckpt::State>("optimizer"));
    scheduler_.load_state_dict(state.get<ckpt::State>("scheduler"));
    ckpt::set_rng_state(state.get<ckpt::State>("rng"));
    best_acc_ = state.get<double>("best_acc");
    loss_sum_ = state.get<double>("loss_sum");
  }
  // [/readme]

  double accuracy() {
    torch::NoGradGuard no_grad;
    model_->eval();
    auto predicted = model_->forward(val_x_).argmax(1);
    model_->train();
    return predicted.eq(val_y_).to(torch::kFloat).mean().item<double>();
  }

  Options options_;
  torch::nn::Sequential model_;
  torch::optim::Adam optimizer_;
  ckpt::StepLR scheduler_;
  ckpt::CheckpointManager manager_;
  torch::Tensor train_x_, train_y_, val_x_, val_y_;
  double best_acc_ = 0;
  double loss_sum_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = parse_options(argc, argv);
  } catch (const std::logic_error&) {  // std::stoll: not a number, or out of range
    std::fprintf(stderr, "demo_trainer: a number was expected\n%s", kUsage);
    return 2;
  }
  torch::set_num_threads(1);
  torch::manual_seed(0);  // the model's initial weights (libtorch seeds its generator at random)
  try {
    Trainer trainer(options);
    return trainer.fit();
  } catch (const ckpt::Error& error) {
    std::fprintf(stderr, "demo_trainer: %s\n", error.what());
    return 1;
  }
}
