// dedupe_bench: bytes written per epoch by the guide's loop, the epoch checkpoint and the
// best model of the same state each epoch, through CheckpointManager.
//
// Each epoch changes every tensor of the state in place (add_, as optimizer.step() does),
// then calls save_epoch_checkpoint(state, epoch) and save_best_model(state, metric), as
// the guide's loop does when the epoch is a new best (here every epoch is). Per epoch it
// records:
//   - seam_bytes: payload bytes appended through the FileSystem seam (a counting
//     FileSystemWrapper): what ckpt asked the kernel to write into checkpoint files;
//   - write_bytes and cancelled_write_bytes from /proc/self/io: what this process caused
//     to be sent to the block layer (the index's WAL included), and what of it was dropped
//     before writeback because the file was truncated or unlinked first (a temp file
//     removed unsynced). write_bytes - cancelled_write_bytes is what reached the disk;
//   - seconds: the two saves' wall time.
// bench/python_guide_dedupe.py measures the same loop for the guide's Python (two
// torch.save calls, made durable as bench/python_guide_save.py does).
//
// --mode picks the contender:
//   ckpt             the manager as shipped: the unchanged state is announced
//                    (SaveRequest::likely_duplicate), hashed into no file, and linked;
//   ckpt-unannounced the store without the hint (the payload encoded as the manager does):
//                    the best model's temp file is written, hashed, found equal, and
//                    removed unsynced before it is linked;
//   ckpt-nolink      a file system without hard links (link fails with ENOSYS): both
//                    saves write, as before this feature.
//
// Usage: dedupe_bench [--dir PARENT] [--mode M] [--state-mib N] [--epochs E] [--json-out FILE] [--keep-dir]
#include <ATen/ops/randn.h>
#include <ckpt/ckpt.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "torch/payload_codec.hpp"  // the manager's encoding, for the store used directly

namespace {

struct Options : bench::RunDirOptions {
  std::string mode = "ckpt";
  int state_mib = 128;
  int epochs = 4;
};

// Counts the payload bytes appended to files created through it.
class CountingFileSystem final : public ckpt::FileSystemWrapper {
 public:
  explicit CountingFileSystem(bool links) : links_(links) {}

  std::unique_ptr<ckpt::WritableFile> create_new(const std::filesystem::path& path) override {
    return std::make_unique<CountingFile>(target()->create_new(path), appended_);
  }
  void link(const std::filesystem::path& existing, const std::filesystem::path& new_path) override {
    if (!links_) {
      throw ckpt::IoError(ckpt::ErrorCode::io, new_path.string() + ": hard link to " + existing.string() +
                          " failed: Function not implemented (dedupe_bench --mode ckpt-nolink)", new_path, ENOSYS);
    }
    target()->link(existing, new_path);
  }
  std::uint64_t appended() const { return appended_.load(); }

 private:
  class CountingFile final : public ckpt::WritableFile {
   public:
    CountingFile(std::unique_ptr<ckpt::WritableFile> real, std::atomic<std::uint64_t>& appended)
        : real_(std::move(real)), appended_(appended) {}
    void append(const void* data, std::size_t n) override {
      real_->append(data, n);
      appended_ += n;
    }
    void sync() override { real_->sync(); }
    void close() override { real_->close(); }

   private:
    std::unique_ptr<ckpt::WritableFile> real_;
    std::atomic<std::uint64_t>& appended_;
  };

  bool links_;
  std::atomic<std::uint64_t> appended_{0};
};

struct ProcIo {
  std::uint64_t write_bytes = 0;
  std::uint64_t cancelled_write_bytes = 0;
};

ProcIo read_proc_io() {
  std::ifstream in("/proc/self/io");
  ProcIo io;
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "write_bytes:") io.write_bytes = value;
    if (key == "cancelled_write_bytes:") io.cancelled_write_bytes = value;
  }
  return io;
}

// The guide's checkpoint dict: a model of `mib` MiB of float32 in 8 tensors.
ckpt::State make_state(int mib) {
  ckpt::State model;
  const std::int64_t floats = static_cast<std::int64_t>(mib) * (1 << 20) / 4 / 8;
  for (int i = 0; i < 8; ++i) model.set("layer" + std::to_string(i) + ".weight", at::randn({floats}));
  ckpt::State state{{"epoch", std::int64_t{0}}, {"best_acc", 0.0}, {"val_acc", 0.0}};
  state.set("model", model);
  return state;
}

