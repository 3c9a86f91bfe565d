// Optimizer state in Python's layout (training.hpp; StepLR is in step_lr.cpp, RNG state in
// rng_state.cpp).
//
// libtorch keys per-parameter state by the parameter's TensorImpl address and keeps
// "step" as int64; Python numbers parameters 0..n-1 across groups and (in 1.13) keeps
// "step" as a float32 0-d tensor for Adam, AdamW and Adagrad. This file translates both
// ways, one table of fields per optimizer.
#include <ATen/core/Tensor.h>
#include <ATen/ops/scalar_tensor.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include "ckpt/errors.hpp"
#include "ckpt/training.hpp"
#include "torch/state_loading.hpp"

namespace ckpt {

namespace {

using torch::optim::Optimizer;
using torch::optim::OptimizerParamState;

enum class Kind { sgd, adam, adamw, rmsprop, adagrad };

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::sgd: return "SGD";
    case Kind::adam: return "Adam";
    case Kind::adamw: return "AdamW";
    case Kind::rmsprop: return "RMSprop";
    case Kind::adagrad: return "Adagrad";
  }
  return "?";
}

// The name with its article, as it is said: every one takes "an" ("an SGD": "ess-gee-dee").
std::string with_article(const char* name) { return std::string("an ") + name; }

Kind kind_of(const Optimizer& optimizer) {
  if (dynamic_cast<const torch::optim::SGD*>(&optimizer)) return Kind::sgd;
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer)) return Kind::adamw;
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer)) return Kind::adam;
  if (dynamic_cast<const torch::optim::RMSprop*>(&optimizer)) return Kind::rmsprop;
  if (dynamic_cast<const torch::optim::Adagrad*>(&optimizer)) return Kind::adagrad;
  throw InvalidArgument("optimizer state: only SGD, Adam, AdamW, RMSprop and Adagrad are supported");
}

[[noreturn]] void mismatch(const std::string& what) {
  throw StateError(ErrorCode::type, "optimizer load_state_dict: " + what);
}

std::string param_key(const at::Tensor& parameter) {
  return c10::guts::to_string(parameter.unsafeGetTensorImpl());
}

// ---- writing ----

c10::IValue step_value(Kind kind, std::int64_t step) {
  if (kind == Kind::rmsprop) return step;  // Python 1.13 keeps RMSprop's step an int
  return at::scalar_tensor(static_cast<double>(step), at::kFloat);
}

c10::IValue tensor_or_none(const at::Tensor& tensor) { return tensor.defined() ? c10::IValue(tensor) : c10::IValue(); }

// AdamOptions and AdamWOptions have the same fields but are unrelated types.
template <typename Options>
State adam_group(const Options& o) {
  return State{{"lr", o.lr()},
               {"betas", c10::ivalue::Tuple::create({std::get<0>(o.betas()), std::get<1>(o.betas())})},
               {"eps", o.eps()},
               {"weight_decay", o.weight_decay()},
               {"amsgrad", o.amsgrad()},
               {"maximize", false},
               {"foreach", c10::IValue()},
               {"capturable", false}};
}

template <typename ParamState>
State adam_param_state(Kind kind, const ParamState& s) {
  State state{{"step", step_value(kind, s.step())}, {"exp_avg", s.exp_avg()}, {"exp_avg_sq", s.exp_avg_sq()}};
  if (s.max_exp_avg_sq().defined()) state.set("max_exp_avg_sq", s.max_exp_avg_sq());
  return state;
}

