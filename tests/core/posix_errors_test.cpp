// Real POSIX error paths, through FileSystem::posix() and CheckpointStore, with nothing
// simulated by the project's own seam: the kernel refuses (a file-size limit, a path
// through a regular file, a full tmpfs, a user without write permission), or an
// LD_PRELOAD library (tests/support/fault_preload.c) fails a real system call of a fresh
// process that runs a scripted sequence on the store (tests/support/store_script.cpp).
// Each case checks what a user sees: an error naming the file and the cause, the right
// code and errno, and that nothing committed is lost (the previous checkpoint loads, the
// invariants hold after a reopen).
//
// Cases that change credentials, limits or mounts run in a forked child; a child cannot
// run Catch2 assertions, so it records named facts that the parent checks.
#include <catch2/catch.hpp>

#include <SQLiteCpp/SQLiteCpp.h>

#include <fcntl.h>
#include <grp.h>
#include <link.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ckpt/errors.hpp"
#include "ckpt/store.hpp"
#include "io/hasher.hpp"
#include "support/cli_support.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

extern char** environ;

using namespace ckpt;
using namespace ckpt::test;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string hash_of(const std::string& bytes) {
  auto hasher = io::Hasher::create(HashAlgorithm::xxh3_128);
  hasher->update(bytes.data(), bytes.size());
  return hasher->hex_digest();
}

int count_of(const std::string& text, const std::string& part) {
  int n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : " ") + item;
  return text;
}

std::string loaded_hash(const std::optional<VerifiedPayload>& loaded) {
  return loaded ? hash_of(std::string(loaded->bytes.begin(), loaded->bytes.end())) : "none";
}

std::string temp_files(const std::filesystem::path& dir) {
  std::vector<std::string> temps;
  for (const auto& name : file_names(dir)) {
    if (contains(name, ".tmp")) temps.push_back(name);
  }
  return join(temps);
}

std::string code_text(ErrorCode code) { return std::to_string(static_cast<int>(code)); }

// ---- facts from a forked child ----

using Facts = std::map<std::string, std::string>;

void record_error(Facts& facts, const std::string& key, const Error& error) {
  facts[key + ".what"] = error.what();
  facts[key + ".code"] = code_text(error.code());
  facts[key + ".errno"] = std::to_string(error.os_error());
  facts[key + ".path"] = error.path().string();
}

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out;
}

std::string unescape(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      char next = text[++i];
      out += next == 'n' ? '\n' : next == 't' ? '\t' : next;
    } else {
      out += text[i];
    }
  }
  return out;
}

// Runs `body` in a forked child and returns the facts it recorded, plus "exit" (its exit
// status) and "uncaught" (what escaped it, if anything).
Facts in_child(const std::function<void(Facts&)>& body) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    Facts facts;
    try {
      body(facts);
    } catch (const std::exception& error) {
      facts["uncaught"] = error.what();
    } catch (...) {
      facts["uncaught"] = "an exception that is not a std::exception";
    }
    std::string text;
    for (const auto& [key, value] : facts) text += key + '\t' + escape(value) + '\n';
    for (std::size_t done = 0; done < text.size();) {
      ssize_t n = ::write(fds[1], text.data() + done, text.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  Facts facts;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = text.find('\n', start);
    std::string line = text.substr(start, end - start);
    std::size_t tab = line.find('\t');
    if (tab != std::string::npos) facts[line.substr(0, tab)] = unescape(line.substr(tab + 1));
    start = end == std::string::npos ? text.size() : end + 1;
  }
  facts["exit"] = WIFEXITED(status) ? std::to_string(WEXITSTATUS(status)) : "signal " + std::to_string(WTERMSIG(status));
  return facts;
}

// Mounts a tmpfs of `size` on `dir` inside a mount namespace of this (forked) process's
// own, so the mount vanishes with the process and never shows in the parent's view.
// As root that is `unshare -m`; without CAP_SYS_ADMIN, a user namespace as well
// (`unshare -Urm`). Returns why it could not, or "" when mounted.
std::string mount_private_tmpfs(const std::filesystem::path& dir, const std::string& size) {
  std::string why;
  if (::unshare(CLONE_NEWNS) != 0) {
    why = std::string("unshare(CLONE_NEWNS) (unshare -m): ") + std::strerror(errno);
    uid_t uid = ::geteuid();
    gid_t gid = ::getegid();
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
      return why + "; unshare(CLONE_NEWUSER | CLONE_NEWNS) (unshare -Urm): " + std::strerror(errno);
    }
    try {
      write_bytes("/proc/self/setgroups", "deny");
      write_bytes("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1");
      write_bytes("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1");
    } catch (const std::exception& error) {
      return why + "; mapping the user namespace: " + error.what();
    }
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return std::string("making / private in the new mount namespace: ") + std::strerror(errno);
  }
  const std::string options = "size=" + size;
  if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    return "mount -t tmpfs -o " + options + " " + dir.string() + ": " + std::strerror(errno);
  }
  return "";
}

