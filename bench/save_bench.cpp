// save_bench: latency of a durable epoch save through CheckpointManager.
//
// Saves a small state (one 1024-float32 tensor, 4 KiB, plus an "epoch" int) N times with
// save_epoch_checkpoint and max_to_keep=5, epochs increasing, so from the sixth save on
// every save also rotates one checkpoint out. Each sample is the whole call as a trainer
// sees it: encoding, temp file write and fsync, the pending index row, rename, directory
// fsync, commit, rotation and unlink. bench/python_guide_save.py measures the same thing
// for the guide's Python manager made durable; bench/run_benchmarks.sh runs both.
//
// The checkpoint directory is fresh for every run and should sit on the file system the
// checkpoints would really use (not tmpfs, where fsync costs nothing).
//
// Each save is also split into the phases of the save protocol, by timestamping the
// steps the store reports through the on_step test hook (store/test_hooks.hpp, internal;
// here a clock read and a table lookup per step, about a microsecond per save). The ratio
// to Python alone cannot say whether syncs, SQL or serialization make a save slow; this can.
//
// With --rules TEXT (retention rules, e.g. 'top 3 by val_loss (min); every 10 epochs'),
// the rotation pass after each save also ranks by the rules (docs/durability.md,
// "Retention"); the state carries a val_loss either way, so both runs save the same bytes.
// bench/run_benchmarks.sh's core part runs both side by side (its cpp-rules side).
//
// Usage: save_bench [--dir PARENT] [--saves N] [--keep K] [--rules TEXT] [--json-out FILE] [--keep-dir]
#include <ATen/ops/randn.h>
#include <ckpt/ckpt.hpp>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bench_support.hpp"
#include "store/test_hooks.hpp"  // on_step: an internal test hook, reached through src/

namespace {

struct Options : bench::RunDirOptions {
  int saves = 500;
  int keep = 5;
  std::string rules;
};

Options parse_options(int argc, char** argv) {
  Options options;
  bench::Args args("usage: save_bench [--dir PARENT] [--saves N] [--keep K] [--rules TEXT] [--json-out FILE] [--keep-dir]");
  options.add_to(args)
      .option("--saves", options.saves)
      .option("--keep", options.keep)
      .option("--rules", options.rules)
      .parse(argc, argv);
  if (options.saves < 0 || options.keep < 1) args.usage();
  return options;
}

// A benchmark whose saves silently did the wrong thing would measure nothing useful:
// check that rotation left exactly the newest `keep` epochs in the index (with rules, which
// keep more, at least those and the newest), and exactly one file per live row on disk.
void check_directory(ckpt::CheckpointManager& manager, const Options& options) {
  if (options.saves == 0) return;
  auto expected = static_cast<std::size_t>(std::min(options.saves, options.keep));
  auto live = manager.store().live_checkpoints();
  if (!options.rules.empty() && live.size() >= expected) expected = live.size();
  if (live.size() != expected || !live.back().epoch || *live.back().epoch != options.saves - 1) {
    throw std::runtime_error(fmt::format("{}: expected {} live epoch rows ending at epoch {}, found {}",
                                         manager.save_dir().string(), expected, options.saves - 1, live.size()));
  }
  std::size_t epoch_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(manager.save_dir())) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(ckpt::CheckpointManager::EPOCH_CKPT_PREFIX, 0) == 0) ++epoch_files;
  }
  if (epoch_files != expected) {
    throw std::runtime_error(fmt::format("{}: expected {} epoch checkpoint files after rotation, found {}",
                                         manager.save_dir().string(), expected, epoch_files));
  }
}

