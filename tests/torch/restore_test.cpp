// Restore in place (ckpt/restore.hpp): a checkpoint read straight into a module's
// parameters and buffers and an optimizer's state, verified before anything is applied.
#include "support/torch_pch.hpp"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim.h>

#include <cstring>

#include "ckpt/training.hpp"
#include "support/captured_log.hpp"
#include "support/fault_file_system.hpp"
#include "support/peak_memory.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

torch::nn::Sequential make_model(std::uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::BatchNorm1d(8), torch::nn::ReLU(),
                               torch::nn::Linear(8, 3));
}

void train_steps(torch::nn::Sequential& model, torch::optim::Optimizer& optimizer, int steps, std::uint64_t seed) {
  torch::manual_seed(seed);
  for (int i = 0; i < steps; ++i) {
    auto x = torch::randn({16, 4});
    auto loss = model->forward(x).pow(2).mean();
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
}

// Whether two values hold the same data: tensors by dtype, shape and elements; dicts by
// key; lists and tuples item by item; the rest by IValue equality.
bool same_value(const c10::IValue& a, const c10::IValue& b) {
  if (a.isTensor() && b.isTensor()) {
    const at::Tensor& x = a.toTensor();
    const at::Tensor& y = b.toTensor();
    return x.scalar_type() == y.scalar_type() && x.sizes() == y.sizes() && x.cpu().equal(y.cpu());
  }
  if (a.isGenericDict() && b.isGenericDict()) {
    auto x = a.toGenericDict();
    auto y = b.toGenericDict();
    if (x.size() != y.size()) return false;
    for (const auto& entry : x) {
      auto found = y.find(entry.key());
      if (found == y.end() || !same_value(entry.value(), found->value())) return false;
    }
    return true;
  }
  if (a.isList() && b.isList()) {
    auto x = a.toListRef();
    auto y = b.toListRef();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!same_value(x[i], y[i])) return false;
    }
    return true;
  }
  if (a.isTuple() && b.isTuple()) {
    const auto& x = a.toTupleRef().elements();
    const auto& y = b.toTupleRef().elements();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!same_value(x[i], y[i])) return false;
    }
    return true;
  }
  return a == b;
}

bool same_state(const State& a, const State& b) { return same_value(a.to_ivalue(), b.to_ivalue()); }

// A deep copy: what a state held at one moment, whatever happens to its tensors later.
State snapshot(const State& state) {
  std::function<c10::IValue(const c10::IValue&)> copy = [&](const c10::IValue& value) -> c10::IValue {
    if (value.isTensor()) return value.toTensor().clone();
    if (value.isGenericDict()) {
      auto dict = value.toGenericDict();
      c10::impl::GenericDict out(dict.keyType(), dict.valueType());
      for (const auto& entry : dict) out.insert(entry.key(), copy(entry.value()));
      return out;
    }
    if (value.isList()) {
      c10::impl::GenericList out(c10::AnyType::get());
      for (const auto& item : value.toListRef()) out.push_back(copy(item));
      return out;
    }
    return value;
  };
  return State::from_generic_dict(copy(state.to_ivalue()).toGenericDict());
}

State guide_state(torch::nn::Sequential& model, torch::optim::Optimizer& optimizer, std::int64_t epoch) {
  return State{{"epoch", epoch},
               {"model", state_dict(*model)},
               {"optimizer", state_dict(optimizer)},
               {"best_acc", 0.5},
               {"val_acc", 0.25 + epoch}};
}

std::vector<const void*> data_ptrs(torch::nn::Sequential& model) {
  std::vector<const void*> pointers;
  for (const auto& item : state_dict(*model)) pointers.push_back(item.second.toTensor().data_ptr());
  return pointers;
}

std::vector<std::int64_t> versions(torch::nn::Sequential& model) {
  std::vector<std::int64_t> out;
  for (const auto& item : model->named_parameters()) out.push_back(item.value()._version());
  for (const auto& item : model->named_buffers()) out.push_back(item.value()._version());
  return out;
}

// Flips one bit in the middle of the first run of `count` float32 values equal to
// `value` in the file (a tensor record's data, found by its contents).
void flip_bit_in_values(const std::filesystem::path& file, float value, int count) {
  std::string bytes = read_bytes(file);
  std::string run;
  for (int i = 0; i < count; ++i) run.append(reinterpret_cast<const char*>(&value), sizeof value);
  auto at = bytes.find(run);
  REQUIRE(at != std::string::npos);
  bytes[at + run.size() / 2] ^= 0x10;
  write_bytes(file, bytes);
}