// ---- the scripted store under LD_PRELOAD ----

struct ScriptRun {
  int exit_code = -1;
  std::vector<std::string> lines;  // stdout
  std::string err;                 // stderr: the preload's reports and the store's log

  bool has(const std::string& line) const { return std::find(lines.begin(), lines.end(), line) != lines.end(); }
  // The first stdout line starting with `prefix`, or "".
  std::string line(const std::string& prefix) const {
    for (const auto& each : lines) {
      if (each.rfind(prefix, 0) == 0) return each;
    }
    return "";
  }
  // Whether a log line (not the preload's own report) contains every part.
  bool logged(const std::vector<std::string>& parts) const {
    std::size_t start = 0;
    while (start < err.size()) {
      std::size_t end = err.find('\n', start);
      std::string each = err.substr(start, end == std::string::npos ? std::string::npos : end - start);
      start = end == std::string::npos ? err.size() : end + 1;
      if (each.rfind("ckpt_fault_preload:", 0) == 0) continue;
      bool all = true;
      for (const auto& part : parts) all = all && contains(each, part);
      if (all) return true;
    }
    return false;
  }
};

// The sanitizer runtime this process loaded dynamically, if any. ASan insists on coming
// first in the library list, so a child exec'd under LD_PRELOAD must preload it first.
std::string sanitizer_runtime() {
  std::string found;
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        std::string name = info->dlpi_name != nullptr ? info->dlpi_name : "";
        if (contains(name, "libasan.so") || contains(name, "libclang_rt.asan")) {
          *static_cast<std::string*>(data) = name;
          return 1;
        }
        return 0;
      },
      &found);
  return found;
}

// Runs ckpt_store_script on `store_dir` with the fault library preloaded and `fault`
// (CKPT_FAULT_* variables) in its environment. Its output goes to files in `out_dir`,
// outside the store directory, so that a fault aimed at the store never hits them.
ScriptRun run_script(const std::filesystem::path& out_dir, const std::filesystem::path& store_dir,
                     const std::vector<std::string>& commands,
                     const std::vector<std::pair<std::string, std::string>>& fault) {
  const std::filesystem::path out = out_dir / "script.stdout";
  const std::filesystem::path err = out_dir / "script.stderr";
  std::vector<std::string> args{CKPT_STORE_SCRIPT, store_dir.string()};
  args.insert(args.end(), commands.begin(), commands.end());

  std::string preload = CKPT_FAULT_PRELOAD;
  if (std::string runtime = sanitizer_runtime(); !runtime.empty()) preload = runtime + ":" + preload;
  std::vector<std::string> env;
  for (char** each = environ; *each != nullptr; ++each) {
    std::string entry = *each;
    if (entry.rfind("CKPT_FAULT_", 0) == 0) continue;
    if (entry.rfind("LD_PRELOAD=", 0) == 0) {
      preload += ":" + entry.substr(11);
      continue;
    }
    env.push_back(entry);
  }
  env.push_back("LD_PRELOAD=" + preload);
  for (const auto& [name, value] : fault) env.push_back(name + "=" + value);

  std::vector<char*> argv, envp;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  for (auto& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  int spawned = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  ::posix_spawn_file_actions_destroy(&actions);
  REQUIRE(spawned == 0);
  int status = 0;
  ::waitpid(pid, &status, 0);

  ScriptRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::string text = read_bytes(out);
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = text.find('\n', start);
    run.lines.push_back(text.substr(start, end - start));
    start = end == std::string::npos ? text.size() : end + 1;
  }
  run.err = read_bytes(err);
  INFO("script stdout:\n" << text << "script stderr:\n" << run.err);
  return run;
}

// What the script prints for a loaded or saved checkpoint.
std::string script_record(const char* verb, const char* kind, const std::string& epoch, const std::string& file,
                          const std::string& bytes) {
  return std::string(verb) + " " + kind + " " + epoch + " " + file + " " + hash_of(bytes);
}

// The CKPT_FAULT_* variables that fail the calls `call` on paths matching `path` with `errno_name`.
std::vector<std::pair<std::string, std::string>> fault_on(const std::string& call, const std::string& path,
                                                          const std::string& errno_name) {
  return {{"CKPT_FAULT_CALL", call}, {"CKPT_FAULT_PATH", path}, {"CKPT_FAULT_ERRNO", errno_name}};
}

// A script run's output, for INFO.
std::string transcript(const ScriptRun& run) { return "stdout:\n" + join(run.lines) + "\nstderr:\n" + run.err; }

// Creates a store in `dir` holding epoch 1 and returns that epoch's bytes.
std::string store_with_epoch1(const std::filesystem::path& dir, StoreOptions options = {}) {
  const std::string first = zip_payload(1);
  CheckpointStore store(dir, std::move(options));
  save_epoch(store, 1, first);
  return first;
}

