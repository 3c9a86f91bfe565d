// The manager's asynchronous saves: what a snapshot protects (copy) and what it does not
// (borrow), the guide's loop writing each state once, an interrupt save after a save in
// flight, and Python reading what the worker wrote. The worker is held at a step of the
// save protocol (store test hooks) while the training thread goes on.
#include "support/torch_pch.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>

#include "ckpt/interrupt.hpp"
#include "ckpt/training.hpp"
#include "store/test_hooks.hpp"  // on_step: test hooks
#include "support/step_gate.hpp"
#include "support/test_dir.hpp"
#include "torch/snapshot.hpp"

using namespace ckpt;
using namespace ckpt::test;
using Snapshot = CheckpointManager::Snapshot;

namespace {


StoreOptions gated(const std::shared_ptr<StepGate>& gate, int max_in_flight = 1) {
  StoreOptions options;
  options.max_in_flight = max_in_flight;
  store::test_hooks(options).on_step = [gate](std::string_view step) { gate->on_step(step); };
  return options;
}

struct Trainer {
  torch::nn::Linear model{8, 4};
  torch::optim::SGD optimizer{model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9)};

  void step() {
    optimizer.zero_grad();
    model->forward(at::ones({2, 8})).sum().backward();
    optimizer.step();
  }
  State state(std::int64_t epoch, double val_acc) {
    State state{{"epoch", epoch}, {"val_acc", val_acc}};
    state.set("model", state_dict(*model));
    state.set("optimizer", state_dict(optimizer));
    return state;
  }
};

at::Tensor weight_in(const std::filesystem::path& file) {
  return load_file(file).get<State>("model").get<at::Tensor>("weight");
}

ino_t inode_of(const std::filesystem::path& path) {
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

// Fails the free-space check (an IoError naming the file, nothing written) while set.
class FullDisk final : public FileSystemWrapper {
 public:
  FullDisk() : FileSystemWrapper(FileSystem::posix()) {}
  std::atomic<bool> full{false};
  std::uint64_t free_space(const std::filesystem::path& dir) override {
    return full ? 0 : FileSystemWrapper::free_space(dir);
  }
};

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

}  // namespace

TEST_CASE("a copy snapshot: parameters changed right after save_*_async returns do not reach the file",
          "[manager][async]") {
  TestDir dir("async-copy");
  auto gate = std::make_shared<StepGate>();
  CheckpointManager manager(dir.path(), c10::kCPU, 5, gated(gate, 4));
  Trainer trainer;
  std::vector<at::Tensor> saved;  // the weight each epoch's save was given
  trainer.step();
  saved.push_back(trainer.model->weight.detach().clone());
  gate->arm("temp_written");  // the worker is held inside epoch 1's save...
  manager.save_epoch_checkpoint_async(trainer.state(1, 0.5), 1);
  gate->wait_reached();
  for (std::int64_t epoch = 2; epoch <= 3; ++epoch) {  // ...so these are queued, not written
    trainer.step();
    saved.push_back(trainer.model->weight.detach().clone());
    manager.save_epoch_checkpoint_async(trainer.state(epoch, 0.6), epoch);
  }
  manager.save_best_model_async(trainer.state(3, 0.6), 0.6);
  {
    at::NoGradGuard no_grad;
    trainer.model->weight.fill_(42);  // the training thread goes on at once
  }
  trainer.step();
  gate->open();
  manager.wait();
  for (std::int64_t epoch = 1; epoch <= 3; ++epoch) {
    INFO("epoch " << epoch);
    CHECK(weight_in(dir / ("checkpoint_epoch_" + std::to_string(epoch) + ".pth")).equal(saved[epoch - 1]));
  }
  CHECK(weight_in(dir / "best_model.pth").equal(saved[2]));
  CHECK_FALSE(saved[1].equal(saved[2]));
}

