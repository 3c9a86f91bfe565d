// The module's and the optimizer's load_state_dict in two steps: every check first, on
// checkpoint tensors that may be placeholders (meta tensors: shapes and dtypes, no data),
// then the change. ckpt::load_state_dict (training.hpp) runs both at once; restore in
// place (restore.cpp) reads the file between them.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ckpt/restore.hpp"
#include "ckpt/state.hpp"

namespace ckpt::torch_layer {

struct ModuleLoad {
  LoadReport report;
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (the module's tensor, the checkpoint's)
};

// Matches `state` against the module's parameters and buffers (names, shapes, dtypes).
// Strict: any difference throws one StateError listing them all. Changes nothing.
ModuleLoad plan_module_load(const torch::nn::Module& module, const State& state, bool strict);

struct OptimizerLoad {
  struct Param {
    std::string key;      // into Optimizer::state()
    at::Tensor parameter;
    // Its new state, holding the checkpoint's tensors as they are until resolve_tensors.
    std::unique_ptr<torch::optim::OptimizerParamState> state;
  };
  int kind = 0;
  std::vector<Param> params;
  std::vector<State> groups;  // each group's saved hyperparameters, already checked
};

// Checks Python's optimizer layout against `optimizer` (training.hpp's load_state_dict:
// the same StateErrors) and prepares the new groups and states. Changes nothing.
OptimizerLoad plan_optimizer_load(const torch::optim::Optimizer& optimizer, const State& state);

// Replaces each tensor of the prepared states with resolve(checkpoint's tensor, its
// parameter, the optimizer's current tensor of that field or an undefined one). The
// optimizer is not changed.
using TensorResolver =
    std::function<at::Tensor(const at::Tensor& saved, const at::Tensor& parameter, const at::Tensor& current)>;
void resolve_tensors(const torch::optim::Optimizer& optimizer, OptimizerLoad& load, const TensorResolver& resolve);

// Sets each group's options from the checkpoint and installs the prepared states (the old
// states are dropped). Throws nothing plan_optimizer_load did not already check.
void install(torch::optim::Optimizer& optimizer, OptimizerLoad&& load);

}  // namespace ckpt::torch_layer