// Checks that the script's error line is an IoError with `error_number`, naming `where`.
void check_io_error(const std::string& error, int error_number, const std::string& where) {
  INFO("error line: " << error);
  CHECK(error.rfind("error io " + std::to_string(error_number) + " ", 0) == 0);
  CHECK(contains(error, where));
  CHECK(contains(error, std::strerror(error_number)));
}

// Reopens `dir` (recovery runs), checks that the latest checkpoint is `latest_bytes`, and,
// once it is closed, that the invariants hold.
void check_intact_after_reopen(const std::filesystem::path& dir, const std::string& latest_bytes) {
  {
    CheckpointStore store(dir);
    auto loaded = store.load_latest();
    REQUIRE(loaded);
    CHECK(loaded_hash(loaded) == hash_of(latest_bytes));
  }
  auto violations = invariant_violations(dir);
  INFO("violations: " << join(violations));
  CHECK(violations.empty());
}

}  // namespace

TEST_CASE("a write beyond RLIMIT_FSIZE fails the save with EFBIG naming the file; the previous checkpoint loads",
          "[posix]") {
  TestDir dir("posix");
  const std::string first = zip_payload(1);
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 1, first);
  }
  Facts facts = in_child([&](Facts& f) {
    CheckpointStore store(dir.path());
    ::signal(SIGXFSZ, SIG_IGN);  // else the kernel kills the process instead of failing write()
    rlimit limit{256 * 1024, 256 * 1024};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) f["setrlimit"] = std::strerror(errno);
    try {
      save_epoch(store, 2, zip_payload(2, 2 * kMiB));
      f["save"] = "returned";
    } catch (const Error& error) {
      record_error(f, "save", error);
    }
    f["temp_files"] = temp_files(dir.path());
    f["latest"] = loaded_hash(store.load_latest());
  });
  INFO("uncaught in child: " << facts["uncaught"]);
  REQUIRE(facts["exit"] == "0");
  REQUIRE(facts["uncaught"].empty());
  REQUIRE(facts["setrlimit"].empty());
  CHECK(facts["save"].empty());
  CHECK(facts["save.code"] == code_text(ErrorCode::io));
  CHECK(facts["save.errno"] == std::to_string(EFBIG));
  CHECK(contains(facts["save.what"], (dir / "checkpoint_epoch_2.pth").string()));
  CHECK(contains(facts["save.what"], std::strerror(EFBIG)));
  CHECK(contains(facts["save.path"], "checkpoint_epoch_2.pth"));
  CHECK(facts["temp_files"].empty());
  CHECK(facts["latest"] == hash_of(first));
  CHECK(!std::filesystem::exists(dir / "checkpoint_epoch_2.pth"));
  check_intact_after_reopen(dir.path(), first);
}

TEST_CASE("a checkpoint directory below a regular file fails to open with ENOTDIR naming the file", "[posix]") {
  TestDir dir("posix");
  const std::string first = zip_payload(1);
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 1, first);
  }
  const std::filesystem::path file = dir / "checkpoint_epoch_1.pth";
  for (const auto& target : {file / "run2", file}) {
    INFO("opening " << target);
    try {
      CheckpointStore store(target);
      FAIL("opened a store at " << target);
    } catch (const IoError& error) {
      CHECK(error.code() == ErrorCode::io);
      CHECK(error.os_error() == ENOTDIR);
      CHECK(error.path() == file);
      CHECK(contains(error.what(), file.string()));
      CHECK(contains(error.what(), std::strerror(ENOTDIR)));
    }
  }
  CHECK(read_bytes(file) == first);
  check_intact_after_reopen(dir.path(), first);
}