// The phase of a save that ends at each step the store reports. bench/python_guide_save.py
// names the Python save's phases the same way, so the report can set them side by side.
std::string phase_ending_at(std::string_view step) {
  static const std::map<std::string_view, std::string> phases = {
      {"temp_written", "serialize_write"},     // statvfs; encode the State into the temp file
      {"temp_synced", "fsync_temp"},           // fsync and close the temp file
      {"pending_committed", "index_pending"},  // insert the pending row; synchronous=FULL commit
      {"renamed", "rename"},
      {"dir_synced", "fsync_dir"},
      {"committed", "index_commit"},           // commit the row, mark rotated-out rows; NORMAL commit
      {"obsolete_deleted", "rotation"},        // unlink rotated-out files, mark them deleted
  };
  auto found = phases.find(step);
  return found != phases.end() ? found->second : std::string(step);
}

// Sums each phase's time over all saves, in the order the phases first occur.
class PhaseTimer {
 public:
  void start() {
    running_ = true;
    last_ = bench::Clock::now();
  }
  // Steps outside a timed save (recovery when the store opens) are not part of a save.
  void step(std::string_view name) {
    if (running_) add(phase_ending_at(name));
  }
  // The rest of the call after the store's last step: re-reading the committed row, logging.
  void finish() {
    add("other");
    running_ = false;
  }

  // Mean microseconds per save of each phase.
  bench::Result means(int saves) const {
    bench::Result out;
    for (const auto& [name, total_us] : totals_) out.add(name, total_us / saves);
    return out;
  }

 private:
  void add(const std::string& phase) {
    auto now = bench::Clock::now();
    double us = std::chrono::duration<double, std::micro>(now - last_).count();
    last_ = now;
    for (auto& [name, total_us] : totals_) {
      if (name == phase) {
        total_us += us;
        return;
      }
    }
    totals_.emplace_back(phase, us);
  }

  bool running_ = false;
  bench::Clock::time_point last_;
  std::vector<std::pair<std::string, double>> totals_;
};

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  // The library logs every save at info level; formatting and writing those lines to a
  // terminal is not what is being measured. Set before the manager creates its logger,
  // which then inherits the global level.
  spdlog::set_level(spdlog::level::off);

  try {
    const std::filesystem::path dir = bench::make_fresh_dir(options.parent, "cpp");
    std::vector<double> samples_us;
    samples_us.reserve(static_cast<std::size_t>(options.saves));
    std::uint64_t payload_bytes = 0;
    PhaseTimer phases;
    {
      ckpt::StoreOptions store_options;
      store_options.retention = ckpt::parse_retention_rules(options.rules);
      ckpt::store::test_hooks(store_options).on_step = [&phases](std::string_view step) { phases.step(step); };
      ckpt::CheckpointManager manager(dir, c10::kCPU, options.keep, std::move(store_options));
      ckpt::State state{{"weights", at::randn({1024})}, {"epoch", std::int64_t{0}}, {"val_loss", 0.0}};
      for (int epoch = 0; epoch < options.saves; ++epoch) {
        state.set("epoch", std::int64_t{epoch});
        state.set("val_loss", 1.0 / (1 + epoch % 17));  // not monotone, so top-k keeps old ones too
        auto start = bench::Clock::now();
        phases.start();
        ckpt::CheckpointRecord record = manager.save_epoch_checkpoint(state, epoch);
        phases.finish();
        samples_us.push_back(bench::elapsed_us(start));
        payload_bytes = record.size;
      }
      check_directory(manager, options);
    }

    bench::Summary summary = bench::summarize(samples_us);
    std::printf("save_bench (C++ CheckpointManager, libtorch %s): %d saves, payload %llu bytes, dir %s\n  %s\n",
                TORCH_VERSION, options.saves, static_cast<unsigned long long>(payload_bytes), dir.c_str(),
                bench::describe(summary).c_str());
    bench::Result result;
    result.add("side", "cpp").add("torch", TORCH_VERSION).add("saves", options.saves);
    result.add("max_to_keep", options.keep).add("rules", options.rules).add("payload_bytes", payload_bytes);
    result.add("dir", dir.string());
    result.add_object("phases_us", phases.means(std::max(options.saves, 1)));
    result.add_samples("samples_us", samples_us).write(options.json_out);
    if (!options.keep_dir) std::filesystem::remove_all(dir);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "save_bench: %s\n", error.what());
    return 1;
  }
  return 0;
}