// Whether `file` was moved into dir/quarantine/ (as <file>.<UTC stamp>-<pid>).
bool quarantined(const std::filesystem::path& dir, const std::string& file) {
  if (std::filesystem::exists(dir / file) || !std::filesystem::exists(dir / "quarantine")) return false;
  for (const auto& name : file_names(dir / "quarantine")) {
    if (name.rfind(file + ".", 0) == 0) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("restore in place: parameters, buffers and Adam's state come back into the same tensors",
          "[restore][manager]") {
  TestDir dir("restore");
  auto model = make_model(1);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  train_steps(model, optimizer, 3, 10);
  CheckpointManager manager(dir.path());
  manager.save_epoch_checkpoint(guide_state(model, optimizer, 3), 3);
  const State saved_model = snapshot(state_dict(*model));
  const State saved_optimizer = snapshot(state_dict(optimizer));

  // The reference: the same state loaded the ordinary way into another model.
  auto reference = make_model(2);
  torch::optim::Adam reference_optimizer(reference->parameters(), torch::optim::AdamOptions(0.5));
  {
    auto state = manager.load_latest_checkpoint();
    REQUIRE(state);
    load_state_dict(*reference, state->get<State>("model"));
    load_state_dict(reference_optimizer, state->get<State>("optimizer"));
  }

  train_steps(model, optimizer, 2, 20);  // moves parameters, buffers and optimizer state
  REQUIRE_FALSE(same_state(state_dict(*model), saved_model));
  const auto pointers = data_ptrs(model);
  const auto before = versions(model);

  auto restored = manager.load_latest_checkpoint_into(RestoreTarget{model.get(), &optimizer});
  REQUIRE(restored);
  CHECK(same_state(state_dict(*model), saved_model));
  CHECK(same_state(state_dict(optimizer), saved_optimizer));
  CHECK(data_ptrs(model) == pointers);
  // Each tensor written once, as copy_ would have counted it.
  const auto after = versions(model);
  for (std::size_t i = 0; i < after.size(); ++i) CHECK(after[i] == before[i] + 1);
  // The rest of the state, without the tensors that went into the target.
  CHECK(restored->rest.keys() == std::vector<std::string>{"epoch", "best_acc", "val_acc"});
  CHECK(restored->rest.get<std::int64_t>("epoch") == 3);
  CHECK(restored->module.ok());

  // The optimizer built on the parameters keeps working: training goes on exactly as
  // from the ordinary load.
  train_steps(model, optimizer, 3, 30);
  train_steps(reference, reference_optimizer, 3, 30);
  CHECK(same_state(state_dict(*model), state_dict(*reference)));
  CHECK(same_state(state_dict(optimizer), state_dict(reference_optimizer)));
}

TEST_CASE("restore in place fills a fresh optimizer, and the best model restores the same way", "[restore][manager]") {
  TestDir dir("restore");
  auto model = make_model(1);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-2).amsgrad(true));
  train_steps(model, optimizer, 3, 10);
  CheckpointManager manager(dir.path());
  manager.save_best_model(guide_state(model, optimizer, 4), 0.9);
  const State saved_model = snapshot(state_dict(*model));
  const State saved_optimizer = snapshot(state_dict(optimizer));

  auto fresh = make_model(5);
  torch::optim::AdamW fresh_optimizer(fresh->parameters(), torch::optim::AdamWOptions(0.5));
  auto restored = manager.load_best_model_into(RestoreTarget{fresh.get(), &fresh_optimizer});
  REQUIRE(restored);
  CHECK(same_state(state_dict(*fresh), saved_model));
  CHECK(same_state(state_dict(fresh_optimizer), saved_optimizer));
  CHECK(static_cast<const torch::optim::AdamWOptions&>(fresh_optimizer.param_groups()[0].options()).amsgrad());
  CHECK(restored->rest.get<std::int64_t>("epoch") == 4);

  // No checkpoint: nothing to restore.
  TestDir empty("restore-empty");
  CheckpointManager none(empty.path());
  CHECK_FALSE(none.load_latest_checkpoint_into(RestoreTarget{fresh.get(), &fresh_optimizer}));
  CHECK_FALSE(none.load_best_model_into(RestoreTarget{fresh.get()}));
}