TEST_CASE("a full tmpfs fails the save with disk_full (checked before writing, and ENOSPC from write itself)",
          "[posix]") {
  TestDir dir("posix");
  const std::string first = zip_payload(1);
  Facts facts = in_child([&](Facts& f) {
    std::string why = mount_private_tmpfs(dir.path(), "4m");
    if (!why.empty()) {
      f["skip"] = why;
      return;
    }
    {
      CheckpointStore store(dir.path());
      save_epoch(store, 1, first);
      // An honest size hint: refused before a byte is written.
      try {
        save_epoch(store, 2, zip_payload(2, 8 * kMiB));
        f["hinted"] = "returned";
      } catch (const Error& error) {
        record_error(f, "hinted", error);
      }
      f["hinted.files"] = join(file_names(dir.path()));
      // A payload larger than its hint passes the check and meets ENOSPC from write().
      const std::string big = zip_payload(3, 8 * kMiB);
      try {
        store.save(CheckpointKind::epoch, 2, std::nullopt, /*size_hint=*/0,
                   [&](ByteSink& sink) { sink.write(big.data(), big.size()); });
        f["unhinted"] = "returned";
      } catch (const Error& error) {
        record_error(f, "unhinted", error);
      }
      f["unhinted.temp_files"] = temp_files(dir.path());
      f["latest"] = loaded_hash(store.load_latest());
    }
    {
      CheckpointStore reopened(dir.path());
      f["reopened.latest"] = loaded_hash(reopened.load_latest());
      f["reopened.live"] = std::to_string(reopened.live_checkpoints().size());
    }
    f["violations"] = join(invariant_violations(dir.path()));
  });
  if (!facts["skip"].empty()) {
    WARN("full-tmpfs case skipped: cannot mount a tmpfs here (" << facts["skip"] << ")");
    return;
  }
  INFO("uncaught in child: " << facts["uncaught"]);
  REQUIRE(facts["exit"] == "0");
  REQUIRE(facts["uncaught"].empty());
  const std::string epoch2 = (dir / "checkpoint_epoch_2.pth").string();

  CHECK(facts["hinted"].empty());
  CHECK(facts["hinted.code"] == code_text(ErrorCode::disk_full));
  CHECK(facts["hinted.errno"] == std::to_string(ENOSPC));
  CHECK(contains(facts["hinted.what"], epoch2));
  CHECK(contains(facts["hinted.what"], "free space"));
  CHECK(contains(facts["hinted.files"], "checkpoint_epoch_1.pth"));
  CHECK(!contains(facts["hinted.files"], "checkpoint_epoch_2.pth"));  // not even a temp file

  CHECK(facts["unhinted"].empty());
  CHECK(facts["unhinted.code"] == code_text(ErrorCode::disk_full));
  CHECK(facts["unhinted.errno"] == std::to_string(ENOSPC));
  CHECK(contains(facts["unhinted.what"], epoch2));
  CHECK(contains(facts["unhinted.what"], std::strerror(ENOSPC)));
  CHECK(facts["unhinted.temp_files"].empty());

  CHECK(facts["latest"] == hash_of(first));
  CHECK(facts["reopened.latest"] == hash_of(first));
  CHECK(facts["reopened.live"] == "1");
  CHECK(facts["violations"].empty());
}

TEST_CASE("as a user without write permission: the open is refused and a save fails with EACCES; nothing is lost",
          "[posix]") {
  TestDir own("posix");         // the user's own store, made read-only while it is open
  TestDir others("posix");      // root's store, which the user cannot write at all
  const std::string first = zip_payload(1);
  {
    CheckpointStore store(others.path());
    save_epoch(store, 1, first);
  }
  // As root the child becomes `nobody`; a non-root run is already such a user, but then
  // has no other user's store to be refused by.
  const bool as_root = ::geteuid() == 0;
  const passwd* nobody = ::getpwnam("nobody");
  const uid_t uid = nobody != nullptr ? nobody->pw_uid : 65534;
  const gid_t gid = nobody != nullptr ? nobody->pw_gid : 65534;
  if (as_root) REQUIRE(::chown(own.path().c_str(), uid, gid) == 0);

  Facts facts = in_child([&](Facts& f) {
    if (as_root && (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)) {
      f["setuid"] = std::strerror(errno);
      return;
    }
    if (::access(own.path().c_str(), W_OK | X_OK) != 0) {
      f["skip"] = own.path().string() + " is not reachable as uid " + std::to_string(::geteuid()) + ": " +
                  std::strerror(errno) + " (set CKPT_TEST_TMP to a directory every user can traverse)";
      return;
    }
    if (as_root) {
      try {
        CheckpointStore store(others.path());
        f["others"] = "opened";
      } catch (const Error& error) {
        record_error(f, "others", error);
      }
    }
    {
      CheckpointStore store(own.path());
      save_epoch(store, 1, first);
      ::chmod(own.path().c_str(), 0555);
      try {
        save_epoch(store, 2, zip_payload(2));
        f["save"] = "returned";
      } catch (const Error& error) {
        record_error(f, "save", error);
      }
      f["latest"] = loaded_hash(store.load_latest());
      ::chmod(own.path().c_str(), 0755);
    }
  });
  if (!facts["skip"].empty()) {
    WARN("EACCES case skipped: " << facts["skip"]);
    return;
  }
  INFO("uncaught in child: " << facts["uncaught"]);
  REQUIRE(facts["exit"] == "0");
  REQUIRE(facts["setuid"].empty());
  REQUIRE(facts["uncaught"].empty());

  if (as_root) {
    CHECK(facts["others"].empty());
    CHECK(facts["others.code"] == code_text(ErrorCode::permission_denied));
    CHECK(facts["others.errno"] == std::to_string(EACCES));
    CHECK(contains(facts["others.what"], others.path().string()));
    CHECK(contains(facts["others.what"], std::strerror(EACCES)));
  } else {
    WARN("not root: the refusal of another user's store is not tested");
  }

  CHECK(facts["save"].empty());
  CHECK(facts["save.code"] == code_text(ErrorCode::permission_denied));
  CHECK(facts["save.errno"] == std::to_string(EACCES));
  CHECK(contains(facts["save.what"], (own / "checkpoint_epoch_2.pth").string()));
  CHECK(contains(facts["save.what"], std::strerror(EACCES)));
  CHECK(facts["latest"] == hash_of(first));

  CHECK(temp_files(own.path()).empty());
  check_intact_after_reopen(own.path(), first);
  check_intact_after_reopen(others.path(), first);
}

