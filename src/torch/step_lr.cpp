// ckpt::StepLR (training.hpp): Python's torch.optim.lr_scheduler.StepLR and its state_dict.
#include <fmt/format.h>

#include "ckpt/errors.hpp"
#include "ckpt/training.hpp"

namespace ckpt {

using torch::optim::Optimizer;

StepLR::StepLR(Optimizer& optimizer, std::int64_t step_size, double gamma)
    : optimizer_(optimizer), step_size_(step_size), gamma_(gamma) {
  if (step_size <= 0) throw InvalidArgument(fmt::format("StepLR: step_size must be > 0, got {}", step_size));
  for (const auto& group : optimizer_.param_groups()) base_lrs_.push_back(group.options().get_lr());
  step();  // as Python's constructor: last_epoch 0, _step_count 1
}

void StepLR::step() {
  ++step_count_;
  ++last_epoch_;
  std::vector<double> lrs;
  for (const auto& group : optimizer_.param_groups()) {
    double lr = group.options().get_lr();
    lrs.push_back(last_epoch_ != 0 && last_epoch_ % step_size_ == 0 ? lr * gamma_ : lr);
  }
  apply(lrs);
}

void StepLR::apply(const std::vector<double>& lrs) {
  auto& groups = optimizer_.param_groups();
  for (std::size_t g = 0; g < groups.size() && g < lrs.size(); ++g) groups[g].options().set_lr(lrs[g]);
  last_lr_ = lrs;
}

State StepLR::state_dict() const {
  return State{{"step_size", step_size_},
               {"gamma", gamma_},
               {"base_lrs", c10::List<double>(base_lrs_)},
               {"last_epoch", last_epoch_},
               {"verbose", false},
               {"_step_count", step_count_},
               {"_get_lr_called_within_step", false},
               {"_last_lr", c10::List<double>(last_lr_)}};
}

void StepLR::load_state_dict(const State& state) {
  auto doubles = [&](const char* key) {
    const c10::IValue& value = state.at(key);
    std::vector<double> out;
    if (!value.isList()) throw StateError(ErrorCode::type, fmt::format("StepLR state: '{}' is not a list", key));
    for (const auto& item : value.toListRef()) out.push_back(item.isInt() ? item.toInt() : item.toDouble());
    return out;
  };
  std::vector<double> last_lr = doubles("_last_lr");
  if (last_lr.size() != optimizer_.param_groups().size()) {
    throw StateError(ErrorCode::type, fmt::format("StepLR state has {} learning rates, the optimizer {} groups",
                                                  last_lr.size(), optimizer_.param_groups().size()));
  }
  step_size_ = state.get<std::int64_t>("step_size");
  gamma_ = state.get<double>("gamma");
  base_lrs_ = doubles("base_lrs");
  last_epoch_ = state.get<std::int64_t>("last_epoch");
  step_count_ = state.get<std::int64_t>("_step_count");
  apply(last_lr);
}

}  // namespace ckpt
