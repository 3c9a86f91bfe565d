// Training state in PyTorch's layout: what a libtorch trainer needs to save and restore
// so that a resume is exact, and so that Python reads and writes the same checkpoints.
//
//   State state{{"epoch", epoch}};
//   state.set("model", ckpt::state_dict(*model));          // names as Python gives them
//   state.set("optimizer", ckpt::state_dict(optimizer));   // Python's optimizer layout
//   state.set("scheduler", scheduler.state_dict());         // Python's StepLR layout
//   state.set("rng", ckpt::rng_state());                    // torch.get_rng_state()
//
// Includes libtorch's module and optimizer headers: include it only where needed.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <string>
#include <vector>

#include "ckpt/restore.hpp"  // LoadReport
#include "ckpt/state.hpp"

namespace ckpt {

// ---- Modules ---------------------------------------------------------------------

// Parameters and buffers under the names PyTorch gives them for the equivalent Python
// module ("0.weight", "1.running_mean", "1.num_batches_tracked"), in Python's order
// (each module's parameters, then its buffers, then its children). The tensors are
// detached views of the module's own (no copy), as in Python.
State state_dict(const torch::nn::Module& module);

// Copies the State's tensors into the module's parameters and buffers in place (the
// same tensors, so an optimizer built on them keeps working). Entries that match are
// copied; what does not is reported (LoadReport is in ckpt/restore.hpp, which restores a
// checkpoint file into a module without building its State first). In strict mode any
// missing key, unexpected key or shape/dtype mismatch throws one StateError listing them
// all, and nothing is copied.
LoadReport load_state_dict(torch::nn::Module& module, const State& state, bool strict = true);

// ---- Optimizers --------------------------------------------------------------------

// Python's optimizer state_dict layout:
//   {"state": {0: {"step": ..., "exp_avg": ...}, ...},
//    "param_groups": [{"lr": ..., "betas": (b1, b2), ..., "params": [0, 1, ...]}]}
// for SGD, Adam, AdamW, RMSprop and Adagrad, with Python 1.13's field names and types
// (Adam, AdamW, Adagrad keep "step" as a float32 0-d tensor; RMSprop as an int) and
// Python's defaults for the group flags libtorch lacks (maximize, foreach, capturable,
// differentiable, fused). Throws InvalidArgument for another optimizer (LBFGS).
State state_dict(const torch::optim::Optimizer& optimizer);

// Loads that layout, written by C++ or by Python's torch.optim: hyperparameters into
// the groups, per-parameter state (copied to each parameter's device and dtype). Throws
// StateError naming what differs: another optimizer's state, group or parameter counts,
// state tensor shapes, or a flag libtorch cannot honour (maximize=True).
void load_state_dict(torch::optim::Optimizer& optimizer, const State& state);

// ---- Learning-rate schedule ----------------------------------------------------------

// Python's torch.optim.lr_scheduler.StepLR, with its state_dict. libtorch 1.13's StepLR
// keeps its state private, so a trainer that wants exact resumes uses this one.
// Construction performs the initial step, as Python's does (last_epoch becomes 0).
class StepLR {
 public:
  StepLR(torch::optim::Optimizer& optimizer, std::int64_t step_size, double gamma = 0.1);
  // Call once per epoch, after the optimizer's steps (as in Python).
  void step();
  // {"step_size", "gamma", "base_lrs", "last_epoch", "verbose", "_step_count",
  //  "_get_lr_called_within_step", "_last_lr"}: round-trips with Python's.
  State state_dict() const;
  // Restores the schedule and sets each group's learning rate to the saved _last_lr.
  void load_state_dict(const State& state);
  const std::vector<double>& get_last_lr() const noexcept { return last_lr_; }
  std::int64_t last_epoch() const noexcept { return last_epoch_; }

 private:
  void apply(const std::vector<double>& lrs);

  torch::optim::Optimizer& optimizer_;
  std::int64_t step_size_;
  double gamma_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  std::int64_t last_epoch_ = -1;
  std::int64_t step_count_ = 0;
};

// ---- Random number generators --------------------------------------------------------

// {"cpu": uint8 tensor} as Python's torch.get_rng_state(), plus "cuda": [one per
// device] when CUDA is present (torch.cuda.get_rng_state_all()).
State rng_state();
// Restores what rng_state() returned (or Python wrote under the same keys).
void set_rng_state(const State& state);

}  // namespace ckpt