// One epoch's two saves, through the manager, or through the store without the hint.
class Saver {
 public:
  Saver(const std::filesystem::path& dir, const Options& options, std::shared_ptr<CountingFileSystem> fs)
      : dir_(dir), unannounced_(options.mode == "ckpt-unannounced") {
    ckpt::StoreOptions store_options;
    store_options.file_system = std::move(fs);
    if (unannounced_) {
      store_ = std::make_unique<ckpt::CheckpointStore>(dir, store_options);
    } else {
      manager_ = std::make_unique<ckpt::CheckpointManager>(dir, c10::kCPU, 5, store_options);
    }
  }

  void save_both(const ckpt::State& state, std::int64_t epoch, double metric) {
    if (manager_) {
      manager_->save_epoch_checkpoint(state, epoch);
      manager_->save_best_model(state, metric);
      return;
    }
    auto payload = ckpt::torch_layer::encode(state, dir_ / "checkpoint.pth");
    ckpt::SaveRequest request;
    request.epoch = epoch;
    request.size_hint = payload.size_hint;
    store_->save(request, payload.write);
    request.kind = ckpt::CheckpointKind::best;
    request.epoch.reset();
    request.metric = metric;
    store_->save(request, payload.write);
  }

 private:
  std::filesystem::path dir_;
  bool unannounced_;
  std::unique_ptr<ckpt::CheckpointManager> manager_;
  std::unique_ptr<ckpt::CheckpointStore> store_;
};

}  // namespace

int main(int argc, char** argv) {
  Options options;
  bench::Args args(
      "usage: dedupe_bench [--dir PARENT] [--mode ckpt|ckpt-unannounced|ckpt-nolink] [--state-mib N] [--epochs E] "
      "[--json-out FILE] [--keep-dir]");
  options.add_to(args).option("--mode", options.mode).option("--state-mib", options.state_mib);
  args.option("--epochs", options.epochs).parse(argc, argv);
  if (options.state_mib < 1 || options.epochs < 1 ||
      (options.mode != "ckpt" && options.mode != "ckpt-unannounced" && options.mode != "ckpt-nolink")) {
    args.usage();
  }
  try {
    spdlog::set_level(spdlog::level::err);  // the no-link warning is expected in that mode
    const std::filesystem::path dir = bench::make_fresh_dir(options.parent, "dedupe-");
    auto fs = std::make_shared<CountingFileSystem>(options.mode != "ckpt-nolink");
    ckpt::State state = make_state(options.state_mib);
    std::vector<double> seconds;
    std::vector<std::uint64_t> seam, written, cancelled;
    std::uint64_t state_bytes = 0;
    {
      Saver saver(dir, options, fs);
      for (std::int64_t epoch = 1; epoch <= options.epochs; ++epoch) {
        for (const auto& [key, tensor] : state.get<ckpt::State>("model")) tensor.toTensor().add_(1.0);  // "step"
        state.set("epoch", epoch).set("val_acc", 0.5 + 0.01 * static_cast<double>(epoch));
        const std::uint64_t seam_before = fs->appended();
        const ProcIo io_before = read_proc_io();
        const auto start = bench::Clock::now();
        saver.save_both(state, epoch, 0.5 + 0.01 * static_cast<double>(epoch));
        seconds.push_back(bench::elapsed_us(start) / 1e6);
        const ProcIo io_after = read_proc_io();
        seam.push_back(fs->appended() - seam_before);
        written.push_back(io_after.write_bytes - io_before.write_bytes);
        cancelled.push_back(io_after.cancelled_write_bytes - io_before.cancelled_write_bytes);
        state.set("best_acc", 0.5 + 0.01 * static_cast<double>(epoch));
      }
      state_bytes = std::filesystem::file_size(dir / "best_model.pth");
    }
    auto numbers = [](const auto& values) {
      std::ostringstream out;
      for (std::size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i];
      return "[" + out.str() + "]";
    };
    std::printf("dedupe_bench %s: state %.1f MiB, %d epochs, seam %.2fx, block layer %.2fx (net of cancelled) per epoch\n",
                options.mode.c_str(), static_cast<double>(state_bytes) / (1 << 20), options.epochs,
                static_cast<double>(seam.back()) / static_cast<double>(state_bytes),
                static_cast<double>(written.back() - cancelled.back()) / static_cast<double>(state_bytes));
    bench::Result result;
    result.add("side", options.mode).add("state_bytes", state_bytes).add("epochs", options.epochs);
    result.add_raw("seconds", numbers(seconds)).add_raw("seam_bytes", numbers(seam));
    result.add_raw("write_bytes", numbers(written)).add_raw("cancelled_write_bytes", numbers(cancelled));
    double load = 0;
    std::ifstream("/proc/loadavg") >> load;
    result.add("loadavg_1min", load).write(options.json_out);
    if (!options.keep_dir) std::filesystem::remove_all(dir);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "dedupe_bench: %s\n", error.what());
    return 1;
  }
  return 0;
}
