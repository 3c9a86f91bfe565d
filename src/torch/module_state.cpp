// Module state_dict / load_state_dict with Python's names and semantics.
#include <ATen/core/Tensor.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>

#include <map>

#include "ckpt/errors.hpp"
#include "ckpt/training.hpp"
#include "torch/state_loading.hpp"

namespace ckpt {

namespace {

// Python's order: a module's own parameters, its own buffers, then each child's, with
// names joined by dots.
void collect(const torch::nn::Module& module, const std::string& prefix,
             std::vector<std::pair<std::string, at::Tensor>>& out) {
  for (const auto& item : module.named_parameters(/*recurse=*/false)) out.emplace_back(prefix + item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/false)) out.emplace_back(prefix + item.key(), item.value());
  for (const auto& child : module.named_children()) collect(*child.value(), prefix + child.key() + ".", out);
}

std::string shape_text(at::IntArrayRef sizes) { return fmt::format("[{}]", fmt::join(sizes, ", ")); }

}  // namespace

State state_dict(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> entries;
  collect(module, "", entries);
  State state;
  for (auto& [name, tensor] : entries) state.set(name, tensor.detach());
  return state;
}

namespace torch_layer {

ModuleLoad plan_module_load(const torch::nn::Module& module, const State& state, bool strict) {
  std::vector<std::pair<std::string, at::Tensor>> targets;
  collect(module, "", targets);
  ModuleLoad load;
  LoadReport& report = load.report;
  std::map<std::string, bool> expected;
  for (auto& [name, target] : targets) {
    expected[name] = true;
    if (!state.contains(name)) {
      report.missing_keys.push_back(name);
      continue;
    }
    const c10::IValue& value = state.at(name);
    if (!value.isTensor()) {
      report.mismatches.push_back(
          fmt::format("{}: {} in the checkpoint, a tensor in the model", name, state_detail::described(value)));
      continue;
    }
    const at::Tensor& source = value.toTensor();
    if (source.sizes() != target.sizes()) {
      report.mismatches.push_back(fmt::format("{}: shape {} in the checkpoint, {} in the model", name,
                                              shape_text(source.sizes()), shape_text(target.sizes())));
      continue;
    }
    if (source.scalar_type() != target.scalar_type()) {
      report.mismatches.push_back(fmt::format("{}: dtype {} in the checkpoint, {} in the model", name,
                                              c10::toString(source.scalar_type()), c10::toString(target.scalar_type())));
      continue;
    }
    load.copies.emplace_back(target, source);
  }
  for (const auto& [key, value] : state) {
    if (!expected.count(key)) report.unexpected_keys.push_back(key);
  }
  if (strict && !report.ok()) {
    std::string message = "load_state_dict: the checkpoint does not match the model:";
    if (!report.missing_keys.empty()) message += fmt::format("\n  missing keys: {}", fmt::join(report.missing_keys, ", "));
    if (!report.unexpected_keys.empty()) {
      message += fmt::format("\n  unexpected keys: {}", fmt::join(report.unexpected_keys, ", "));
    }
    for (const auto& mismatch : report.mismatches) message += "\n  " + mismatch;
    throw StateError(ErrorCode::key, message);
  }
  return load;
}

}  // namespace torch_layer

LoadReport load_state_dict(torch::nn::Module& module, const State& state, bool strict) {
  torch_layer::ModuleLoad load = torch_layer::plan_module_load(module, state, strict);
  c10::NoGradGuard no_grad;
  for (auto& [target, source] : load.copies) target.copy_(source);
  return load.report;
}

}  // namespace ckpt
