// Power loss at every file-system operation of ckpt::save_file's durable write
// (io::write_file_atomically: temp file, fsync, rename, directory fsync), without tensors.
// A child writes two files several times, each write replacing the previous one; a
// PowerLossFileSystem underneath drops what was not made durable just before the n-th
// operation, for every n, and once more after the last write returned. After the
// "reboot" each path must hold, whole, the bytes of its last write that returned, or
// those of the write in flight; nothing else (not missing, not cut short, not mixed).
// The same sweep with the directory fsync or the file fsync left out must find losses.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <algorithm>
#include <fmt/format.h>
#include <map>
#include <optional>

#include "ckpt/file_system.hpp"
#include "io/atomic_file.hpp"
#include "store/file_names.hpp"
#include "support/power_loss.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

constexpr int kPowerLost = 42;

struct Switches {
  bool skip_file_fsync = false;
  bool skip_dir_fsync = false;
};

// "a.pth", or "a.pth's temp file" for "a.pth.<pid>-<n>.tmp" (whose pid differs between
// the counting run and the sweep's children).
std::string name_of(const std::filesystem::path& path) {
  std::string name = path.filename().string();
  auto pth = name.find(".pth.");
  if (pth != std::string::npos && name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) {
    return name.substr(0, pth + 4) + "'s temp file";
  }
  return name;
}

// PowerLossFileSystem with a counter in front: every operation of a write (create,
// append, fsync, close, rename, remove, directory fsync) is numbered, and just before
// the `cut_before`-th one the power goes (unsynced data dropped, process gone). With
// cut_before 0 it only counts and names the operations. The switches drop one kind of
// fsync, to prove the sweep notices.
class PowerCutFileSystem final : public FileSystem {
 public:
  PowerCutFileSystem(int cut_before, Switches switches) : cut_before_(cut_before), switches_(switches) {}

  std::unique_ptr<WritableFile> create_new(const std::filesystem::path& path) override {
    before("create " + name_of(path));
    return std::make_unique<CountedFile>(*this, real_.create_new(path), name_of(path));
  }
  std::unique_ptr<ReadableFile> open_for_read(const std::filesystem::path& path) override { return real_.open_for_read(path); }
  void rename(const std::filesystem::path& from, const std::filesystem::path& to) override {
    before("rename " + name_of(from) + " to " + name_of(to));
    real_.rename(from, to);
  }
  void remove(const std::filesystem::path& path) override {
    before("remove " + name_of(path));
    real_.remove(path);
  }
  void sync_dir(const std::filesystem::path& dir) override {
    before("fsync directory");
    if (!switches_.skip_dir_fsync) real_.sync_dir(dir);
  }
  void sync_file(const std::filesystem::path& path) override {
    before("fsync " + name_of(path));
    if (!switches_.skip_file_fsync) real_.sync_file(path);
  }
  void create_directories(const std::filesystem::path& dir) override { real_.create_directories(dir); }
  std::vector<std::string> list_files(const std::filesystem::path& dir) override { return real_.list_files(dir); }
  std::optional<std::uint64_t> file_size(const std::filesystem::path& path) override { return real_.file_size(path); }
  std::uint64_t free_space(const std::filesystem::path& dir) override { return real_.free_space(dir); }
  std::unique_ptr<DirectoryLock> lock_exclusive(const std::filesystem::path& lock_file, const std::string& holder) override {
    return real_.lock_exclusive(lock_file, holder);
  }

  // Drops everything not durable and ends the process, as a power loss would.
  [[noreturn]] void lose_power() {
    real_.lose_unsynced();
    ::_exit(kPowerLost);
  }
  const std::vector<std::string>& operations() const { return operations_; }

 private:
  class CountedFile final : public WritableFile {
   public:
    CountedFile(PowerCutFileSystem& fs, std::unique_ptr<WritableFile> real, std::string name)
        : fs_(fs), real_(std::move(real)), name_(std::move(name)) {}
    void append(const void* data, std::size_t n) override {
      fs_.before(fmt::format("append {} bytes to {}", n, name_));
      real_->append(data, n);
    }
    void sync() override {
      fs_.before("fsync " + name_);
      if (!fs_.switches_.skip_file_fsync) real_->sync();
    }
    void close() override {
      fs_.before("close " + name_);
      real_->close();
    }

   private:
    PowerCutFileSystem& fs_;
    std::unique_ptr<WritableFile> real_;
    std::string name_;
  };

  void before(std::string operation) {
    operations_.push_back(std::move(operation));
    if (static_cast<int>(operations_.size()) == cut_before_) lose_power();
  }

  PowerLossFileSystem real_;
  int cut_before_;
  Switches switches_;
  std::vector<std::string> operations_;
};

struct Write {
  std::string file;
  std::string bytes;
};