TEST_CASE("restore in place reads files Python wrote: a bare state_dict and the guide's dict", "[restore][python]") {
  TestDir dir("restore-python");
  const std::string script = R"(
import sys, torch
torch.manual_seed(3)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
for _ in range(3):
    loss = model(torch.randn(16, 4)).pow(2).mean()
    optimizer.zero_grad(); loss.backward(); optimizer.step()
torch.save(model.state_dict(), sys.argv[1] + '/weights.pth')
torch.save({'epoch': 3, 'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'best_acc': 0.5},
           sys.argv[1] + '/guide.pth')
print('ok')
)";
  auto result = run_command(std::string(CKPT_PYTHON) + " -c " + shell_quote(script) + " " +
                            shell_quote(dir.path().string()) + " 2>&1");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);

  auto model = make_model(9);
  RestoreTarget weights_only{model.get()};
  weights_only.model_key = "";
  auto restored = restore_file(dir / "weights.pth", weights_only);
  CHECK(restored.rest.empty());
  CHECK(same_state(state_dict(*model), load_file(dir / "weights.pth")));

  auto other = make_model(10);
  torch::optim::Adam optimizer(other->parameters(), torch::optim::AdamOptions(0.5));
  train_steps(other, optimizer, 1, 11);  // a state to replace
  // A bare state_dict holds no optimizer: asking for one is refused up front.
  RestoreTarget bare_with_optimizer{other.get(), &optimizer};
  bare_with_optimizer.model_key = "";
  CHECK_THROWS_WITH(restore_file(dir / "weights.pth", bare_with_optimizer), Catch::Contains("model_key is empty"));
  auto guide = restore_file(dir / "guide.pth", RestoreTarget{other.get(), &optimizer});
  State expected = load_file(dir / "guide.pth");
  CHECK(same_state(state_dict(*other), expected.get<State>("model")));
  // As the ordinary load of Python's state gives it.
  auto reference = make_model(12);
  torch::optim::Adam reference_optimizer(reference->parameters(), torch::optim::AdamOptions(0.5));
  load_state_dict(reference_optimizer, expected.get<State>("optimizer"));
  CHECK(same_state(state_dict(optimizer), state_dict(reference_optimizer)));
  CHECK(guide.rest.get<std::int64_t>("epoch") == 3);
  CHECK(guide.rest.get<double>("best_acc") == 0.5);
}

TEST_CASE("a flipped bit in the newest checkpoint's tensor data: nothing applied from it, quarantined, the previous "
          "one restores",
          "[restore][manager][corruption]") {
  TestDir dir("restore");
  auto model = make_model(1);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  train_steps(model, optimizer, 2, 10);
  CheckpointManager manager(dir.path());
  manager.save_epoch_checkpoint(guide_state(model, optimizer, 1), 1);
  const State epoch1 = snapshot(state_dict(*model));
  {
    c10::NoGradGuard no_grad;
    model[0]->as<torch::nn::Linear>()->weight.fill_(0.25);
  }
  manager.save_epoch_checkpoint(guide_state(model, optimizer, 2), 2);
  flip_bit_in_values(dir / "checkpoint_epoch_2.pth", 0.25f, 32);

  train_steps(model, optimizer, 2, 20);
  const auto before = versions(model);
  CapturedLog log;
  auto restored = manager.load_latest_checkpoint_into(RestoreTarget{model.get(), &optimizer});
  REQUIRE(restored);
  CHECK(restored->rest.get<std::int64_t>("epoch") == 1);
  CHECK(same_state(state_dict(*model), epoch1));
  // Written once each: from epoch 1 only.
  const auto after = versions(model);
  for (std::size_t i = 0; i < after.size(); ++i) CHECK(after[i] == before[i] + 1);
  CHECK(quarantined(dir.path(), "checkpoint_epoch_2.pth"));
  CHECK_THAT(log.text(), Catch::Contains("[error]") && Catch::Contains("checkpoint_epoch_2.pth") &&
                             Catch::Contains("corrupt"));

  // The only checkpoint damaged: nothing to restore, and the target untouched.
  TestDir alone("restore-alone");
  CheckpointManager single(alone.path());
  {
    c10::NoGradGuard no_grad;
    model[3]->as<torch::nn::Linear>()->weight.fill_(0.75);
  }
  single.save_epoch_checkpoint(guide_state(model, optimizer, 5), 5);
  flip_bit_in_values(alone / "checkpoint_epoch_5.pth", 0.75f, 24);
  train_steps(model, optimizer, 1, 30);
  const State current = snapshot(state_dict(*model));
  const State current_optimizer = snapshot(state_dict(optimizer));
  const auto unchanged = versions(model);
  CHECK_FALSE(single.load_latest_checkpoint_into(RestoreTarget{model.get(), &optimizer}));
  CHECK(same_state(state_dict(*model), current));
  CHECK(same_state(state_dict(optimizer), current_optimizer));
  CHECK(versions(model) == unchanged);
  CHECK(quarantined(alone.path(), "checkpoint_epoch_5.pth"));
}

