// ckpt_resume_worker: a small but complete training program for the exact-resume tests.
//
// Trains an MLP with BatchNorm and Dropout with Adam and StepLR on a fixed data set,
// saving an epoch checkpoint after every epoch and, when SIGINT arrives (InterruptGuard),
// an interrupt checkpoint at the next step boundary (then exits 130). Started again on
// the same directory, it resumes exactly: model, optimizer, scheduler, RNG and the
// position inside the epoch all come from the checkpoint. At the end it writes the
// final model and optimizer state to OUT with save_file.
//
// It reports on stdout, one line each, so the test can check that each run resumed
// where the previous one stopped and that no step was done twice or skipped:
//   start EPOCH BATCH          where this run begins (0 0 when there is no checkpoint)
//   ready                      the guard is installed: SIGINT is safe from now on
//   interrupted EPOCH BATCH    the position the interrupt checkpoint holds (exit 130)
//   steps N                    optimizer steps this run did, last line of every run
//
// The data set (inputs, labels, each epoch's batch order) and the initial weights live
// in DATA, made on first use, so that Python can run the same training from them
// (tests/python/resume_in_python.py).
//
// Usage: ckpt_resume_worker DIR DATA OUT EPOCHS [STEP_SLEEP_MS]
#include <ckpt/ckpt.hpp>
#include <ckpt/training.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

namespace {

constexpr int64_t kSamples = 512;
constexpr int64_t kBatch = 32;
constexpr int64_t kBatches = kSamples / kBatch;

torch::nn::Sequential make_model() {
  return torch::nn::Sequential(torch::nn::Linear(8, 32), torch::nn::BatchNorm1d(32), torch::nn::ReLU(),
                               torch::nn::Dropout(0.2), torch::nn::Linear(32, 3));
}

ckpt::State make_data(int64_t epochs, torch::nn::Sequential& model) {
  torch::manual_seed(123);
  auto x = torch::randn({kSamples, 8});
  auto y = x.matmul(torch::randn({8, 3})).argmax(1);
  c10::List<at::Tensor> orders;
  for (int64_t epoch = 0; epoch < epochs; ++epoch) orders.push_back(torch::randperm(kSamples));
  ckpt::State data{{"x", x}, {"y", y}, {"orders", orders}};
  data.set("init", ckpt::state_dict(*model));
  return data;
}

ckpt::State snapshot(int64_t epoch, int64_t batch, torch::nn::Sequential& model, torch::optim::Adam& optimizer,
                     ckpt::StepLR& scheduler) {
  ckpt::State state{{"epoch", epoch}, {"batch", batch}};
  state.set("model", ckpt::state_dict(*model));
  state.set("optimizer", ckpt::state_dict(optimizer));
  state.set("scheduler", scheduler.state_dict());
  state.set("rng", ckpt::rng_state());
  return state;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: ckpt_resume_worker DIR DATA OUT EPOCHS [STEP_SLEEP_MS]\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1], data_file = argv[2], out = argv[3];
  const int64_t epochs = std::stoll(argv[4]);
  const int sleep_ms = argc > 5 ? std::stoi(argv[5]) : 0;
  torch::set_num_threads(1);  // one thread: reductions in a fixed order, bit-reproducible
  spdlog::set_level(spdlog::level::warn);

  auto model = make_model();
  if (!std::filesystem::exists(data_file)) ckpt::save_file(make_data(epochs, model), data_file);
  ckpt::State data = ckpt::load_file(data_file);
  ckpt::load_state_dict(*model, data.get<ckpt::State>("init"));
  auto x = data.get<at::Tensor>("x");
  auto y = data.get<at::Tensor>("y");
  auto orders = data.at("orders").toTensorList();

  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  ckpt::StepLR scheduler(optimizer, 2, 0.5);
  ckpt::CheckpointManager manager(dir, torch::kCPU, 3);
  torch::manual_seed(7);

  int64_t start_epoch = 0, start_batch = 0;
  if (auto state = manager.load_latest_checkpoint()) {
    ckpt::load_state_dict(*model, state->get<ckpt::State>("model"));
    ckpt::load_state_dict(optimizer, state->get<ckpt::State>("optimizer"));
    scheduler.load_state_dict(state->get<ckpt::State>("scheduler"));
    ckpt::set_rng_state(state->get<ckpt::State>("rng"));
    start_epoch = state->get<int64_t>("epoch");
    start_batch = state->get<int64_t>("batch");
  }

  ckpt::InterruptGuard interrupt;
  std::printf("start %lld %lld\nready\n", static_cast<long long>(start_epoch), static_cast<long long>(start_batch));
  std::fflush(stdout);
  auto report_steps = [](int64_t steps) {
    std::printf("steps %lld\n", static_cast<long long>(steps));
    std::fflush(stdout);
  };
  int64_t steps = 0;
  model->train();
  for (int64_t epoch = start_epoch; epoch < epochs; ++epoch) {
    for (int64_t batch = epoch == start_epoch ? start_batch : 0; batch < kBatches; ++batch) {
      auto index = orders.get(epoch).slice(0, batch * kBatch, (batch + 1) * kBatch);
      auto loss = torch::nn::functional::cross_entropy(model->forward(x.index_select(0, index)), y.index_select(0, index));
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      ++steps;
      if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
      if (interrupt.requested()) {
        manager.save_interrupt_checkpoint(snapshot(epoch, batch + 1, model, optimizer, scheduler));
        std::printf("interrupted %lld %lld\n", static_cast<long long>(epoch), static_cast<long long>(batch + 1));
        report_steps(steps);
        return 130;
      }
    }
    scheduler.step();
    manager.save_epoch_checkpoint(snapshot(epoch + 1, 0, model, optimizer, scheduler), epoch + 1);
  }
  ckpt::State final_state;
  final_state.set("model", ckpt::state_dict(*model));
  final_state.set("optimizer", ckpt::state_dict(optimizer));
  ckpt::save_file(final_state, out);
  report_steps(steps);
  return 0;
}
