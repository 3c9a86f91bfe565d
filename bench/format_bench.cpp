// format_bench: one ckpt save or load of a benchmark state, measured inside the process.
//
// bench/run_format_benchmarks.sh runs one operation per process (so that the process's
// peak RSS is that operation's), alternating with the other contenders: Python's
// torch.save/torch.load (bench/python_format_bench.py), libtorch's pickle_save/pickle_load
// (bench/pickle_bench.cpp), dd and cat. The states (bench/bench_states.hpp): case A,
// 256 float32 tensors of 4 MiB (1 GiB); case B, 20,000 float32 tensors of 4 KiB (80 MiB).
//
//   format_bench startup                                   nothing: the process's start-up cost
//   format_bench save --case A --out FILE                  ckpt::save_file (write, fsync, rename, dir fsync)
//   format_bench load --case A --file FILE [--mmap]        ckpt::load_file, eager or memory-mapped;
//                                                          then the time to sum every tensor
//   format_bench manager-save --case A --dir DIR           CheckpointManager::save_epoch_checkpoint
//   format_bench manager-load --case A --dir DIR           CheckpointManager::load_latest_checkpoint
//
// Every command takes --json-out FILE for its one-line result: the operation's wall time
// (steady clock around the call), its user and system CPU time (getrusage before and
// after: all threads), the RSS just before it and the process's peak RSS after it.
#include <ckpt/ckpt.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_states.hpp"

namespace {

using bench::Reading;
using bench::Result;
using bench::Span;

struct Options : bench::CaseOptions {
  std::filesystem::path dir;
  bool mmap = false;
};

Options parse_options(int argc, char** argv) {
  Options options;
  bench::Args args(
      "usage: format_bench startup|save|load|manager-save|manager-load [--case A|B] [--out FILE] "
      "[--file FILE] [--dir DIR] [--mmap] [--json-out FILE]");
  options.add_to(args).option("--dir", options.dir).flag("--mmap", options.mmap);
  options.command = args.parse_command(argc, argv, {"startup", "save", "load", "manager-save", "manager-load"});
  return options;
}

ckpt::State make_state(const bench::Case& c) {
  ckpt::State state;
  for (auto& [key, tensor] : bench::make_tensors(c)) state.set(key, tensor);
  return state;
}

void add_save_fields(Result& result, const bench::Case& c, long rss_before, const Reading& before,
                     const Reading& after, std::uint64_t file_bytes) {
  result.add_operation(rss_before, before, after);
  result.add("state_bytes", c.state_bytes());
  result.add("file_bytes", file_bytes);
}

// After the load, the sum over every tensor: for a mapped load, the cost of touching
// every page; for an eager load, the same arithmetic on memory already filled.
void add_load_fields(Result& result, const bench::Case& c, const ckpt::State& state, long rss_before,
                     const Reading& before, const Reading& after) {
  result.add_operation(rss_before, before, after);
  std::vector<at::Tensor> tensors;
  for (const auto& [key, value] : state) {
    if (!value.isTensor()) throw std::runtime_error(key + " is not a tensor");
    tensors.push_back(value.toTensor());
  }
  bench::check_and_touch(tensors, c, result);
}

int run(const Options& options) {
  Result result;
  result.add("tool", "ckpt");
  result.add("command", options.command);
  if (options.command == "startup") {
    // Nothing: the wrapper's wall time of this process is the start-up cost.
  } else if (options.command == "save") {
    const auto c = bench::case_named(options.case_name);
    ckpt::State state = make_state(c);
    const long rss_before = bench::current_rss_kib();
    Reading before = Reading::now();
    ckpt::save_file(state, options.file);
    Reading after = Reading::now();
    add_save_fields(result, c, rss_before, before, after, std::filesystem::file_size(options.file));
  } else if (options.command == "load") {
    const auto c = bench::case_named(options.case_name);
    ckpt::LoadOptions load_options;
    load_options.memory_map = options.mmap;
    const long rss_before = bench::current_rss_kib();
    Reading before = Reading::now();
    ckpt::State state = ckpt::load_file(options.file, load_options);
    Reading after = Reading::now();
    result.add("mode", options.mmap ? "mmap" : "eager");
    add_load_fields(result, c, state, rss_before, before, after);
  } else if (options.command == "manager-save") {
    const auto c = bench::case_named(options.case_name);
    ckpt::State state = make_state(c);
    Reading open_start = Reading::now();
    ckpt::CheckpointManager manager(options.dir, c10::kCPU, 5);
    Reading open_end = Reading::now();
    const long rss_before = bench::current_rss_kib();
    Reading before = Reading::now();
    ckpt::CheckpointRecord record = manager.save_epoch_checkpoint(state, 1);
    Reading after = Reading::now();
    add_save_fields(result, c, rss_before, before, after, record.size);
    result.add_span("open_", Span::between(open_start, open_end));
  } else if (options.command == "manager-load") {
    const auto c = bench::case_named(options.case_name);
    Reading open_start = Reading::now();
    ckpt::CheckpointManager manager(options.dir, c10::kCPU, 5);
    Reading open_end = Reading::now();
    const long rss_before = bench::current_rss_kib();
    Reading before = Reading::now();
    std::optional<ckpt::State> state = manager.load_latest_checkpoint();
    Reading after = Reading::now();
    if (!state) throw std::runtime_error(options.dir.string() + ": nothing to load");
    add_load_fields(result, c, *state, rss_before, before, after);
    result.add_span("open_", Span::between(open_start, open_end));
  }
  result.write(options.json_out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  spdlog::set_level(spdlog::level::off);  // the manager logs each save and load
  try {
    return run(options);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "format_bench %s: %s\n", options.command.c_str(), error.what());
    return 1;
  }
}