TEST_CASE("restore_file verifies each record's CRC-32 before anything is applied", "[restore][corruption]") {
  TestDir dir("restore");
  auto source = make_model(1);
  {
    c10::NoGradGuard no_grad;
    source[3]->as<torch::nn::Linear>()->weight.fill_(0.5);  // the last record of the model
  }
  save_file(State{{"model", state_dict(*source)}}, dir / "damaged.pth");
  flip_bit_in_values(dir / "damaged.pth", 0.5f, 24);
  auto model = make_model(2);
  const State before = snapshot(state_dict(*model));
  const auto unchanged = versions(model);
  try {
    restore_file(dir / "damaged.pth", RestoreTarget{model.get()});
    FAIL("the damaged record was not noticed");
  } catch (const FormatError& error) {
    CHECK(error.code() == ErrorCode::corrupt);
    CHECK_THAT(error.what(), Catch::Contains("damaged.pth") && Catch::Contains("CRC-32"));
    CHECK_THAT(error.what(), !Catch::Contains("partly restored"));
  }
  CHECK(same_state(state_dict(*model), before));
  CHECK(versions(model) == unchanged);
}

TEST_CASE("strict restore of a mismatched checkpoint names every difference and changes nothing",
          "[restore][strict]") {
  TestDir dir("restore");
  auto source = make_model(1);
  State model_state = state_dict(*source);
  model_state.erase("1.running_var");                                           // missing
  model_state.set("extra.weight", at::ones({2}));                               // unexpected
  model_state.set("0.weight", model_state.get<at::Tensor>("0.weight").to(at::kDouble));  // dtype
  model_state.set("3.bias", at::zeros({4}));                                    // shape
  save_file(State{{"epoch", std::int64_t{1}}, {"model", model_state}}, dir / "mismatched.pth");

  auto model = make_model(2);
  const State before = snapshot(state_dict(*model));
  const auto unchanged = versions(model);
  try {
    restore_file(dir / "mismatched.pth", RestoreTarget{model.get()});
    FAIL("a mismatched checkpoint was restored");
  } catch (const StateError& error) {
    CHECK_THAT(error.what(), Catch::Contains("mismatched.pth") && Catch::Contains("missing keys: 1.running_var") &&
                                 Catch::Contains("unexpected keys: extra.weight") &&
                                 Catch::Contains("0.weight: dtype Double in the checkpoint, Float in the model") &&
                                 Catch::Contains("3.bias: shape [4] in the checkpoint, [3] in the model"));
  }
  CHECK(same_state(state_dict(*model), before));
  CHECK(versions(model) == unchanged);

  // Not strict: what matches is restored, the rest reported.
  RestoreOptions lenient;
  lenient.strict = false;
  auto restored = restore_file(dir / "mismatched.pth", RestoreTarget{model.get()}, lenient);
  CHECK(restored.module.missing_keys == std::vector<std::string>{"1.running_var"});
  CHECK(restored.module.unexpected_keys == std::vector<std::string>{"extra.weight"});
  CHECK(restored.module.mismatches.size() == 2);
  CHECK(model[3]->as<torch::nn::Linear>()->weight.equal(model_state.get<at::Tensor>("3.weight")));
  CHECK(model[0]->as<torch::nn::Linear>()->weight.equal(before.get<at::Tensor>("0.weight")));

  // An optimizer whose state does not fit: the module is not touched either.
  auto other = make_model(3);
  torch::optim::Adam adam(other->parameters(), torch::optim::AdamOptions(1e-2));
  torch::optim::SGD sgd(source->parameters(), torch::optim::SGDOptions(0.1));
  save_file(State{{"model", state_dict(*source)}, {"optimizer", state_dict(sgd)}}, dir / "sgd.pth");
  const State other_before = snapshot(state_dict(*other));
  CHECK_THROWS_WITH(restore_file(dir / "sgd.pth", RestoreTarget{other.get(), &adam}),
                    Catch::Contains("sgd.pth") && Catch::Contains("not an Adam state"));
  CHECK(same_state(state_dict(*other), other_before));
  // A missing optimizer entry is a difference too.
  save_file(State{{"model", state_dict(*source)}}, dir / "no_optimizer.pth");
  CHECK_THROWS_WITH(restore_file(dir / "no_optimizer.pth", RestoreTarget{other.get(), &adam}),
                    Catch::Contains("no 'optimizer' entry"));
  CHECK(same_state(state_dict(*other), other_before));
  // Not strict: the module is restored, the optimizer left as it is, and the log says so.
  CapturedLog log;
  restore_file(dir / "no_optimizer.pth", RestoreTarget{other.get(), &adam}, lenient);
  CHECK(same_state(state_dict(*other), state_dict(*source)));
  CHECK(adam.state().empty());
  CHECK_THAT(log.text(), Catch::Contains("[warning]") && Catch::Contains("the optimizer was not restored"));
}

