// What Python's torch.load(weights_only=True) makes of ckpt's files, pinned for the
// installed torch (tests/python/check_weights_only.py knows which torch does what; see
// docs/format.md, "Python's weights_only=True loader"); and ckpt::load_file refusing a
// Python file that holds a NumPy scalar, naming the global and what to store instead.
#include "support/torch_pch.hpp"

#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>

#include "ckpt/training.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

State tensors_and_ints() {
  State state;
  state.set("epoch", int64_t{7});
  state.set("step", int64_t{1} << 40);
  state.set("neg", int64_t{-5});
  at::Tensor weights = at::arange(12, at::kFloat).reshape({3, 4}) / 4;
  state.set("weights", weights);
  state.set("transposed", weights.t());  // a view of the same storage
  state.set("counts", at::arange(5, at::kLong) * 3);
  state.set("flags", at::tensor({1, 0, 1}).to(at::kBool));
  state.set("halfs", at::tensor({1.5, -2.0}).to(at::kBFloat16));
  state.set("model", State{{"0.weight", at::ones({2, 3})}, {"0.bias", at::zeros({2})}});
  state.set("sparse", at::tensor({0.0f, 2.0f, 3.0f, 0.0f}).reshape({2, 2}).to_sparse());
  state.set("meta", at::empty({2, 3}, at::TensorOptions().device(at::kMeta)));
  return state;
}

State text_and_containers() {
  State state;
  state.set("name", std::string("ckpt"));
  state.set("finished", true);
  state.set("nothing", c10::IValue());
  state.set("ids", c10::List<int64_t>({1, 2, 3}));
  state.set("pair", c10::ivalue::Tuple::create({c10::IValue(int64_t{1}), c10::IValue(std::string("x"))}));
  state.set("cfg", State{{"depth", int64_t{3}}, {"tags", c10::List<std::string>({"a", "b"})}});
  return state;
}

State optimizer_state() {
  torch::nn::Linear model(3, 2);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  model(at::ones({4, 3})).sum().backward();
  adam.step();
  return State{{"optimizer", ckpt::state_dict(adam)}};
}

CommandResult check_in_python(const TestDir& dir) {
  const std::string script = std::string(CKPT_SOURCE_DIR) + "/tests/python/check_weights_only.py";
  return run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script) + " " + shell_quote(dir.path().string()) +
                     " 2>&1");
}

void write_cases(const TestDir& dir, const State& always_loads) {
  save_file(always_loads, dir / "tensors_and_ints.pth");
  save_file(text_and_containers(), dir / "text_and_containers.pth");
  save_file(State{{"epoch", int64_t{7}}, {"best_acc", 0.8125}}, dir / "float.pth");
  save_file(State{{"losses", c10::List<double>({0.5, 0.25, 0.125})}}, dir / "float_list.pth");
  save_file(optimizer_state(), dir / "optimizer.pth");
  save_file(State{{"meta", at::empty({2}, at::TensorOptions().device(at::kMeta).dtype(at::kBool))}},
            dir / "meta_bool.pth");
}

}  // namespace

TEST_CASE("Python's torch.load(weights_only=True) reads tensors and ints from save_file, and floats only on "
          "torch versions that have BINFLOAT", "[python][interop][weights-only]") {
  TestDir dir("weights-only");
  write_cases(dir, tensors_and_ints());
  auto result = check_in_python(dir);
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Catch::Contains("ok: torch"));
}

TEST_CASE("the weights_only checker is not vacuous: a float among the tensors is reported on torch 1.13",
          "[python][interop][weights-only]") {
  TestDir dir("weights-only");
  State state = tensors_and_ints();
  state.set("epoch", 7.0);  // a float where an int was: BINFLOAT (1.13 refuses it), or a value that differs
  write_cases(dir, state);
  auto result = check_in_python(dir);
  INFO(result.output);
  CHECK(result.exit_code == 1);
  CHECK_THAT(result.output, Catch::Contains("MISMATCH tensors_and_ints"));
}

TEST_CASE("load_file refuses Python's file with a NumPy scalar metric, naming the file, the global and what to "
          "store instead", "[format][numpy]") {
  // tests/fixtures/numpy_metric.pt (tests/python/make_fixtures.py): "val_acc" is np.float64(0.8125).
  const auto file = std::filesystem::path(CKPT_SOURCE_DIR) / "tests" / "fixtures" / "numpy_metric.pt";
  for (bool memory_map : {false, true}) {
    INFO("memory_map " << memory_map);
    LoadOptions options;
    options.memory_map = memory_map;
    try {
      load_file(file, options);
      FAIL("a NumPy scalar was accepted");
    } catch (const FormatError& error) {
      const std::string message = error.what();
      INFO(message);
      CHECK(message.rfind(file.string() + ": ", 0) == 0);
      CHECK_THAT(message, Catch::Contains("global 'numpy.core.multiarray.scalar' is not allowed"));
      CHECK_THAT(message, Catch::Contains("store a Python number instead (x.item())"));
      CHECK(error.path() == file);
    }
  }
  CHECK_THROWS_WITH(load_value(file), Catch::Contains("numpy.core.multiarray.scalar"));
}
