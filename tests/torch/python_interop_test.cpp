// What C++ writes, Python's torch.load reads, value for value (torch 1.13 through
// /usr/bin/python3, as installed by python3-torch).
#include "support/torch_pch.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

// The same values as expected() in tests/python/check_cpp_checkpoint.py.
State interop_state() {
  State state;
  state.set("epoch", int64_t{7});
  state.set("best_acc", 0.8125);
  state.set("name", std::string("ckpt-interop"));
  state.set("finished", true);
  state.set("nothing", c10::IValue());
  state.set("weights", at::arange(12, at::kFloat).reshape({3, 4}) / 4);
  state.set("counts", at::arange(5, at::kLong) * 3);
  state.set("halfs", at::tensor({1.5, -2.0, 0.25}).to(at::kHalf));
  state.set("flags", at::tensor({1, 0, 1}).to(at::kBool));
  state.set("model", State{{"0.weight", at::ones({2, 3})}, {"0.bias", at::zeros({2})}});
  state.set("losses", c10::List<double>({0.5, 0.25, 0.125}));
  return state;
}

CommandResult python_check(const std::filesystem::path& file) {
  std::string script = std::string(CKPT_SOURCE_DIR) + "/tests/python/check_cpp_checkpoint.py";
  return run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script) + " " + shell_quote(file.string()) + " 2>&1");
}

}  // namespace

TEST_CASE("Python's torch.load reads a file from save_file with every value intact", "[python][interop]") {
  TestDir dir("interop");
  save_file(interop_state(), dir / "from_cpp.pth");
  auto result = python_check(dir / "from_cpp.pth");
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Catch::Contains("ok"));
}

TEST_CASE("Python's torch.load reads the manager's epoch, best and interrupt checkpoints", "[python][interop]") {
  TestDir dir("interop");
  {
    CheckpointManager manager(dir.path());
    manager.save_epoch_checkpoint(interop_state(), 7, 0.8125);
    manager.save_best_model(interop_state(), 0.8125);
    manager.save_interrupt_checkpoint(interop_state());
  }
  for (const char* name : {"checkpoint_epoch_7.pth", "best_model.pth", "interrupt_checkpoint.pth"}) {
    INFO(name);
    auto result = python_check(dir / name);
    INFO(result.output);
    CHECK(result.exit_code == 0);
  }
}

TEST_CASE("the interop checker is not vacuous: a changed value is reported", "[python][interop]") {
  TestDir dir("interop");
  State state = interop_state();
  state.set("epoch", int64_t{8});
  save_file(state, dir / "wrong.pth");
  auto result = python_check(dir / "wrong.pth");
  CHECK(result.exit_code == 1);
  CHECK_THAT(result.output, Catch::Contains("state.epoch"));
}