TEST_CASE("an optimizer state tensor without data is refused before anything is applied", "[restore][strict]") {
  TestDir dir("restore");
  auto source = make_model(1);
  torch::optim::Adam trained(source->parameters(), torch::optim::AdamOptions(1e-2));
  train_steps(source, trained, 2, 7);
  State optimizer = state_dict(trained);
  auto per_param = optimizer.to_ivalue().toGenericDict().at("state").toGenericDict();
  auto first = per_param.at(per_param.begin()->key()).toGenericDict();
  const at::Tensor exp_avg = first.at("exp_avg").toTensor();
  first.insert_or_assign("exp_avg", at::empty(exp_avg.sizes(), at::TensorOptions().device(c10::kMeta)));
  save_file(State{{"model", state_dict(*source)}, {"optimizer", State::from_generic_dict(
                                                                     optimizer.to_ivalue().toGenericDict())}},
            dir / "meta_state.pth");

  auto model = make_model(2);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-2));
  const State before = snapshot(state_dict(*model));
  const auto unchanged = versions(model);
  CHECK_THROWS_AS(restore_file(dir / "meta_state.pth", RestoreTarget{model.get(), &adam}), InvalidArgument);
  CHECK(same_state(state_dict(*model), before));
  CHECK(versions(model) == unchanged);
  CHECK(adam.state().empty());
}

TEST_CASE("an I/O error while tensors are written says the target is partly restored, naming the file",
          "[restore][manager][fault]") {
  TestDir dir("restore");
  auto fs = std::make_shared<FaultFileSystem>();
  StoreOptions options;
  options.file_system = fs;
  auto model = make_model(1);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  train_steps(model, optimizer, 2, 10);
  CheckpointManager manager(dir.path(), c10::kCPU, 5, options);
  manager.save_epoch_checkpoint(guide_state(model, optimizer, 2), 2);
  const State saved = snapshot(state_dict(*model));

  // How many reads a whole restore makes; the last one is pass 2's.
  const int start = fs->count(Op::read);
  REQUIRE(manager.load_latest_checkpoint_into(RestoreTarget{model.get(), &optimizer}));
  const int reads = fs->count(Op::read) - start;
  REQUIRE(reads > 2);

  train_steps(model, optimizer, 2, 20);
  auto& group_options = static_cast<torch::optim::AdamOptions&>(optimizer.param_groups()[0].options());
  group_options.lr(0.125);
  fs->fail_nth(Op::read, reads, EIO);
  try {
    manager.load_latest_checkpoint_into(RestoreTarget{model.get(), &optimizer});
    FAIL("the failed read was not reported");
  } catch (const IoError& error) {
    CHECK(error.os_error() == EIO);
    CHECK_THAT(error.what(), Catch::Contains("checkpoint_epoch_2.pth") && Catch::Contains("partly restored") &&
                                 Catch::Contains("Input/output error"));
  }
  // The optimizer's groups were not installed; the file is not blamed.
  CHECK(static_cast<torch::optim::AdamOptions&>(optimizer.param_groups()[0].options()).lr() == 0.125);
  CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
  CHECK(manager.store().latest()->epoch == 2);
  // Restoring again works.
  REQUIRE(manager.load_latest_checkpoint_into(RestoreTarget{model.get(), &optimizer}));
  CHECK(same_state(state_dict(*model), saved));
  CHECK(static_cast<torch::optim::AdamOptions&>(optimizer.param_groups()[0].options()).lr() == 1e-2);
}

