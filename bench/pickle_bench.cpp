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
#include <sys/stat.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "format_bench_util.hpp"

namespace {

using format_bench::Reading;
using format_bench::Result;
using format_bench::Span;

struct Options {
  std::string command;
  std::string case_name = "A";
  std::filesystem::path file;
  std::filesystem::path json_out;
};

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: pickle_bench startup|save|load [--case A|B] [--out FILE] [--file FILE] [--json-out FILE]\n");
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  if (argc < 2) usage();
  Options options;
  options.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (arg == "--case") {
      options.case_name = value();
    } else if (arg == "--out" || arg == "--file") {
      options.file = value();
    } else if (arg == "--json-out") {
      options.json_out = value();
    } else {
      usage();
    }
  }
  return options;
}

[[noreturn]] void os_error(const char* what, const std::filesystem::path& path) {
  throw std::runtime_error(fmt::format("{}: {}: {}", path.string(), what, std::strerror(errno)));
}

void write_all(int fd, const char* data, std::size_t n, const std::filesystem::path& path) {
  while (n > 0) {
    ssize_t written = ::write(fd, data, n);
    if (written < 0) {
      if (errno == EINTR) continue;
      os_error("write", path);
    }
    data += written;
    n -= static_cast<std::size_t>(written);
  }
}

std::vector<char> read_all(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) os_error("open", path);
  struct stat st{};
  if (::fstat(fd, &st) != 0) os_error("stat", path);
  std::vector<char> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t used = 0;
  while (used < bytes.size()) {
    ssize_t got = ::read(fd, bytes.data() + used, bytes.size() - used);
    if (got < 0) {
      if (errno == EINTR) continue;
      os_error("read", path);
    }
    if (got == 0) break;
    used += static_cast<std::size_t>(got);
  }
  ::close(fd);
  bytes.resize(used);
  return bytes;
}

int run(const Options& options) {
  Result result;
  result.add("tool", "pickle");
  result.add("command", options.command);
  if (options.command == "startup") {
    // Nothing: the wrapper's wall time of this process is the start-up cost.
  } else if (options.command == "save") {
    const auto c = format_bench::case_named(options.case_name);
    c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
    for (auto& [key, tensor] : format_bench::make_tensors(c)) dict.insert(key, tensor);
    const c10::IValue state(dict);

    const long rss_before = format_bench::current_rss_kib();
    Reading before = Reading::now();
    std::vector<char> bytes = torch::pickle_save(state);
    Reading serialized = Reading::now();
    int fd = ::open(options.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) os_error("create", options.file);
    write_all(fd, bytes.data(), bytes.size(), options.file);
    Reading written = Reading::now();
    if (::fsync(fd) != 0) os_error("fsync", options.file);
    if (::close(fd) != 0) os_error("close", options.file);
    Reading after = Reading::now();

    result.add_span("", Span::between(before, after));
    result.add_memory(rss_before, before, after);
    result.add("state_bytes", c.state_bytes());
    result.add("file_bytes", static_cast<std::uint64_t>(bytes.size()));
    result.add_span("serialize_", Span::between(before, serialized));
    result.add_span("write_", Span::between(serialized, written));
    result.add_span("fsync_", Span::between(written, after));
  } else if (options.command == "load") {
    const auto c = format_bench::case_named(options.case_name);
    const long rss_before = format_bench::current_rss_kib();
    Reading before = Reading::now();
    std::vector<char> bytes = read_all(options.file);
    Reading read = Reading::now();
    c10::IValue loaded = torch::pickle_load(bytes);
    // The file's bytes are dead once the tensors are built; a caller frees them here too.
    std::vector<char>().swap(bytes);
    Reading after = Reading::now();

    result.add_span("", Span::between(before, after));
    result.add_memory(rss_before, before, after);
    result.add_span("read_", Span::between(before, read));
    result.add_span("unpickle_", Span::between(read, after));
    if (!loaded.isGenericDict()) throw std::runtime_error("pickle_load did not return a dict");
    std::vector<at::Tensor> tensors;
    for (const auto& entry : loaded.toGenericDict()) {
      at::Tensor t = entry.value().toTensor();
      if (t.scalar_type() != at::kFloat || t.numel() != c.elements) throw std::runtime_error("unexpected tensor");
      tensors.push_back(t);
    }
    if (static_cast<std::int64_t>(tensors.size()) != c.tensors) throw std::runtime_error("unexpected tensor count");
    Reading sum_start = Reading::now();
    double checksum = format_bench::sum_all(tensors);
    Reading sum_end = Reading::now();
    result.add_span("touch_", Span::between(sum_start, sum_end));
    result.add("peak_rss_after_touch_kib", sum_end.maxrss_kib);
    result.add("tensors", static_cast<std::int64_t>(tensors.size()));
    result.add("state_bytes", c.state_bytes());
    result.add("checksum", checksum);
  } else {
    usage();
  }
  if (!options.json_out.empty()) bench::write_text_file(options.json_out, result.json());
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