State group_state(Kind kind, const torch::optim::OptimizerOptions& options) {
  State group;
  switch (kind) {
    case Kind::sgd: {
      const auto& o = static_cast<const torch::optim::SGDOptions&>(options);
      group = State{{"lr", o.lr()}, {"momentum", o.momentum()}, {"dampening", o.dampening()},
                    {"weight_decay", o.weight_decay()}, {"nesterov", o.nesterov()}, {"maximize", false},
                    {"foreach", c10::IValue()}, {"differentiable", false}};
      break;
    }
    case Kind::adam:
      group = adam_group(static_cast<const torch::optim::AdamOptions&>(options));
      group.set("differentiable", false).set("fused", false);
      break;
    case Kind::adamw:
      group = adam_group(static_cast<const torch::optim::AdamWOptions&>(options));
      break;
    case Kind::rmsprop: {
      const auto& o = static_cast<const torch::optim::RMSpropOptions&>(options);
      group = State{{"lr", o.lr()}, {"momentum", o.momentum()}, {"alpha", o.alpha()}, {"eps", o.eps()},
                    {"centered", o.centered()}, {"weight_decay", o.weight_decay()}, {"foreach", c10::IValue()},
                    {"maximize", false}, {"differentiable", false}};
      break;
    }
    case Kind::adagrad: {
      const auto& o = static_cast<const torch::optim::AdagradOptions&>(options);
      group = State{{"lr", o.lr()}, {"lr_decay", o.lr_decay()}, {"eps", o.eps()}, {"weight_decay", o.weight_decay()},
                    {"initial_accumulator_value", o.initial_accumulator_value()}, {"foreach", c10::IValue()},
                    {"maximize", false}};
      break;
    }
  }
  return group;
}

State param_state(Kind kind, const OptimizerParamState& base) {
  switch (kind) {
    case Kind::sgd: {
      const auto& s = static_cast<const torch::optim::SGDParamState&>(base);
      return State{{"momentum_buffer", tensor_or_none(s.momentum_buffer())}};
    }
    case Kind::adam: return adam_param_state(kind, static_cast<const torch::optim::AdamParamState&>(base));
    case Kind::adamw: return adam_param_state(kind, static_cast<const torch::optim::AdamWParamState&>(base));
    case Kind::rmsprop: {
      const auto& s = static_cast<const torch::optim::RMSpropParamState&>(base);
      State state{{"step", step_value(kind, s.step())}, {"square_avg", s.square_avg()}};
      if (s.momentum_buffer().defined()) state.set("momentum_buffer", s.momentum_buffer());
      if (s.grad_avg().defined()) state.set("grad_avg", s.grad_avg());
      return state;
    }
    case Kind::adagrad: {
      const auto& s = static_cast<const torch::optim::AdagradParamState&>(base);
      return State{{"step", step_value(kind, s.step())}, {"sum", s.sum()}};
    }
  }
  return {};
}

// ---- reading ----

double number(const State& state, const char* key, const std::string& where) {
  if (!state.contains(key)) mismatch(fmt::format("{} has no '{}'", where, key));
  const c10::IValue& value = state.at(key);
  if (value.isDouble()) return value.toDouble();
  if (value.isInt()) return static_cast<double>(value.toInt());
  mismatch(fmt::format("{}['{}'] is {}, not a number", where, key, state_detail::described(value)));
}

bool flag(const State& state, const char* key, bool fallback) {
  if (!state.contains(key)) return fallback;
  const c10::IValue& value = state.at(key);
  return value.isBool() ? value.toBool() : fallback;
}

std::int64_t read_step(const State& state, const std::string& where) {
  if (!state.contains("step")) mismatch(where + " has no 'step'");
  const c10::IValue& value = state.at("step");
  if (value.isInt()) return value.toInt();
  if (value.isDouble()) return static_cast<std::int64_t>(value.toDouble());
  if (value.isTensor() && value.toTensor().numel() == 1) return static_cast<std::int64_t>(value.toTensor().item<double>());
  mismatch(fmt::format("{}['step'] is {}, not a number", where, state_detail::described(value)));
}

at::Tensor read_tensor(const State& state, const char* key, const at::Tensor& parameter, const std::string& where,
                       bool optional = false) {
  if (!state.contains(key) || state.at(key).isNone()) {
    if (optional) return {};
    mismatch(fmt::format("{} has no '{}'", where, key));
  }
  const c10::IValue& value = state.at(key);
  if (!value.isTensor()) {
    mismatch(fmt::format("{}['{}'] is {}, not a tensor", where, key, state_detail::described(value)));
  }
  const at::Tensor& tensor = value.toTensor();
  if (tensor.sizes() != parameter.sizes()) {
    mismatch(fmt::format("{}['{}'] has shape [{}], its parameter [{}]", where, key, fmt::join(tensor.sizes(), ", "),
                         fmt::join(parameter.sizes(), ", ")));
  }
  return tensor;  // as it is: resolve_tensors decides what the state holds
}