TEST_CASE("a borrow snapshot writes the caller's tensors, without copying them", "[manager][async]") {
  TestDir dir("async-borrow");
  auto gate = std::make_shared<StepGate>();
  CheckpointManager manager(dir.path(), c10::kCPU, 5, gated(gate, 3));
  Trainer trainer;
  gate->arm("temp_written");
  manager.save_epoch_checkpoint_async(trainer.state(1, 0.5), 1);
  gate->wait_reached();
  manager.save_epoch_checkpoint_async(trainer.state(2, 0.6), 2, std::nullopt, Snapshot::borrow);
  {
    at::NoGradGuard no_grad;
    trainer.model->weight.fill_(42);  // breaks the promise, to show nothing was copied
  }
  gate->open();
  manager.wait();
  CHECK(weight_in(dir / "checkpoint_epoch_2.pth").eq(42).all().item<bool>());
  CHECK_FALSE(weight_in(dir / "checkpoint_epoch_1.pth").eq(42).all().item<bool>());
}

TEST_CASE("a copy snapshot keeps shared storages shared, views, dtypes and requires_grad", "[manager][async]") {
  TestDir dir("async-views");
  CheckpointManager manager(dir.path());
  at::Tensor base = at::arange(24, at::kFloat).reshape({4, 6});
  State state;
  state.set("base", base);
  state.set("tied", base);                                  // the same tensor twice (tied weights)
  state.set("column", base.select(1, 2));                   // a strided view of the same storage
  state.set("ids", at::arange(5, at::kLong));
  state.set("param", at::ones({3}).requires_grad_(true));
  state.set("nested", State{{"list", c10::List<at::Tensor>({base.narrow(0, 1, 2)})}});
  manager.save_epoch_checkpoint_async(state, 1);
  base.zero_();
  manager.wait();
  State loaded = load_file(dir / "checkpoint_epoch_1.pth");
  const at::Tensor original = at::arange(24, at::kFloat).reshape({4, 6});
  CHECK(loaded.get<at::Tensor>("base").equal(original));
  CHECK(loaded.get<at::Tensor>("column").equal(original.select(1, 2)));
  CHECK(loaded.get<at::Tensor>("column").storage().is_alias_of(loaded.get<at::Tensor>("tied").storage()));
  CHECK(loaded.get<at::Tensor>("column").strides() == original.select(1, 2).strides());
  CHECK(loaded.get<at::Tensor>("ids").scalar_type() == at::kLong);
  CHECK(loaded.get<at::Tensor>("param").requires_grad());
  const auto list = loaded.get<State>("nested").at("list").toTensorVector();
  CHECK(list.at(0).equal(original.narrow(0, 1, 2)));
  CHECK(list.at(0).storage().is_alias_of(loaded.get<at::Tensor>("base").storage()));
  // Byte for byte the payload a synchronous save of the original writes.
  base.copy_(original);
  save_file(state, dir / "sync.pth");
  CHECK(read_bytes(dir / "sync.pth") == read_bytes(dir / "checkpoint_epoch_1.pth"));
}

TEST_CASE("the staging pool reuses a buffer only once no snapshot holds it", "[manager][async]") {
  torch_layer::StagingPool pool;
  State state{{"w", at::ones({1024})}};
  const void* first = nullptr;
  {
    State a = pool.copy(state);
    first = a.get<at::Tensor>("w").data_ptr();
    CHECK(first != state.get<at::Tensor>("w").data_ptr());
    State b = pool.copy(state);  // a still holds its buffer: b gets another
    CHECK(b.get<at::Tensor>("w").data_ptr() != first);
    CHECK(pool.held_bytes() == 2 * 4096);
  }
  State c = pool.copy(state);  // both free: one reused, the other released
  CHECK((c.get<at::Tensor>("w").data_ptr() == first || pool.held_bytes() == 4096));
  CHECK(pool.held_bytes() == 4096);
  CHECK(c.get<at::Tensor>("w").equal(state.get<at::Tensor>("w")));
}

TEST_CASE("the guide's loop in asynchronous mode writes each state once", "[manager][async][dedupe][guide]") {
  TestDir dir("async-guide");
  auto gate = std::make_shared<StepGate>();
  CheckpointManager manager(dir.path(), c10::kCPU, 5, gated(gate));
  Trainer trainer;
  for (std::int64_t epoch = 1; epoch <= 3; ++epoch) {
    trainer.step();
    const double val_acc = 0.5 + 0.1 * static_cast<double>(epoch);
    State state = trainer.state(epoch, val_acc);
    manager.save_epoch_checkpoint_async(state, epoch);
    manager.save_best_model_async(state, val_acc);
  }
  manager.wait();
  const auto steps = gate->steps();
  CHECK(std::count(steps.begin(), steps.end(), "temp_written") == 3);  // the epochs
  CHECK(std::count(steps.begin(), steps.end(), "temp_linked") == 3);   // the best models
  CHECK(inode_of(dir / "best_model.pth") == inode_of(dir / "checkpoint_epoch_3.pth"));
  auto best = manager.load_best_model();
  REQUIRE(best);
  CHECK(best->get<std::int64_t>("epoch") == 3);
  CHECK(manager.store().best()->metric == Approx(0.8));
}

