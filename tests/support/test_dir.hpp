// Test helpers shared by the core and torch suites: scratch directories, file bytes,
// running a command.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ckpt::test {

// A fresh empty directory under $CKPT_TEST_TMP (or the system temp dir), removed by the
// destructor unless CKPT_KEEP_TEST_DIRS is set.
class TestDir {
 public:
  explicit TestDir(const std::string& label = "case");
  ~TestDir();
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Makes `dir` the working directory until destroyed, then restores the previous one, also
// when the case fails by an exception (a REQUIRE), so later cases of the process do not run
// in a directory a TestDir has removed.
class WorkingDirectory {
 public:
  explicit WorkingDirectory(const std::filesystem::path& dir);
  ~WorkingDirectory();
  WorkingDirectory(const WorkingDirectory&) = delete;
  WorkingDirectory& operator=(const WorkingDirectory&) = delete;

 private:
  std::filesystem::path previous_;
};

std::string read_bytes(const std::filesystem::path& path);
void write_bytes(const std::filesystem::path& path, const std::string& bytes);
// Flips the lowest bit of the byte at `offset` (default: the middle byte) in place: the
// damage a hash check must catch.
void flip_byte(const std::filesystem::path& path, std::optional<std::size_t> offset = std::nullopt);
// Sets a file's modification time `age` into the past.
void age_file(const std::filesystem::path& path, std::chrono::seconds age);
// Sorted names of the regular files directly in `dir`.
std::vector<std::string> file_names(const std::filesystem::path& dir);

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout (append 2>&1 to the command for stderr too)
};
CommandResult run_command(const std::string& command);
// Single-quotes a string for /bin/sh.
std::string shell_quote(const std::string& text);

}  // namespace ckpt::test