// The keys that tell one optimizer's groups from another's.
const char* signature_key(Kind kind) {
  switch (kind) {
    case Kind::sgd: return "dampening";
    case Kind::adam:
    case Kind::adamw: return "betas";
    case Kind::rmsprop: return "alpha";
    case Kind::adagrad: return "lr_decay";
  }
  return "";
}

void load_group(Kind kind, torch::optim::OptimizerOptions& options, const State& group, const std::string& where) {
  if (flag(group, "maximize", false)) {
    mismatch(where + " has maximize=True, which libtorch 1.13's optimizers cannot do");
  }
  switch (kind) {
    case Kind::sgd: {
      auto& o = static_cast<torch::optim::SGDOptions&>(options);
      o.lr(number(group, "lr", where)).momentum(number(group, "momentum", where));
      o.dampening(number(group, "dampening", where)).weight_decay(number(group, "weight_decay", where));
      o.nesterov(flag(group, "nesterov", false));
      break;
    }
    case Kind::adam:
    case Kind::adamw: {
      const c10::IValue& betas_value = group.at("betas");
      std::vector<double> betas;
      if (betas_value.isTuple()) {
        for (const auto& b : betas_value.toTupleRef().elements()) betas.push_back(b.isInt() ? b.toInt() : b.toDouble());
      } else if (betas_value.isDoubleList()) {
        betas = betas_value.toDoubleVector();
      }
      if (betas.size() != 2) mismatch(where + "['betas'] is not a pair of numbers");
      auto apply = [&](auto& o) {
        o.lr(number(group, "lr", where)).eps(number(group, "eps", where));
        o.weight_decay(number(group, "weight_decay", where)).amsgrad(flag(group, "amsgrad", false));
        o.betas(std::make_tuple(betas[0], betas[1]));
      };
      if (kind == Kind::adam) {
        apply(static_cast<torch::optim::AdamOptions&>(options));
      } else {
        apply(static_cast<torch::optim::AdamWOptions&>(options));
      }
      break;
    }
    case Kind::rmsprop: {
      auto& o = static_cast<torch::optim::RMSpropOptions&>(options);
      o.lr(number(group, "lr", where)).momentum(number(group, "momentum", where)).alpha(number(group, "alpha", where));
      o.eps(number(group, "eps", where)).weight_decay(number(group, "weight_decay", where));
      o.centered(flag(group, "centered", false));
      break;
    }
    case Kind::adagrad: {
      auto& o = static_cast<torch::optim::AdagradOptions&>(options);
      o.lr(number(group, "lr", where)).lr_decay(number(group, "lr_decay", where)).eps(number(group, "eps", where));
      o.weight_decay(number(group, "weight_decay", where));
      o.initial_accumulator_value(number(group, "initial_accumulator_value", where));
      break;
    }
  }
}

template <typename ParamState>
std::unique_ptr<OptimizerParamState> load_adam_param_state(const State& s, const at::Tensor& parameter,
                                                           const std::string& where) {
  auto state = std::make_unique<ParamState>();
  state->step(read_step(s, where)).exp_avg(read_tensor(s, "exp_avg", parameter, where));
  state->exp_avg_sq(read_tensor(s, "exp_avg_sq", parameter, where));
  state->max_exp_avg_sq(read_tensor(s, "max_exp_avg_sq", parameter, where, true));
  return state;
}

std::unique_ptr<OptimizerParamState> load_param_state(Kind kind, const State& s, const at::Tensor& parameter,
                                                      const std::string& where) {
  switch (kind) {
    case Kind::sgd: {
      auto state = std::make_unique<torch::optim::SGDParamState>();
      state->momentum_buffer(read_tensor(s, "momentum_buffer", parameter, where, /*optional=*/true));
      return state;
    }
    case Kind::adam: return load_adam_param_state<torch::optim::AdamParamState>(s, parameter, where);
    case Kind::adamw: return load_adam_param_state<torch::optim::AdamWParamState>(s, parameter, where);
    case Kind::rmsprop: {
      auto state = std::make_unique<torch::optim::RMSpropParamState>();
      state->step(read_step(s, where)).square_avg(read_tensor(s, "square_avg", parameter, where));
      state->momentum_buffer(read_tensor(s, "momentum_buffer", parameter, where, true));
      state->grad_avg(read_tensor(s, "grad_avg", parameter, where, true));
      return state;
    }
    case Kind::adagrad: {
      auto state = std::make_unique<torch::optim::AdagradParamState>();
      state->step(read_step(s, where)).sum(read_tensor(s, "sum", parameter, where));
      return state;
    }
  }
  return nullptr;
}

