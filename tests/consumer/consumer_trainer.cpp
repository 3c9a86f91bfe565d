#include <ckpt/ckpt.hpp>

#include <ATen/ATen.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  ckpt::CheckpointManager manager(argv[1], c10::kCPU, 2);
  for (int64_t epoch = 1; epoch <= 3; ++epoch) {
    manager.save_epoch_checkpoint(ckpt::State{{"epoch", epoch}, {"w", at::ones({3}) * epoch}}, epoch);
  }
  auto state = manager.load_latest_checkpoint();
  if (!state || state->get<int64_t>("epoch") != 3) return 1;
  std::printf("consumer trainer ok: resumed at epoch %lld\n", static_cast<long long>(state->get<int64_t>("epoch")));
  return 0;
}
