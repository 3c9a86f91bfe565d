// pickle_bench: libtorch's own serializer, torch::pickle_save / torch::pickle_load
// (<torch/serialize.h>), on the benchmark states of bench/format_bench.cpp.
//
//   pickle_bench startup                               nothing: the process's start-up cost
//   pickle_bench save --case A --out FILE              pickle_save (the whole archive built in
//                                                      memory), write() it, fsync, close
//   pickle_bench load --case A --file FILE             read the whole file into memory (what
//                                                      pickle_load takes), pickle_load; then
//                                                      the time to sum every tensor
//
// pickle_load reads what pickle_save writes; it cannot read files Python's torch.save or
// ckpt write in general (docs/format.md), so it loads the file this program saved.
// Each command takes --json-out FILE; the fields are those of format_bench, plus the
// phases of the save (serialize, write, fsync) and of the load (read, unpickle).
#include <fcntl.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_states.hpp"

namespace {

using bench::Reading;
using bench::Result;
using bench::Span;

using Options = bench::CaseOptions;

Options parse_options(int argc, char** argv) {
  Options options;
  bench::Args args("usage: pickle_bench startup|save|load [--case A|B] [--out FILE] [--file FILE] [--json-out FILE]");
  options.add_to(args);
  options.command = args.parse_command(argc, argv, {"startup", "save", "load"});
  return options;
}

int run(const Options& options) {
  Result result;
  result.add("tool", "pickle");
  result.add("command", options.command);
  if (options.command == "save") {
    const auto c = bench::case_named(options.case_name);
    c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
    for (auto& [key, tensor] : bench::make_tensors(c)) dict.insert(key, tensor);
    const c10::IValue state(dict);

    const long rss_before = bench::current_rss_kib();
    Reading before = Reading::now();
    std::vector<char> bytes = torch::pickle_save(state);
    Reading serialized = Reading::now();
    int fd = ::open(options.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) bench::os_error("create", options.file);
    bench::write_all(fd, bytes.data(), bytes.size(), options.file);
    Reading written = Reading::now();
    if (::fsync(fd) != 0) bench::os_error("fsync", options.file);
    if (::close(fd) != 0) bench::os_error("close", options.file);
    Reading after = Reading::now();

    result.add_operation(rss_before, before, after);
    result.add("state_bytes", c.state_bytes());
    result.add("file_bytes", static_cast<std::uint64_t>(bytes.size()));
    result.add_span("serialize_", Span::between(before, serialized));
    result.add_span("write_", Span::between(serialized, written));
    result.add_span("fsync_", Span::between(written, after));
  } else if (options.command == "load") {
    const auto c = bench::case_named(options.case_name);
    const long rss_before = bench::current_rss_kib();
    Reading before = Reading::now();
    std::vector<char> bytes = bench::read_all(options.file);
    Reading read = Reading::now();
    c10::IValue loaded = torch::pickle_load(bytes);
    // The file's bytes are dead once the tensors are built; a caller frees them here too.
    std::vector<char>().swap(bytes);
    Reading after = Reading::now();

    result.add_operation(rss_before, before, after);
    result.add_span("read_", Span::between(before, read));
    result.add_span("unpickle_", Span::between(read, after));
    if (!loaded.isGenericDict()) throw std::runtime_error("pickle_load did not return a dict");
    std::vector<at::Tensor> tensors;
    for (const auto& entry : loaded.toGenericDict()) tensors.push_back(entry.value().toTensor());
    bench::check_and_touch(tensors, c, result);
  }
  // startup: nothing; the wrapper's wall time of this process is the start-up cost.
  result.write(options.json_out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  try {
    return run(options);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "pickle_bench %s: %s\n", options.command.c_str(), error.what());
    return 1;
  }
}
