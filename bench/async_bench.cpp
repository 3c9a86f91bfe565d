// async_bench: what a checkpoint costs the training thread with asynchronous saves.
//
// stall: a state of --state-mib MiB (float32 tensors of 64 MiB, as a large model's
//   parameters) saved --saves times as epoch checkpoints, one mode per process:
//     sync    save_epoch_checkpoint: the whole durable save is the stall;
//     copy    save_epoch_checkpoint_async (Snapshot::copy): the stall is the call (copy into
//             the staging buffers, encode, queue); the rest of the save runs on the worker;
//     borrow  save_epoch_checkpoint_async (Snapshot::borrow): the call without the copy.
//   Before each save the state is changed in place (untimed), as a training epoch would,
//   so no save is a duplicate of the one before. After each asynchronous call, wait() is
//   timed apart ("complete_us": what is left of the save once the call returned), so each
//   save's stall is measured without a previous save still in flight.
//   bench/python_async_stall.py measures the guide's synchronous Python save (torch.save +
//   fsync) of the same state.
//
// loop: a small training loop (four 1024x1024 float32 weights, 16 MiB; --steps matmul
//   steps per epoch) that checkpoints its state every epoch: --mode none (no checkpoints),
//   async (save_epoch_checkpoint_async, copy) or sync. Reports steps per second over all
//   epochs, the final wait() included.
//
// The checkpoint directory is fresh for every run and should sit on a disk-backed file
// system (bench/run_benchmarks.sh --only async checks that).
//
// Usage: async_bench stall --mode sync|copy|borrow [--dir PARENT] [--state-mib N] [--saves N] [--json-out FILE]
//        async_bench loop --mode none|async|sync [--dir PARENT] [--epochs N] [--steps N] [--json-out FILE]
#include <ATen/ops/matmul.h>
#include <ATen/ops/randn.h>
#include <c10/core/GradMode.h>
#include <ckpt/ckpt.hpp>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_support.hpp"

