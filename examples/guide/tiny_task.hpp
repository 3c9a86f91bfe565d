// tiny_task.hpp: what the guide's examples leave to the reader ("... training code ...").
//
// A tiny classifier (two interleaved spirals, 2-D points, labels 0/1; generated, so the
// examples need no download) standing in for the guide's create_model(), data loaders,
// train_one_epoch(), validate() and evaluate(). The programs beside this file are the
// guide's five usage patterns on ckpt's public API; only this file is "the model", the
// part a port replaces with its own.
//
// Each program takes --epochs N and --sigint-at-step K: the K-th training step of the
// process sends it a real SIGINT, as Ctrl+C would, so the tests can interrupt a run at a
// known place without a keyboard.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

struct Batch {
  torch::Tensor x;  // [batch, 2] points
  torch::Tensor y;  // [batch] labels 0/1
};
using Loader = std::vector<Batch>;

// n points of two interleaved spirals in batches; the same for the same seed.
inline Loader make_loader(int64_t n, uint64_t seed, int64_t batch_size = 64) {
  auto generator = torch::make_generator<torch::CPUGeneratorImpl>(seed);
  auto t = torch::rand({n}, generator) * 2 * M_PI + 0.5;
  auto label = torch::randint(0, 2, {n}, generator, torch::kLong);
  auto sign = label.to(torch::kFloat) * 2 - 1;
  auto x = torch::stack({t * torch::cos(t) * sign, t * torch::sin(t) * sign}, 1) / 10;
  x = x + torch::randn({n, 2}, generator) * 0.02;
  Loader loader;
  for (int64_t start = 0; start < n; start += batch_size) {
    loader.push_back({x.slice(0, start, start + batch_size), label.slice(0, start, start + batch_size)});
  }
  return loader;
}

struct NetImpl : torch::nn::Module {
  NetImpl() : fc1(register_module("fc1", torch::nn::Linear(2, 32))), fc2(register_module("fc2", torch::nn::Linear(32, 2))) {}
  torch::Tensor forward(torch::Tensor x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Net);

inline Net create_model() { return Net(); }

namespace tiny_task {
inline int64_t sigint_at_step = -1;  // --sigint-at-step
inline int64_t steps_taken = 0;
}  // namespace tiny_task

// One optimizer step on one batch; returns its loss.
inline double train_step(Net& model, torch::optim::Optimizer& optimizer, const Batch& batch) {
  model->train();
  optimizer.zero_grad();
  auto loss = torch::nn::functional::cross_entropy(model->forward(batch.x), batch.y);
  loss.backward();
  optimizer.step();
  if (++tiny_task::steps_taken == tiny_task::sigint_at_step) std::raise(SIGINT);  // as Ctrl+C would
  return loss.item<double>();
}

// One pass over the loader; returns the mean loss.
inline double train_one_epoch(Net& model, torch::optim::Optimizer& optimizer, const Loader& loader) {
  double sum = 0;
  for (const Batch& batch : loader) sum += train_step(model, optimizer, batch);
  return sum / static_cast<double>(loader.size());
}

// Accuracy on the loader, in percent.
inline double validate(Net& model, const Loader& loader) {
  torch::NoGradGuard no_grad;
  model->eval();
  int64_t correct = 0, total = 0;
  for (const Batch& batch : loader) {
    correct += model->forward(batch.x).argmax(1).eq(batch.y).sum().item<int64_t>();
    total += batch.y.size(0);
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(total);
}
inline double evaluate(Net& model, const Loader& loader) { return validate(model, loader); }

// Parses --epochs N (default `epochs`) and --sigint-at-step K; --help prints the usage and
// exits 0, a bad argument exits 2. Also fixes the thread count and the seed, so runs repeat.
inline int64_t parse_args(int argc, char** argv, const char* name, int64_t epochs) {
  const std::string usage = std::string("usage: ") + name + " [--epochs N] [--sigint-at-step K] [--help]\n" +
                            "Runs in the current directory; checkpoints go to ./checkpoints.\n";
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::fputs(usage.c_str(), stdout);
        std::exit(0);
      }
      if ((arg == "--epochs" || arg == "--sigint-at-step") && i + 1 < argc) {
        (arg == "--epochs" ? epochs : tiny_task::sigint_at_step) = std::stoll(argv[++i]);
        continue;
      }
      throw std::invalid_argument(arg);
    }
  } catch (const std::logic_error&) {
    std::fputs(usage.c_str(), stderr);
    std::exit(2);
  }
  torch::set_num_threads(1);
  torch::manual_seed(0);
  return epochs;
}
