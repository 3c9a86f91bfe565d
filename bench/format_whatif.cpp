// format_whatif: the bounds under ckpt's save and load of case A, measured the way
// format_bench measures ckpt itself, to tell what limits it and what a change would gain.
// Not ckpt code: each variant does one thing ckpt's save or eager load does (or could do)
// on the same bytes, with the same libraries (xxHash's XXH3-128, libdeflate's CRC-32) and
// the same allocator (c10's CPU allocator), and nothing else. No zip structure is written
// or parsed: its bytes (~70 KB per GiB) and parsing (~1 ms for 256 records) are noise here.
//
//   format_whatif save --case A --out FILE --variant V     write the state's tensor bytes to
//       FILE.tmp in 1 MiB writes straight from tensor memory, fsync, rename, fsync the dir:
//       plain          nothing else: dd's work, from the state's memory
//       hash           XXH3-128 and CRC-32 of each chunk before its write (what ckpt hashes)
//       hash-copy      as hash, and every other 1 MiB chunk first copied into a 1 MiB buffer
//                      (what ckpt's HashingTempFile does to chunks of exactly its buffer's
//                      size when the buffer is empty; a model of ckpt's save to check)
//       hash-overlap   as hash, and every 8 MiB sync_file_range(SYNC_FILE_RANGE_WRITE) of the
//                      8 MiB before it: the disk writes while the CPU hashes, and the final
//                      fsync has only the tail left
//   format_whatif hash --case A                            XXH3-128, then CRC-32, of the
//       state's bytes in memory (1 MiB chunks): each one's cost per GiB, no I/O
//   format_whatif load --file FILE --variant V             the file's bytes into new memory,
//       4 MiB per allocation (one tensor of case A), in file order:
//       read           pread into c10 CPU-allocator memory (4 KiB pages faulted in by the copy)
//       read-crc       as read, plus CRC-32 of each 4 MiB read: ckpt's eager load, less the format
//       thp-read-crc   as read-crc into 2 MiB-aligned anonymous memory with MADV_HUGEPAGE
//                      (512 page faults per GiB instead of 262,144)
//       map-crc        mmap the file as ckpt's memory_map load does (MAP_PRIVATE, copy-on-write)
//                      and CRC-32 over all of it: a load whose tensors point into the page
//                      cache (no copy, no new memory), with every byte verified
//
// Each writes the one-line JSON result of format_bench (--json-out FILE).
#include <fcntl.h>
#include <libdeflate.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <c10/core/CPUAllocator.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_states.hpp"

namespace {

using bench::Reading;
using bench::Result;
using bench::Span;

constexpr std::size_t kWriteChunk = 1 << 20;    // ckpt's zip writer hands 1 MiB at a time
constexpr std::size_t kRecord = 4 << 20;        // one case-A tensor
constexpr std::size_t kOverlapStep = 8 << 20;   // hash-overlap: writeback started per 8 MiB
constexpr std::size_t kHugePage = 2 << 20;

struct Options : bench::CaseOptions {
  std::string variant;
};

Options parse_options(int argc, char** argv) {
  Options options;
  bench::Args args(
      "usage: format_whatif save|hash|load [--case A|B] [--variant V] [--out|--file FILE] [--json-out FILE]");
  options.add_to(args).option("--variant", options.variant);
  options.command = args.parse_command(argc, argv, {"save", "hash", "load"});
  return options;
}

[[noreturn]] void unknown_variant(const Options& options) {
  throw std::invalid_argument(fmt::format("{}: unknown --variant '{}'", options.command, options.variant));
}

// XXH3-128 over a stream of chunks.
class Xxh3 {
 public:
  Xxh3() : state_(XXH3_createState()) {
    if (!state_) throw std::bad_alloc();
    XXH3_128bits_reset(state_);
  }
  ~Xxh3() { XXH3_freeState(state_); }
  Xxh3(const Xxh3&) = delete;
  Xxh3& operator=(const Xxh3&) = delete;
  void update(const char* data, std::size_t n) { XXH3_128bits_update(state_, data, n); }
  std::uint64_t low64() const { return XXH3_128bits_digest(state_).low64; }