namespace {
// Damages the file between restore_file's two passes: on its second open for reading.
// (count 0: appends a byte instead).
class DamageOnSecondOpen final : public FileSystemWrapper {
 public:
  DamageOnSecondOpen(float value, int count) : FileSystemWrapper(FileSystem::posix()), value_(value), count_(count) {}
  std::unique_ptr<ReadableFile> open_for_read(const std::filesystem::path& path) override {
    if (++opens_ == 2) {
      if (count_ > 0) {
        flip_bit_in_values(path, value_, count_);
      } else {
        write_bytes(path, read_bytes(path) + "x");
      }
    }
    return FileSystemWrapper::open_for_read(path);
  }

 private:
  float value_;
  int count_;
  int opens_ = 0;
};
}  // namespace

TEST_CASE("a record changed between the passes fails its CRC-32 in pass 2: partly restored, naming the file",
          "[restore][corruption]") {
  TestDir dir("restore");
  auto source = make_model(1);
  {
    c10::NoGradGuard no_grad;
    source[3]->as<torch::nn::Linear>()->weight.fill_(0.5);  // the last Linear: read after the others
  }
  save_file(State{{"model", state_dict(*source)}}, dir / "changing.pth");
  auto model = make_model(2);
  RestoreOptions options;
  options.file_system = std::make_shared<DamageOnSecondOpen>(0.5f, 24);
  try {
    restore_file(dir / "changing.pth", RestoreTarget{model.get()}, options);
    FAIL("the changed record was not noticed");
  } catch (const FormatError& error) {
    CHECK(error.code() == ErrorCode::corrupt);
    CHECK_THAT(error.what(), Catch::Contains("changing.pth") && Catch::Contains("CRC-32") &&
                                 Catch::Contains("partly restored"));
  }
  // A file that grew between the passes: refused before anything is written.
  save_file(State{{"model", state_dict(*source)}}, dir / "changing.pth");
  auto other = make_model(3);
  const State before = snapshot(state_dict(*other));
  options.file_system = std::make_shared<DamageOnSecondOpen>(0.5f, 0);
  CHECK_THROWS_WITH(restore_file(dir / "changing.pth", RestoreTarget{other.get()}, options),
                    Catch::Contains("changing.pth") && Catch::Contains("changed after it was verified") &&
                        Catch::Contains("nothing was restored"));
  CHECK(same_state(state_dict(*other), before));
}

TEST_CASE("restore in place needs O(largest tensor) extra memory, not O(state)", "[restore][memory]") {
  TestDir dir("restore");
  // 64 MiB of parameters, the largest 16 MiB.
  torch::nn::Sequential model(torch::nn::Linear(2048, 2048), torch::nn::Linear(2048, 2048), torch::nn::Linear(2048, 2048),
                              torch::nn::Linear(2048, 2048));
  save_file(State{{"epoch", std::int64_t{1}}, {"model", state_dict(*model)}}, dir / "model.pth");
  {
    CheckpointManager manager(dir / "managed");
    manager.save_epoch_checkpoint(State{{"epoch", std::int64_t{1}}, {"model", state_dict(*model)}}, 1);
  }
  constexpr long kModelKib = 64 << 10;
  constexpr long kLargestKib = 16 << 10;
  // The bound: the largest tensor (were it staged), pass 1's 1 MiB buffer, the hasher's 4 MiB, and slack.
  constexpr long kBoundKib = kLargestKib + (16 << 10);
  static_assert(kBoundKib < kModelKib);

  // What building the State first costs (so the bound below can fail).
  auto eager = peak_growth_kib([&] { load_state_dict(*model, load_file(dir / "model.pth").get<State>("model")); });
  if (!eager) {
    WARN("the kernel refuses to reset the peak RSS: not measured");
    return;
  }
  INFO("load_file + load_state_dict: " << *eager << " KiB above the RSS before");
  CHECK(*eager >= kModelKib / 8 * 7);  // a few pages of it may be memory the process already had

  auto in_place = peak_growth_kib([&] { restore_file(dir / "model.pth", RestoreTarget{model.get()}); });
  REQUIRE(in_place);
  INFO("restore_file: " << *in_place << " KiB");
  CHECK(*in_place < kBoundKib);
  auto managed = peak_growth_kib([&] {
    CheckpointManager manager(dir / "managed");
    REQUIRE(manager.load_latest_checkpoint_into(RestoreTarget{model.get()}));
  });
  REQUIRE(managed);
  INFO("load_latest_checkpoint_into: " << *managed << " KiB");
  CHECK(*managed < kBoundKib);
  WARN("peak growth KiB: load_file " << *eager << ", restore_file " << *in_place << ", manager " << *managed);
}