// Two files, each replaced: larger and smaller than before, and sizes on both sides of
// the 1 MiB write buffer, so some writes are one append and some several.
std::vector<Write> writes() {
  return {{"a.pth", pattern((1 << 20) + 300'000, 1)},
          {"b.pth", pattern(10'000, 2)},
          {"a.pth", pattern(200'000, 3)},
          {"a.pth", pattern((2 << 20) + 12'345, 4)},
          {"b.pth", pattern(5'000, 5)}};
}

// The payload in pieces, as the encoder hands them over: a small header, then the rest.
void write_in_pieces(ByteSink& sink, const std::string& bytes) {
  std::size_t head = std::min<std::size_t>(100, bytes.size());
  sink.write(bytes.data(), head);
  sink.write(bytes.data() + head, bytes.size() - head);
}

// Runs every write through `fs`, sending the number of writes that returned on `ack_fd`
// after each one (-1: don't).
void run_writes(const std::filesystem::path& dir, FileSystem& fs, int ack_fd) {
  int returned = 0;
  for (const auto& write : writes()) {
    // Named as ckpt::save_file names its temp file.
    io::write_file_atomically(fs, dir / write.file, dir / names::temp_file(write.file, ::getpid(), returned + 1),
                              [&](ByteSink& sink) { write_in_pieces(sink, write.bytes); });
    ++returned;
    if (ack_fd >= 0 && ::write(ack_fd, &returned, sizeof returned) != sizeof returned) ::_exit(5);
  }
}

// The writes in a forked child that loses power just before operation `cut_before`
// (or after the last write returned, when there are fewer operations). Returns how many
// writes had returned.
int run_child(const std::filesystem::path& dir, int cut_before, Switches switches) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  int status = run_in_child([&] {
    ::close(pipe_fds[0]);
    PowerCutFileSystem fs(cut_before, switches);
    run_writes(dir, fs, pipe_fds[1]);
    fs.lose_power();
  });
  ::close(pipe_fds[1]);
  int value = 0, returned = 0;
  while (::read(pipe_fds[0], &value, sizeof value) == sizeof value) returned = value;
  ::close(pipe_fds[0]);
  REQUIRE(status == kPowerLost);
  return returned;
}

std::string describe(const std::optional<std::string>& bytes, const std::vector<Write>& all) {
  if (!bytes) return "no file";
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i].bytes == *bytes) return fmt::format("the bytes of write {}", i + 1);
  }
  return fmt::format("{} bytes of no write", bytes->size());
}

// What each path must hold after a power loss once `returned` writes had returned: the
// last returned write's bytes, or the in-flight write's. Returns the problems found.
std::vector<std::string> check_after_power_loss(const std::filesystem::path& dir, int returned) {
  const auto all = writes();
  std::map<std::string, std::vector<std::optional<std::string>>> allowed;
  for (const auto& write : all) allowed[write.file] = {std::nullopt};
  for (int i = 0; i < returned; ++i) allowed[all[i].file] = {all[i].bytes};
  if (returned < static_cast<int>(all.size())) allowed[all[returned].file].push_back(all[returned].bytes);

  std::vector<std::string> problems;
  for (const auto& [file, options] : allowed) {
    std::optional<std::string> actual;
    if (std::filesystem::exists(dir / file)) actual = read_bytes(dir / file);
    bool ok = false;
    for (const auto& option : options) ok = ok || option == actual;
    if (!ok) {
      std::string expected;
      for (const auto& option : options) expected += (expected.empty() ? "" : " or ") + describe(option, all);
      problems.push_back(fmt::format("{} holds {}, expected {} ({} writes had returned)", file, describe(actual, all),
                                     expected, returned));
    }
  }
  return problems;
}

struct SweepResult {
  int power_cuts = 0;
  std::vector<std::string> violations;
};

SweepResult sweep(Switches switches) {
  std::vector<std::string> operations;
  {
    TestDir dir("save-file-count");
    PowerCutFileSystem counting(0, switches);
    run_writes(dir.path(), counting, -1);
    operations = counting.operations();
  }
  SweepResult result;
  // Before each operation, then once after the last write returned.
  for (int cut = 1; cut <= static_cast<int>(operations.size()) + 1; ++cut) {
    TestDir dir("save-file-power");
    int returned = run_child(dir.path(), cut, switches);
    ++result.power_cuts;
    std::string where = cut <= static_cast<int>(operations.size())
                            ? fmt::format("power lost before operation {} ({})", cut, operations[cut - 1])
                            : "power lost after the last write returned";
    for (const auto& problem : check_after_power_loss(dir.path(), returned)) result.violations.push_back(where + ": " + problem);
  }
  if (std::getenv("CKPT_REPORT")) {
    std::printf("save_file power-loss sweep (skip file fsync %d, skip dir fsync %d): %d power cuts, %zu violations\n",
                switches.skip_file_fsync, switches.skip_dir_fsync, result.power_cuts, result.violations.size());
    for (std::size_t i = 0; i < result.violations.size() && i < 3; ++i) std::printf("  e.g. %s\n", result.violations[i].c_str());
  }
  return result;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  return text;
}

}  // namespace

TEST_CASE("save_file's write survives a power loss at every operation: each path holds the last returned or the "
          "in-flight write, whole",
          "[save-file][power-loss]") {
  SweepResult result = sweep({});
  INFO(joined(result.violations));
  CHECK(result.violations.empty());
  // Five writes of at least six operations each, plus the cut after the last one.
  CHECK(result.power_cuts > 30);
}

TEST_CASE("the save_file power-loss sweep notices when the directory fsync is missing", "[save-file][power-loss][mutation]") {
  SweepResult result = sweep({false, /*skip_dir_fsync=*/true});
  CHECK(!result.violations.empty());
}

TEST_CASE("the save_file power-loss sweep notices when the file fsync is missing", "[save-file][power-loss][mutation]") {
  SweepResult result = sweep({/*skip_file_fsync=*/true, false});
  CHECK(!result.violations.empty());
}