namespace {

struct Options : bench::RunDirOptions {
  std::string mode;
  int state_mib = 1024;
  int saves = 5;
  int epochs = 10;
  int steps = 4;
};

constexpr const char* kUsage =
    "usage: async_bench stall --mode sync|copy|borrow [--dir PARENT] [--state-mib N] [--saves N] [--json-out FILE]\n"
    "       async_bench loop --mode none|async|sync [--dir PARENT] [--epochs N] [--steps N] [--json-out FILE]";

ckpt::State big_state(int mib) {
  ckpt::State state{{"epoch", std::int64_t{0}}};
  ckpt::State model;
  const int chunks = std::max(1, mib / 64);
  for (int i = 0; i < chunks; ++i) model.set("layer" + std::to_string(i) + ".weight", at::randn({64 * 1024 * 1024 / 4}));
  state.set("model", model);
  return state;
}

void touch(ckpt::State& state, std::int64_t epoch) {
  c10::AutoGradMode no_grad(false);
  state.set("epoch", epoch);
  for (const auto& [key, value] : state.get<ckpt::State>("model")) value.toTensor().add_(1.0f);
}

int run_stall(const Options& options) {
  if (options.mode != "sync" && options.mode != "copy" && options.mode != "borrow") {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  const std::filesystem::path dir = bench::make_fresh_dir(options.parent, "async-" + options.mode);
  std::vector<double> stall_us, complete_us;
  std::uint64_t payload_bytes = 0;
  {
    ckpt::CheckpointManager manager(dir, c10::kCPU, 2);
    ckpt::State state = big_state(options.state_mib);
    const auto snapshot = options.mode == "borrow" ? ckpt::CheckpointManager::Snapshot::borrow
                                                   : ckpt::CheckpointManager::Snapshot::copy;
    for (int epoch = 0; epoch < options.saves; ++epoch) {
      touch(state, epoch);
      auto start = bench::Clock::now();
      if (options.mode == "sync") {
        payload_bytes = manager.save_epoch_checkpoint(state, epoch).size;
        stall_us.push_back(bench::elapsed_us(start));
        complete_us.push_back(0);
        continue;
      }
      manager.save_epoch_checkpoint_async(state, epoch, std::nullopt, snapshot);
      stall_us.push_back(bench::elapsed_us(start));
      start = bench::Clock::now();
      manager.wait();
      complete_us.push_back(bench::elapsed_us(start));
    }
    auto latest = manager.store().latest();
    if (!latest || latest->epoch != options.saves - 1) throw std::runtime_error("the last save is not the latest");
    payload_bytes = latest->size;
  }
  bench::Summary summary = bench::summarize(stall_us);
  std::printf("async_bench stall (%s, libtorch %s): %d saves of %d MiB, payload %llu bytes\n  stall %s\n", options.mode.c_str(),
              TORCH_VERSION, options.saves, options.state_mib, static_cast<unsigned long long>(payload_bytes),
              bench::describe(summary).c_str());
  bench::Result result;
  result.add("side", "cpp").add("kind", "stall").add("mode", options.mode).add("state_mib", options.state_mib);
  result.add("saves", options.saves).add("payload_bytes", payload_bytes);
  result.add_samples("complete_us", complete_us);
  result.add_samples("samples_us", stall_us).write(options.json_out);
  if (!options.keep_dir) std::filesystem::remove_all(dir);
  return 0;
}

int run_loop(const Options& options) {
  if (options.mode != "none" && options.mode != "async" && options.mode != "sync") {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  const std::filesystem::path dir = bench::make_fresh_dir(options.parent, "loop-" + options.mode);
  double seconds = 0;
  {
    c10::AutoGradMode no_grad(false);
    ckpt::CheckpointManager manager(dir, c10::kCPU, 2);
    std::vector<at::Tensor> weights;
    for (int i = 0; i < 4; ++i) weights.push_back(at::randn({1024, 1024}) / 32);
    const at::Tensor input = at::randn({64, 1024});
    auto start = bench::Clock::now();
    for (int epoch = 0; epoch < options.epochs; ++epoch) {
      for (int step = 0; step < options.steps; ++step) {
        at::Tensor x = input;
        for (auto& w : weights) {
          at::Tensor y = at::matmul(x, w);
          w.sub_(at::matmul(x.t(), y), 1e-6);  // an in-place update, as optimizer.step()
          x = y.tanh();
        }
      }
      if (options.mode == "none") continue;
      ckpt::State state{{"epoch", std::int64_t{epoch}}};
      ckpt::State model;
      for (std::size_t i = 0; i < weights.size(); ++i) model.set("w" + std::to_string(i), weights[i]);
      state.set("model", model);
      if (options.mode == "async") {
        manager.save_epoch_checkpoint_async(state, epoch);
      } else {
        manager.save_epoch_checkpoint(state, epoch);
      }
    }
    manager.wait();
    seconds = bench::elapsed_us(start) / 1e6;
  }
  const double steps_per_second = options.epochs * options.steps / seconds;
  std::printf("async_bench loop (%s): %d epochs of %d steps, %.1f steps/s\n", options.mode.c_str(), options.epochs,
              options.steps, steps_per_second);
  bench::Result result;
  result.add("side", "cpp").add("kind", "loop").add("mode", options.mode).add("epochs", options.epochs);
  result.add("steps", options.steps).add("seconds", seconds).add("steps_per_second", steps_per_second);
  result.write(options.json_out);
  if (!options.keep_dir) std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::off);
  Options options;
  bench::Args args(kUsage);
  options.add_to(args)
      .option("--mode", options.mode)
      .option("--state-mib", options.state_mib)
      .option("--saves", options.saves)
      .option("--epochs", options.epochs)
      .option("--steps", options.steps);
  const std::string command = args.parse_command(argc, argv, {"stall", "loop"});
  try {
    return command == "stall" ? run_stall(options) : run_loop(options);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "async_bench: %s\n", error.what());
    return 1;
  }
}