TEST_CASE("fsync of the temp file failing with EIO (LD_PRELOAD) fails the save; the previous checkpoint loads",
          "[posix][preload]") {
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  const std::string first = store_with_epoch1(dir);
  ScriptRun run = run_script(root.path(), dir, {"save-epoch", "2", "2", "load-latest"},
                             fault_on("fsync", "*/checkpoint_epoch_2.pth.*.tmp", "EIO"));
  INFO(transcript(run));
  CHECK(contains(run.err, "ckpt_fault_preload: injected EIO into fsync(" + (dir / "checkpoint_epoch_2.pth.").string()));
  CHECK(run.exit_code == 1);
  CHECK(run.has("step temp_written"));
  CHECK(!run.has("step temp_synced"));
  std::string error = run.line("error ");
  check_io_error(error, EIO, (dir / "checkpoint_epoch_2.pth.").string());
  CHECK(contains(error, "fsync"));
  CHECK(run.has(script_record("loaded", "epoch", "1", "checkpoint_epoch_1.pth", first)));

  CHECK(temp_files(dir).empty());
  CHECK(!std::filesystem::exists(dir / "checkpoint_epoch_2.pth"));
  check_intact_after_reopen(dir, first);
}

TEST_CASE("a rename interrupted by a signal (EINTR, LD_PRELOAD) is retried: the save succeeds", "[posix][preload]") {
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  store_with_epoch1(dir);
  ScriptRun run = run_script(root.path(), dir, {"save-epoch", "2", "2", "load-latest"},
                             fault_on("rename", "*/checkpoint_epoch_2.pth.*.tmp", "EINTR"));
  INFO(transcript(run));
  CHECK(contains(run.err, "ckpt_fault_preload: injected EINTR into rename("));
  CHECK(run.exit_code == 0);
  CHECK(run.line("error ").empty());
  CHECK(run.has(script_record("loaded", "epoch", "2", "checkpoint_epoch_2.pth", zip_payload(2))));
  CHECK(temp_files(dir).empty());
}

TEST_CASE("fsync of the directory failing with EIO (LD_PRELOAD) fails the save; no checkpoint is lost",
          "[posix][preload]") {
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  const std::string epoch1 = zip_payload(1), old_best = zip_payload(100), new_best = zip_payload(101);
  {
    CheckpointStore store(dir);
    save_epoch(store, 1, epoch1);
    save_bytes(store, CheckpointKind::best, std::nullopt, old_best, 0.5);
  }
  // Replacing the best model: after the rename the name holds the new bytes, but the
  // rename is not durable; the old row and file must not be retired on its strength.
  ScriptRun run = run_script(root.path(), dir, {"save-best", "101", "load-best", "load-latest"},
                             fault_on("fsync", dir.string(), "EIO"));
  INFO(transcript(run));
  CHECK(contains(run.err, "ckpt_fault_preload: injected EIO into fsync(" + dir.string() + ")"));
  CHECK(run.exit_code == 1);
  CHECK(run.has("step renamed"));
  CHECK(!run.has("step dir_synced"));
  CHECK(!run.has("step committed"));
  CHECK(run.line("saved ").empty());
  check_io_error(run.line("error "), EIO, dir.string() + ": fsync directory");
  // In the same process the best model is the old or the new one, or the store asks for
  // a reopen; never gone.
  CHECK(!run.has("loaded none"));
  CHECK(!std::filesystem::exists(dir / "quarantine"));

  CHECK(temp_files(dir).empty());
  {
    CheckpointStore store(dir);
    std::string best = loaded_hash(store.load_best());
    CHECK((best == hash_of(old_best) || best == hash_of(new_best)));
    CHECK(loaded_hash(store.load_latest()) == hash_of(epoch1));
  }
  CHECK(!std::filesystem::exists(dir / "quarantine"));
  CHECK(invariant_violations(dir).empty());
}