// Calls fn(tensor) for each defined tensor field of a state of `kind` and sets the field
// to what it returns.
template <typename Fn>
void map_tensors(Kind kind, OptimizerParamState& base, Fn&& fn) {
  auto each = [&](const at::Tensor& current, auto&& set) {
    if (current.defined()) set(fn(current));
  };
  auto adam = [&](auto& s) {
    each(s.exp_avg(), [&](at::Tensor t) { s.exp_avg(std::move(t)); });
    each(s.exp_avg_sq(), [&](at::Tensor t) { s.exp_avg_sq(std::move(t)); });
    each(s.max_exp_avg_sq(), [&](at::Tensor t) { s.max_exp_avg_sq(std::move(t)); });
  };
  switch (kind) {
    case Kind::sgd: {
      auto& s = static_cast<torch::optim::SGDParamState&>(base);
      each(s.momentum_buffer(), [&](at::Tensor t) { s.momentum_buffer(std::move(t)); });
      break;
    }
    case Kind::adam: adam(static_cast<torch::optim::AdamParamState&>(base)); break;
    case Kind::adamw: adam(static_cast<torch::optim::AdamWParamState&>(base)); break;
    case Kind::rmsprop: {
      auto& s = static_cast<torch::optim::RMSpropParamState&>(base);
      each(s.square_avg(), [&](at::Tensor t) { s.square_avg(std::move(t)); });
      each(s.momentum_buffer(), [&](at::Tensor t) { s.momentum_buffer(std::move(t)); });
      each(s.grad_avg(), [&](at::Tensor t) { s.grad_avg(std::move(t)); });
      break;
    }
    case Kind::adagrad: {
      auto& s = static_cast<torch::optim::AdagradParamState&>(base);
      each(s.sum(), [&](at::Tensor t) { s.sum(std::move(t)); });
      break;
    }
  }
}

// The defined tensor fields of a state, in map_tensors' order.
std::vector<at::Tensor> tensors_of(Kind kind, const OptimizerParamState& base) {
  std::vector<at::Tensor> tensors;
  std::unique_ptr<OptimizerParamState> copy = base.clone();  // shares the tensors
  map_tensors(kind, *copy, [&](const at::Tensor& t) {
    tensors.push_back(t);
    return t;
  });
  return tensors;
}

}  // namespace

State state_dict(const Optimizer& optimizer) {
  const Kind kind = kind_of(optimizer);
  c10::impl::GenericDict per_param(c10::IntType::get(), c10::AnyType::get());
  c10::impl::GenericList groups(c10::AnyType::get());
  std::int64_t index = 0;
  for (const auto& group : optimizer.param_groups()) {
    State group_dict = group_state(kind, group.options());
    c10::List<std::int64_t> ids;
    for (const auto& parameter : group.params()) {
      auto found = optimizer.state().find(param_key(parameter));
      if (found != optimizer.state().end()) per_param.insert(index, param_state(kind, *found->second).to_ivalue());
      ids.push_back(index++);
    }
    group_dict.set("params", ids);
    groups.push_back(group_dict.to_ivalue());
  }
  State state;
  state.set("state", per_param);
  state.set("param_groups", groups);
  return state;
}