 private:
  XXH3_state_t* state_;
};

// Calls f(data, n) for each chunk of at most kWriteChunk bytes of one tensor, in order.
template <typename F>
void for_each_chunk(const at::Tensor& tensor, F&& f) {
  const auto* bytes = static_cast<const char*>(tensor.data_ptr());
  for (std::size_t done = 0; done < tensor.nbytes(); done += kWriteChunk) {
    f(bytes + done, std::min(kWriteChunk, tensor.nbytes() - done));
  }
}

void save(const Options& options, Result& result) {
  const auto c = bench::case_named(options.case_name);
  const std::string& v = options.variant;
  const bool hash = v == "hash" || v == "hash-copy" || v == "hash-overlap";
  const bool copy = v == "hash-copy";
  const bool overlap = v == "hash-overlap";
  if (!hash && v != "plain") unknown_variant(options);
  auto tensors = bench::make_tensors(c);
  std::vector<char> buffer(copy ? kWriteChunk : 0);
  Xxh3 xxh;
  const std::filesystem::path temp = options.file.string() + ".tmp";

  const long rss_before = bench::current_rss_kib();
  Reading before = Reading::now();
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) bench::os_error("create", temp);
  std::uint64_t written = 0, kicked = 0;
  std::uint32_t crc = 0;
  std::size_t chunk_index = 0;
  for (const auto& entry : tensors) {
    crc = 0;  // one CRC-32 per record, as in the zip
    for_each_chunk(entry.second, [&](const char* data, std::size_t n) {
      if (hash) {
        crc = libdeflate_crc32(crc, data, n);
        xxh.update(data, n);
      }
      if (copy && chunk_index++ % 2 == 1) {
        std::memcpy(buffer.data(), data, n);
        data = buffer.data();
      }
      bench::write_all(fd, data, n, temp);
      written += n;
      if (overlap && written - kicked >= 2 * kOverlapStep) {
        // Start writeback of the older step; the newest stays in cache for the hasher.
        if (::sync_file_range(fd, static_cast<off_t>(kicked), kOverlapStep, SYNC_FILE_RANGE_WRITE) != 0) {
          bench::os_error("sync_file_range", temp);
        }
        kicked += kOverlapStep;
      }
    });
  }
  Reading written_at = Reading::now();
  if (::fsync(fd) != 0) bench::os_error("fsync", temp);
  ::close(fd);
  Reading synced = Reading::now();
  if (::rename(temp.c_str(), options.file.c_str()) != 0) bench::os_error("rename", temp);
  bench::sync_dir(options.file.parent_path().empty() ? "." : options.file.parent_path());
  Reading after = Reading::now();

  result.add_operation(rss_before, before, after);
  result.add_span("write_", Span::between(before, written_at));
  result.add_span("fsync_", Span::between(written_at, synced));
  result.add("state_bytes", c.state_bytes());
  result.add("file_bytes", written);
  result.add("checksum", xxh.low64() ^ crc);
}

void hash(const Options& options, Result& result) {
  const auto c = bench::case_named(options.case_name);
  auto tensors = bench::make_tensors(c);
  Xxh3 xxh;
  const long rss_before = bench::current_rss_kib();
  Reading before = Reading::now();
  for (const auto& entry : tensors) {
    for_each_chunk(entry.second, [&](const char* data, std::size_t n) { xxh.update(data, n); });
  }
  Reading middle = Reading::now();
  std::uint32_t crc = 0;
  for (const auto& entry : tensors) {
    for_each_chunk(entry.second, [&](const char* data, std::size_t n) { crc = libdeflate_crc32(crc, data, n); });
  }
  Reading after = Reading::now();
  result.add_operation(rss_before, before, after);
  result.add_span("xxh3_", Span::between(before, middle));
  result.add_span("crc32_", Span::between(middle, after));
  result.add("state_bytes", c.state_bytes());
  result.add("checksum", xxh.low64() ^ crc);
}