TEST_CASE("a failed directory fsync marks nothing for deletion: the epoch it would rotate out stays (LD_PRELOAD)",
          "[posix][preload]") {
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  const std::string epoch1 = store_with_epoch1(dir, StoreOptions{1});
  ScriptRun run = run_script(root.path(), dir, {"keep=1", "save-epoch", "2", "2", "list"},
                             fault_on("fsync", dir.string(), "EIO"));
  INFO(transcript(run));
  CHECK(contains(run.err, "ckpt_fault_preload: injected EIO into fsync(" + dir.string() + ")"));
  CHECK(run.has("step renamed"));
  CHECK(!run.has("step dir_synced"));
  CHECK(contains(run.line("error "), dir.string() + ": fsync directory"));
  // The rename of epoch 2 may be lost to a power loss: epoch 1 is still the checkpoint to
  // fall back on, on disk and committed.
  CHECK(read_bytes(dir / "checkpoint_epoch_1.pth") == epoch1);
  bool epoch1_committed = false;
  for (const auto& row : index_rows(dir)) {
    if (row.file == "checkpoint_epoch_1.pth" && row.status == "committed") epoch1_committed = true;
  }
  CHECK(epoch1_committed);
  for (const auto& row : index_rows(dir)) CHECK(row.status != "deleting");
  // The reopen decides: the rename made durable now (epoch 2, which then rotates epoch 1
  // out) or not (epoch 1). Either way whole and verified.
  {
    CheckpointStore store(dir, StoreOptions{1});
    std::string latest = loaded_hash(store.load_latest());
    CHECK((latest == hash_of(epoch1) || latest == hash_of(zip_payload(2))));
  }
  CHECK(!std::filesystem::exists(dir / "quarantine"));
  CHECK(invariant_violations(dir).empty());
}

TEST_CASE("fsync of the index (SQLite's WAL) failing with EIO (LD_PRELOAD) fails the save; the previous checkpoint loads",
          "[posix][preload]") {
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  const std::string first = store_with_epoch1(dir);
  // SQLite syncs with fdatasync; the store's files use fsync. Only the WAL is failed.
  ScriptRun run = run_script(root.path(), dir, {"open", "save-epoch", "2", "2"},
                             fault_on("fsync,fdatasync", "*/index.sqlite-wal", "EIO"));
  INFO(transcript(run));
  CHECK(contains(run.err, "ckpt_fault_preload: injected EIO into fdatasync(" + (dir / "index.sqlite-wal").string()));
  CHECK(run.exit_code == 1);
  CHECK(run.has("opened"));
  CHECK(run.has("step temp_synced"));
  CHECK(!run.has("step pending_committed"));
  CHECK(!run.has("step renamed"));
  std::string error = run.line("error ");
  CHECK(error.rfind("error index ", 0) == 0);
  CHECK(contains(error, (dir / "index.sqlite").string()));
  CHECK(contains(error, "I/O error"));

  CHECK(temp_files(dir).empty());
  CHECK(!std::filesystem::exists(dir / "checkpoint_epoch_2.pth"));
  check_intact_after_reopen(dir, first);
}

TEST_CASE("EIO reading the newest checkpoint (LD_PRELOAD) is not corruption: logged, left in place, the next loads",
          "[posix][preload]") {
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  const std::string epoch1 = zip_payload(1), epoch2 = zip_payload(2), best = zip_payload(50);
  {
    CheckpointStore store(dir);
    save_epoch(store, 1, epoch1);
    save_epoch(store, 2, epoch2);
    save_bytes(store, CheckpointKind::best, std::nullopt, best, 0.9);
  }
  auto read_fault_on_epoch2 = fault_on("read,pread", "*/checkpoint_epoch_2.pth", "EIO");
  read_fault_on_epoch2.emplace_back("CKPT_FAULT_TIMES", "0");
  ScriptRun latest = run_script(root.path(), dir, {"load-latest", "list"}, read_fault_on_epoch2);
  {
    INFO(transcript(latest));
    CHECK(contains(latest.err, "ckpt_fault_preload: injected EIO into"));
    CHECK(latest.exit_code == 0);
    CHECK(latest.has(script_record("loaded", "epoch", "1", "checkpoint_epoch_1.pth", epoch1)));
    CHECK(latest.logged({(dir / "checkpoint_epoch_2.pth").string(), std::strerror(EIO)}));
    CHECK(latest.has("row epoch 2 checkpoint_epoch_2.pth committed"));
  }

  auto read_fault_on_best = fault_on("read,pread", "*/best_model.pth", "EIO");
  read_fault_on_best.emplace_back("CKPT_FAULT_TIMES", "0");
  ScriptRun best_run = run_script(root.path(), dir, {"load-best", "list"}, read_fault_on_best);
  {
    INFO(transcript(best_run));
    CHECK(contains(best_run.err, "ckpt_fault_preload: injected EIO into"));
    // nullopt with the error logged, or an IoError naming the file and the cause.
    std::string error = best_run.line("error ");
    if (error.empty()) {
      CHECK(best_run.has("loaded none"));
      CHECK(best_run.logged({(dir / "best_model.pth").string(), std::strerror(EIO)}));
    } else {
      check_io_error(error, EIO, (dir / "best_model.pth").string());
    }
    CHECK(best_run.has("row best - best_model.pth committed"));
  }

  CHECK(!std::filesystem::exists(dir / "quarantine"));
  CHECK(read_bytes(dir / "checkpoint_epoch_2.pth") == epoch2);
  CHECK(read_bytes(dir / "best_model.pth") == best);
  for (const auto& event : index_events(dir)) CHECK(event != "quarantined");
  {
    CheckpointStore store(dir);
    CHECK(loaded_hash(store.load_latest()) == hash_of(epoch2));
    CHECK(loaded_hash(store.load_best()) == hash_of(best));
  }
  CHECK(invariant_violations(dir).empty());
}

