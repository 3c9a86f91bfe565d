#include <ckpt/store.hpp>
#include <ckpt/version.hpp>

#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  if (std::strcmp(ckpt::version(), CKPT_PACKAGE_VERSION) != 0 ||
      std::strcmp(CKPT_VERSION_STRING, CKPT_PACKAGE_VERSION) != 0) {
    std::fprintf(stderr, "version mismatch: library %s, header %s, package %s\n", ckpt::version(),
                 CKPT_VERSION_STRING, CKPT_PACKAGE_VERSION);
    return 1;
  }
  ckpt::CheckpointStore store(argv[1], ckpt::StoreOptions{2});
  auto latest = store.latest();
  if (!latest || latest->epoch != 3) return 1;
  std::printf("consumer core ok (ckpt %s): %s, %zu live checkpoints\n", ckpt::version(),
              latest->file.c_str(), store.live_checkpoints().size());
  return 0;
}