// 4 MiB of anonymous memory on 2 MiB boundaries, asking for transparent huge pages.
struct HugeBuffer {
  char* base = nullptr;
  std::size_t mapped = 0;
  char* data = nullptr;
  explicit HugeBuffer(std::size_t n) : mapped(n + kHugePage) {
    void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
    base = static_cast<char*>(p);
    data = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(base) + kHugePage - 1) & ~(kHugePage - 1));
    ::madvise(data, n, MADV_HUGEPAGE);
  }
  ~HugeBuffer() { ::munmap(base, mapped); }
};

void load(const Options& options, Result& result) {
  const std::string& v = options.variant;
  if (v != "read" && v != "read-crc" && v != "thp-read-crc" && v != "map-crc") unknown_variant(options);
  const bool crc_on = v != "read";
  std::uint32_t crc = 0;
  std::uint64_t total = 0;
  std::vector<c10::DataPtr> storages;
  std::vector<std::unique_ptr<HugeBuffer>> huge;
  void* mapping = nullptr;
  std::size_t mapping_size = 0;

  const long rss_before = bench::current_rss_kib();
  Reading before = Reading::now();
  int fd = ::open(options.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) bench::os_error("open", options.file);
  struct stat st{};
  if (::fstat(fd, &st) != 0) bench::os_error("stat", options.file);
  const auto size = static_cast<std::size_t>(st.st_size);
  if (v == "map-crc") {
    // As ckpt maps (private, writable: copy-on-write), read-faulted by the CRC pass: each
    // fault maps the page-cache pages around it (fault-around), nothing is copied.
    // (MAP_POPULATE would pre-fault a writable private mapping for writing: a copy.)
    mapping = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) bench::os_error("mmap", options.file);
    mapping_size = size;
    const auto* bytes = static_cast<const unsigned char*>(mapping);
    for (std::size_t done = 0; done < size; done += kRecord) {
      crc = libdeflate_crc32(crc, bytes + done, std::min(kRecord, size - done));
    }
    total = size;
  } else {
    for (std::size_t offset = 0; offset < size; offset += kRecord) {
      const std::size_t n = std::min(kRecord, size - offset);
      char* into = nullptr;
      if (v == "thp-read-crc") {
        huge.push_back(std::make_unique<HugeBuffer>(n));
        into = huge.back()->data;
      } else {
        storages.push_back(c10::GetCPUAllocator()->allocate(n));
        into = static_cast<char*>(storages.back().get());
      }
      for (std::size_t done = 0; done < n;) {
        ssize_t got = ::pread(fd, into + done, n - done, static_cast<off_t>(offset + done));
        if (got < 0) {
          if (errno == EINTR) continue;
          bench::os_error("read", options.file);
        }
        if (got == 0) throw std::runtime_error("file shrank");
        done += static_cast<std::size_t>(got);
      }
      if (crc_on) crc = libdeflate_crc32(crc, into, n);
      total += n;
    }
  }
  ::close(fd);
  Reading after = Reading::now();
  result.add("variant", v);
  result.add_operation(rss_before, before, after);
  result.add("file_bytes", total);
  result.add("checksum", static_cast<std::uint64_t>(crc));
  if (mapping) ::munmap(mapping, mapping_size);
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  try {
    Result result;
    result.add("tool", "whatif");
    result.add("command", options.command);
    if (options.command == "save") {
      result.add("variant", options.variant);
      save(options, result);
    } else if (options.command == "hash") {
      hash(options, result);
    } else if (options.command == "load") {
      load(options, result);
    }
    result.write(options.json_out);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "format_whatif %s: %s\n", options.command.c_str(), error.what());
    return 1;
  }
  return 0;
}