// Catches Index::prepared() resetting a cached statement with SQLiteCpp's reset(), which
// rethrows the error of that statement's last step: the COMMIT after a failed one failed
// again with the stale "disk I/O error".
TEST_CASE("after a failed index commit (LD_PRELOAD) the same store still loads and saves", "[posix][preload]") {
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  const std::string first = store_with_epoch1(dir), third = zip_payload(3);
  // Only the first sync of the WAL fails; SQLite itself recovers at once (its next
  // commit succeeds), so the store must too, without a reopen.
  ScriptRun run = run_script(root.path(), dir, {"open", "save-epoch", "2", "2", "load-latest", "save-epoch", "3", "3"},
                             fault_on("fdatasync", "*/index.sqlite-wal", "EIO"));
  INFO(transcript(run));
  CHECK(contains(run.err, "ckpt_fault_preload: injected EIO into fdatasync("));
  CHECK(run.line("error ").rfind("error index ", 0) == 0);
  CHECK(run.has(script_record("loaded", "epoch", "1", "checkpoint_epoch_1.pth", first)));
  CHECK(run.has(script_record("saved", "epoch", "3", "checkpoint_epoch_3.pth", third)));
  check_intact_after_reopen(dir, third);
}

TEST_CASE("readdir failing at any entry (LD_PRELOAD) fails the open with an IoError naming the directory",
          "[posix][preload]") {
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  const std::string second = zip_payload(2);
  {
    CheckpointStore store(dir);
    save_epoch(store, 1, zip_payload(1));
    save_epoch(store, 2, second);
  }
  // Recovery lists the directory when it opens: fail its 1st, 2nd, ... readdir, so the
  // failure comes both from the first read (in the iterator's constructor) and from
  // later ones (in increment, which once escaped as std::filesystem::filesystem_error).
  for (int nth = 1; nth <= 6; ++nth) {
    auto readdir_fault = fault_on("readdir", dir.string(), "EIO");
    readdir_fault.emplace_back("CKPT_FAULT_NTH", std::to_string(nth));
    ScriptRun run = run_script(root.path(), dir, {"open"}, readdir_fault);
    INFO("failing readdir call " << nth << "\n" << transcript(run));
    CHECK(contains(run.err, "ckpt_fault_preload: injected EIO into readdir(" + dir.string() + ")"));
    CHECK(run.line("exception ").empty());
    CHECK(run.has("error io " + std::to_string(EIO) + " " + dir.string() + ": list directory failed: " +
                  std::strerror(EIO)));
  }
  check_intact_after_reopen(dir, second);
}

TEST_CASE("where the directory cannot be flocked (EBADF, as on NFS; LD_PRELOAD) the writer locks index.lock only",
          "[posix][preload][lock]") {
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  std::filesystem::create_directories(dir);
  auto no_directory_flock = fault_on("flock", dir.string(), "EBADF");
  no_directory_flock.emplace_back("CKPT_FAULT_TIMES", "0");
  const std::string first = zip_payload(1);
  const std::string gc = "env -u LD_PRELOAD " + std::string(CKPT_CLI) + " gc --keep 1 " + shell_quote(dir.string()) +
                         " >" + shell_quote((root / "gc.out").string()) + " 2>&1";

  // It opens and saves; a second writer, in the same process or another (a ckpt gc, whose
  // directory flock succeeds), is refused by index.lock.
  ScriptRun run = run_script(root.path(), dir,
                             {"save-epoch", "1", "1", "save-epoch", "2", "2", "second-writer", "shell", gc},
                             no_directory_flock);
  CHECK(contains(run.err, "ckpt_fault_preload: injected EBADF into flock(" + dir.string() + ")"));
  CHECK(run.logged({"[warning]", dir.string(), "cannot be flocked", "locking only index.lock"}));
  CHECK(run.exit_code == 0);
  CHECK(run.has(script_record("saved", "epoch", "1", "checkpoint_epoch_1.pth", first)));
  CHECK(run.has(script_record("saved", "epoch", "2", "checkpoint_epoch_2.pth", zip_payload(2))));
  CHECK(contains(run.line("second-writer "), "second-writer refused locked"));
  CHECK(run.has("shell 3"));
  const std::string gc_output = read_bytes(root / "gc.out");
  INFO("ckpt gc: " << gc_output);
  CHECK(contains(gc_output, "locked"));
  CHECK(std::filesystem::exists(dir / "checkpoint_epoch_1.pth"));

  // And it is refused itself while another process holds the lock.
  {
    CheckpointStore holder(dir);
    ScriptRun refused = run_script(root.path(), dir, {"open"}, no_directory_flock);
    CHECK(refused.exit_code == 1);
    CHECK(contains(refused.line("error "), "error locked"));
  }
  check_intact_after_reopen(dir, zip_payload(2));
}