namespace torch_layer {

OptimizerLoad plan_optimizer_load(const Optimizer& optimizer, const State& state) {
  const Kind kind = kind_of(optimizer);
  if (!state.contains("state") || !state.contains("param_groups")) {
    mismatch("the State is not an optimizer state_dict (it needs 'state' and 'param_groups')");
  }
  const c10::IValue& groups_value = state.at("param_groups");
  if (!groups_value.isList()) mismatch("'param_groups' is not a list");
  auto saved_groups = groups_value.toListRef();
  const auto& groups = optimizer.param_groups();
  if (saved_groups.size() != groups.size()) {
    mismatch(fmt::format("the checkpoint has {} parameter groups, the optimizer {}", saved_groups.size(), groups.size()));
  }
  const c10::IValue& per_param_value = state.at("state");
  if (!per_param_value.isGenericDict()) mismatch("'state' is not a dict");
  auto per_param = per_param_value.toGenericDict();

  // Check everything before changing anything.
  std::vector<State> saved;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const std::string where = fmt::format("param_groups[{}]", g);
    if (!saved_groups[g].isGenericDict()) mismatch(where + " is not a dict");
    saved.push_back(State::from_generic_dict(saved_groups[g].toGenericDict()));
    if (!saved.back().contains(signature_key(kind))) {
      mismatch(fmt::format("{} has no '{}': this is not {} state (its keys: {})", where, signature_key(kind),
                           with_article(kind_name(kind)), fmt::join(saved.back().keys(), ", ")));
    }
    const c10::IValue& ids = saved.back().at("params");
    std::size_t count = ids.isList() ? ids.toListRef().size() : 0;
    if (count != groups[g].params().size()) {
      mismatch(fmt::format("{} has {} parameters in the checkpoint, {} in the optimizer", where, count,
                           groups[g].params().size()));
    }
  }
  OptimizerLoad load;
  load.kind = static_cast<int>(kind);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    auto ids = saved[g].at("params").toListRef();
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (!ids[i].isInt()) mismatch(fmt::format("param_groups[{}]['params'][{}] is not an int", g, i));
      auto found = per_param.find(ids[i]);
      if (found == per_param.end()) continue;  // no state yet for this parameter (as in Python)
      const at::Tensor& parameter = groups[g].params()[i];
      const std::string where = fmt::format("state[{}]", ids[i].toInt());
      if (!found->value().isGenericDict()) mismatch(where + " is not a dict");
      State s = State::from_generic_dict(found->value().toGenericDict());
      load.params.push_back({param_key(parameter), parameter, load_param_state(kind, s, parameter, where)});
    }
  }
  // Checked on a copy; install sets the optimizer's own options (a reference to them
  // that the caller holds stays valid).
  for (std::size_t g = 0; g < groups.size(); ++g) {
    load_group(kind, *groups[g].options().clone(), saved[g], fmt::format("param_groups[{}]", g));
  }
  load.groups = std::move(saved);
  return load;
}

void resolve_tensors(const Optimizer& optimizer, OptimizerLoad& load, const TensorResolver& resolve) {
  const Kind kind = static_cast<Kind>(load.kind);
  for (auto& param : load.params) {
    std::vector<at::Tensor> current;
    auto found = optimizer.state().find(param.key);
    if (found != optimizer.state().end()) current = tensors_of(kind, *found->second);
    // The same fields in the same order when both states have them (a state that had no
    // max_exp_avg_sq, say, does not line up: then nothing current is offered).
    const std::size_t planned = tensors_of(kind, *param.state).size();
    std::size_t i = 0;
    map_tensors(kind, *param.state, [&](const at::Tensor& saved) {
      const at::Tensor& now = current.size() == planned ? current[i] : at::Tensor();
      ++i;
      return resolve(saved, param.parameter, now);
    });
  }
}

void install(Optimizer& optimizer, OptimizerLoad&& load) {
  const Kind kind = static_cast<Kind>(load.kind);
  auto& groups = optimizer.param_groups();
  for (std::size_t g = 0; g < groups.size(); ++g) {
    load_group(kind, groups[g].options(), load.groups[g], fmt::format("param_groups[{}]", g));
  }
  auto& target = optimizer.state();
  target.clear();
  for (auto& param : load.params) target[param.key] = std::move(param.state);
}

}  // namespace torch_layer

void load_state_dict(Optimizer& optimizer, const State& state) {
  torch_layer::OptimizerLoad load = torch_layer::plan_optimizer_load(optimizer, state);
  torch_layer::resolve_tensors(optimizer, load, [](const at::Tensor& saved, const at::Tensor& parameter, const at::Tensor&) {
    return saved.to(parameter.options()).clone();
  });
  torch_layer::install(optimizer, std::move(load));
}

}  // namespace ckpt
