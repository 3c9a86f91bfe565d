// restore_bench: a resume's load of a large model, restored in place against the load
// that builds the State first, one operation per process.
//
//   restore_bench setup --dir DIR [--state-mib N]
//       writes DIR/checkpoint_epoch_1.pth through CheckpointManager: {"epoch": 1,
//       "model": the state_dict of 8 torch::nn::Linear(N * 8, 4096) layers (N MiB of
//       float32 in all, 8 weights of N/8 MiB and their biases)}. Every side reads this file.
//   restore_bench run --dir DIR --mode M [--state-mib N] [--json-out FILE]
//       builds the same module (its memory touched, as a trainer's model is), then times
//       one operation:
//         in-place   ckpt::restore_file(file, {model}): pass 1 checks each record's CRC-32,
//                    pass 2 reads each record into its parameter (CRC-32 again);
//         manager    CheckpointManager::load_latest_checkpoint_into({model}): as in-place,
//                    plus the whole-file hash against the index row in pass 1;
//         load-file  ckpt::load_file(file) then ckpt::load_state_dict(model, ...): the State
//                    first, then the copy.
// bench/python_restore.py is the Python side: torch.load(file) + model.load_state_dict.
// The JSON result has the operation's wall and CPU time, page faults, the RSS before it
// (the model is resident) and the process's peak RSS.
#include <c10/core/GradMode.h>
#include <ckpt/ckpt.hpp>
#include <ckpt/training.hpp>
#include <spdlog/spdlog.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "bench_support.hpp"

namespace {

torch::nn::Sequential make_model(int state_mib) {
  torch::nn::Sequential model;
  for (int i = 0; i < 8; ++i) model->push_back(torch::nn::Linear(static_cast<std::int64_t>(state_mib) * 8, 4096));
  c10::NoGradGuard no_grad;
  for (auto& parameter : model->parameters()) parameter.fill_(0.5f);  // resident, as a trained model is
  return model;
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir, json_out;
  std::string mode = "in-place";
  int state_mib = 1024;
  bench::Args args(
      "usage: restore_bench setup|run --dir DIR [--mode in-place|manager|load-file] [--state-mib N] [--json-out FILE]");
  args.option("--dir", dir).option("--mode", mode).option("--state-mib", state_mib).option("--json-out", json_out);
  const std::string command = args.parse_command(argc, argv, {"setup", "run"});
  if (dir.empty() || state_mib < 8 || (mode != "in-place" && mode != "manager" && mode != "load-file")) args.usage();
  try {
    spdlog::set_level(spdlog::level::warn);
    const std::filesystem::path file = dir / "checkpoint_epoch_1.pth";
    if (command == "setup") {
      torch::manual_seed(1);
      torch::nn::Sequential model(make_model(state_mib));
      ckpt::CheckpointManager manager(dir);
      manager.save_epoch_checkpoint(ckpt::State{{"epoch", std::int64_t{1}}, {"model", ckpt::state_dict(*model)}}, 1);
      std::printf("restore_bench setup: %s, %.1f MiB\n", file.c_str(),
                  static_cast<double>(std::filesystem::file_size(file)) / (1 << 20));
      return 0;
    }
    torch::nn::Sequential model = make_model(state_mib);
    std::unique_ptr<ckpt::CheckpointManager> manager;
    if (mode == "manager") manager = std::make_unique<ckpt::CheckpointManager>(dir);  // opened outside the timing
    const long rss_before = bench::current_rss_kib();
    const bench::Reading before = bench::Reading::now();
    if (mode == "in-place") {
      ckpt::restore_file(file, ckpt::RestoreTarget{model.get()});
    } else if (mode == "manager") {
      if (!manager->load_latest_checkpoint_into(ckpt::RestoreTarget{model.get()})) throw std::runtime_error("nothing restored");
    } else {
      ckpt::load_state_dict(*model, ckpt::load_file(file).get<ckpt::State>("model"));
    }
    const bench::Reading after = bench::Reading::now();
    const auto span = bench::Span::between(before, after);
    std::printf("restore_bench %s: %.1f MiB in %.3f s (user %.3f, sys %.3f), peak RSS %.0f MiB, %.0f MiB above the "
                "RSS before\n",
                mode.c_str(), static_cast<double>(std::filesystem::file_size(file)) / (1 << 20), span.wall_s,
                span.user_s, span.sys_s, after.maxrss_kib / 1024.0, (after.maxrss_kib - rss_before) / 1024.0);
    bench::Result result;
    result.add("side", mode).add("state_bytes", static_cast<std::uint64_t>(std::filesystem::file_size(file)));
    result.add_operation(rss_before, before, after);
    double load = 0;
    std::ifstream("/proc/loadavg") >> load;
    result.add("loadavg_1min", load).write(json_out);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "restore_bench: %s\n", error.what());
    return 1;
  }
  return 0;
}