TEST_CASE("an interrupt save waits for the save in flight, which commits first", "[manager][async][interrupt]") {
  TestDir dir("async-interrupt");
  auto gate = std::make_shared<StepGate>();
  CheckpointManager manager(dir.path(), c10::kCPU, 5, gated(gate));
  InterruptGuard interrupt;
  Trainer trainer;
  manager.save_epoch_checkpoint(trainer.state(1, 0.5), 1);
  trainer.step();
  gate->arm("pending_committed");
  manager.save_epoch_checkpoint_async(trainer.state(2, 0.6), 2);
  gate->wait_reached();
  ::kill(::getpid(), SIGINT);  // the worker blocks it: the training thread's guard sees it
  while (!interrupt.requested()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  trainer.step();
  auto opener = open_later(gate);
  auto record = manager.save_interrupt_checkpoint(trainer.state(3, 0.7));
  opener.join();
  CHECK(record.kind == CheckpointKind::interrupt);
  auto epoch_2 = manager.store().live_checkpoints();
  auto two = std::find_if(epoch_2.begin(), epoch_2.end(), [](const CheckpointRecord& r) { return r.epoch == 2; });
  REQUIRE(two != epoch_2.end());
  CHECK(two->status == "committed");
  CHECK(two->commit_seq < record.commit_seq);  // committed before the interrupt checkpoint
  auto resumed = manager.load_latest_checkpoint();
  REQUIRE(resumed);
  CHECK(resumed->get<std::int64_t>("epoch") == 3);
}

TEST_CASE("an interrupt save still saves when a save in flight failed, then raises that failure",
          "[manager][async][interrupt]") {
  TestDir dir("async-interrupt-fail");
  auto disk = std::make_shared<FullDisk>();
  StoreOptions options;
  options.file_system = disk;
  CheckpointManager manager(dir.path(), c10::kCPU, 5, options);
  Trainer trainer;
  disk->full = true;
  manager.save_epoch_checkpoint_async(trainer.state(1, 0.5), 1);  // fails on the worker: no space
  manager.store().in_flight();
  while (!manager.store().in_flight().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  disk->full = false;
  try {
    manager.save_interrupt_checkpoint(trainer.state(1, 0.5));
    FAIL("the failed epoch save was not raised");
  } catch (const IoError& error) {
    CHECK(error.code() == ErrorCode::disk_full);
    CHECK_THAT(error.what(), Catch::Contains("checkpoint_epoch_1.pth"));
  }
  CHECK(std::filesystem::exists(dir / "interrupt_checkpoint.pth"));  // saved before raising
  manager.wait();                                                     // raised once
  CHECK(manager.store().latest()->kind == CheckpointKind::interrupt);
}

TEST_CASE("with two failed saves in flight an interrupt save raises the first, and wait() the second",
          "[manager][async][interrupt]") {
  TestDir dir("async-interrupt-two");
  auto disk = std::make_shared<FullDisk>();
  auto gate = std::make_shared<StepGate>();
  StoreOptions options;
  options.file_system = disk;
  options.max_in_flight = 3;
  store::test_hooks(options).on_step = [gate](std::string_view step) { gate->on_step(step); };
  CheckpointManager manager(dir.path(), c10::kCPU, 5, options);
  Trainer trainer;
  // Both failing saves are queued behind a held one before either fails (else the second
  // submit would raise the first failure itself).
  gate->arm("renamed");
  manager.save_epoch_checkpoint_async(trainer.state(0, 0.4), 0);
  gate->wait_reached();
  disk->full = true;
  manager.save_epoch_checkpoint_async(trainer.state(1, 0.5), 1);
  manager.save_epoch_checkpoint_async(trainer.state(2, 0.6), 2);
  gate->open();
  while (!manager.store().in_flight().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  disk->full = false;
  CHECK_THROWS_WITH(manager.save_interrupt_checkpoint(trainer.state(2, 0.6)),
                    Catch::Contains("checkpoint_epoch_1.pth"));
  CHECK(std::filesystem::exists(dir / "interrupt_checkpoint.pth"));
  // The second failure is not lost: the next call raises it, once.
  CHECK_THROWS_WITH(manager.wait(), Catch::Contains("checkpoint_epoch_2.pth"));
  CHECK_NOTHROW(manager.wait());
  CHECK(manager.store().latest()->kind == CheckpointKind::interrupt);
}

TEST_CASE("a failed interrupt save leaves the failures of the saves before it to the next calls",
          "[manager][async][interrupt]") {
  TestDir dir("async-interrupt-both");
  auto disk = std::make_shared<FullDisk>();
  StoreOptions options;
  options.file_system = disk;
  CheckpointManager manager(dir.path(), c10::kCPU, 5, options);
  Trainer trainer;
  disk->full = true;
  manager.save_epoch_checkpoint_async(trainer.state(1, 0.5), 1);
  while (!manager.store().in_flight().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK_THROWS_WITH(manager.save_interrupt_checkpoint(trainer.state(1, 0.5)),
                    Catch::Contains("interrupt_checkpoint.pth"));
  CHECK_THROWS_WITH(manager.wait(), Catch::Contains("checkpoint_epoch_1.pth"));
  CHECK_NOTHROW(manager.wait());
}

TEST_CASE("a borrowed tensor given new storage before its save is written saves the bytes it had",
          "[manager][async]") {
  TestDir dir("async-borrow-set");
  auto gate = std::make_shared<StepGate>();
  CheckpointManager manager(dir.path(), c10::kCPU, 5, gated(gate, 2));
  State first{{"epoch", std::int64_t{0}}};
  first.set("w", at::zeros({16}));
  gate->arm("renamed");
  manager.save_epoch_checkpoint_async(first, 0);  // held: the next save waits behind it
  gate->wait_reached();
  at::Tensor weight = at::full({1 << 16}, 1.0f);
  State state{{"epoch", std::int64_t{1}}};
  state.set("w", weight);
  manager.save_epoch_checkpoint_async(state, 1, std::nullopt, CheckpointManager::Snapshot::borrow);
  // The caller breaks no promise about the bytes: the tensor gets new storage, and the
  // old storage's memory is handed out again (under ASan: freed, a use-after-free).
  weight.set_(at::full({1 << 16}, 3.0f).storage());
  at::Tensor reuse = at::full({1 << 16}, 2.0f);
  gate->open();
  manager.wait();
  State saved = load_file(dir / "checkpoint_epoch_1.pth");
  CHECK(saved.get<at::Tensor>("w").eq(1.0f).all().item<bool>());
}

TEST_CASE("the manager's loads wait for the save in flight", "[manager][async]") {
  TestDir dir("async-load");
  auto gate = std::make_shared<StepGate>();
  CheckpointManager manager(dir.path(), c10::kCPU, 5, gated(gate));
  Trainer trainer;
  manager.save_epoch_checkpoint(trainer.state(1, 0.5), 1);
  gate->arm("renamed");
  manager.save_epoch_checkpoint_async(trainer.state(2, 0.6), 2);
  gate->wait_reached();
  auto opener = open_later(gate);
  auto state = manager.load_latest_checkpoint();
  opener.join();
  REQUIRE(state);
  CHECK(state->get<std::int64_t>("epoch") == 2);
}

TEST_CASE("Python's torch.load reads the manager's asynchronously saved checkpoints", "[manager][async][python][interop]") {
  TestDir dir("async-interop");
  {
    CheckpointManager manager(dir.path());
    State state = interop_state();
    manager.save_epoch_checkpoint_async(state, 7, 0.8125);
    manager.save_best_model_async(state, 0.8125);
    state.get<at::Tensor>("weights").mul_(0);  // after the copy: the files keep the values
    manager.wait();
  }
  for (const char* name : {"checkpoint_epoch_7.pth", "best_model.pth"}) {
    INFO(name);
    std::string script = std::string(CKPT_SOURCE_DIR) + "/tests/python/check_cpp_checkpoint.py";
    auto result = run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script) + " " +
                              shell_quote((dir / name).string()) + " 2>&1");
    INFO(result.output);
    CHECK(result.exit_code == 0);
  }
}
