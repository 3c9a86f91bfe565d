#include <ckpt/store.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  ckpt::CheckpointStore store(argv[1], ckpt::StoreOptions{2});
  auto latest = store.latest();
  if (!latest || latest->epoch != 3) return 1;
  std::printf("consumer core ok: %s, %zu live checkpoints\n", latest->file.c_str(), store.live_checkpoints().size());
  return 0;
}