TEST_CASE("a file system without hard links (link(2) failing, LD_PRELOAD): saves write, said once, naming both files",
          "[posix][preload][dedupe]") {
  const std::string error = GENERATE(as<std::string>{}, "EXDEV", "EPERM", "EMLINK", "EOPNOTSUPP", "ENOSYS");
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  auto fault = fault_on("link", "*", error);
  fault.emplace_back("CKPT_FAULT_TIMES", "0");
  ScriptRun run = run_script(root.path(), dir,
                             {"save-epoch", "1", "7", "save-best", "7", "save-epoch", "2", "8", "save-best", "8", "load-best"},
                             fault);
  INFO(transcript(run));
  CHECK(run.exit_code == 0);
  CHECK(run.line("error ").empty());
  // Asked once: the store does not try again.
  CHECK(count_of(run.err, "ckpt_fault_preload: injected " + error + " into link(") == 1);
  CHECK(count_of(run.err, "no hard links here") == 1);
  CHECK(run.logged({"no hard links here", (dir / "checkpoint_epoch_1.pth").string(), "best_model.pth.", "hard link to"}));
  CHECK(!run.has("step temp_linked"));
  CHECK(run.has(script_record("loaded", "best", "-", "best_model.pth", zip_payload(8))));
  check_intact_after_reopen(dir, zip_payload(8));
}

TEST_CASE("link(2) failing with EIO (LD_PRELOAD) writes that save's bytes; the next one links", "[posix][preload][dedupe]") {
  TestDir root("posix");
  const std::filesystem::path dir = root / "ckpts";
  ScriptRun run = run_script(root.path(), dir, {"save-epoch", "1", "7", "save-best", "7", "save-best", "7"},
                             fault_on("link", "*/best_model.pth.*.tmp", "EIO"));
  INFO(transcript(run));
  CHECK(run.exit_code == 0);
  CHECK(run.logged({"writing the bytes instead", std::strerror(EIO), (dir / "checkpoint_epoch_1.pth").string()}));
  CHECK(count_of(run.err, "no hard links here") == 0);
  CHECK(count_of(join(run.lines), "step temp_linked") == 1);
  struct stat best{}, epoch{};
  REQUIRE(::stat((dir / "best_model.pth").c_str(), &best) == 0);
  REQUIRE(::stat((dir / "checkpoint_epoch_1.pth").c_str(), &epoch) == 0);
  CHECK(best.st_ino == epoch.st_ino);
  check_intact_after_reopen(dir, zip_payload(7));
}

TEST_CASE("ckpt watch stops on a checkpoint it cannot read (EIO opening it), naming the file; the cursor stays and "
          "the checkpoint runs once the fault is gone",
          "[posix][cli][watch]") {
  TestDir dir("posix-watch");
  const auto run_dir = dir / "run";
  {
    CheckpointStore store(run_dir, StoreOptions{0});
    save_epochs(store, 1, 3);
  }
  const auto log = dir / "log.txt";
  const std::string command = "printf '%s\\n' \"$CKPT_EPOCH\" >> " + shell_quote(log.string());
  std::string preload = CKPT_FAULT_PRELOAD;
  if (std::string runtime = sanitizer_runtime(); !runtime.empty()) preload = runtime + ":" + preload;
  const std::string watch = std::string(CKPT_CLI) + " watch " + shell_quote(run_dir.string()) + " --exec " +
                            shell_quote(command) + " --poll-ms 20 --idle-exit 0.3 2>&1";
  auto failed = run_command("LD_PRELOAD=" + shell_quote(preload) + " CKPT_FAULT_CALL=open CKPT_FAULT_TIMES=0 " +
                            "CKPT_FAULT_PATH='*/checkpoint_epoch_2.pth' CKPT_FAULT_ERRNO=EIO timeout -k 5 60 " + watch);
  INFO(failed.output);
  CHECK(failed.exit_code == 3);
  CHECK_THAT(failed.output, Catch::Contains((run_dir / "checkpoint_epoch_2.pth").string()) &&
                                Catch::Contains("Input/output error"));
  CHECK(read_bytes(log) == "1\n");
  SQLite::Database db((run_dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  CHECK(db.execAndGet("SELECT last_commit_seq FROM watch_cursors WHERE name = 'default'").getInt64() == 1);

  auto resumed = run_command("timeout -k 5 60 " + watch);
  CHECK(resumed.exit_code == 0);
  CHECK(read_bytes(log) == "1\n2\n3\n");
}
