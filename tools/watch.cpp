#include "watch.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "format/printable.hpp"  // ckpt::core's, torch-free: untrusted text on a terminal, in JSON
#include "io/hasher.hpp"         // ckpt::core's: the row's hash, computed while the file is read

extern char** environ;

namespace ckpt::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int) { g_stop = 1; }

std::string p(std::string_view text) { return ckpt::format::printable(text); }

void say(const std::string& line) { std::cerr << "ckpt watch: " << line << '\n' << std::flush; }

constexpr int kPage = 64;  // rows read from the index at a time

// The variables the watch sets (docs/cli.md lists them); inherited ones of these names
// (and CKPT_METRIC_*) are removed, so a command never sees a stale value from the
// watch's own environment. checkpoint_environment sets no other name (it checks).
constexpr const char* kVariables[] = {"CKPT_DIR",  "CKPT_PATH",       "CKPT_FILE", "CKPT_KIND",      "CKPT_EPOCH",
                                      "CKPT_STEP", "CKPT_ID",         "CKPT_HASH", "CKPT_HASH_ALGO", "CKPT_COMMIT_SEQ",
                                      "CKPT_METRIC", "CKPT_METRICS", "CKPT_WATCH_NAME"};
constexpr std::string_view kMetricPrefix = "CKPT_METRIC_";
// The command reads the verified file through this descriptor (CKPT_PATH is /dev/fd/3).
constexpr int kCheckpointFd = 3;

std::string number(double v) { return fmt::format("{}", v); }  // shortest round-trip; nan, inf, -inf

std::string metric_variable(const std::string& name) {
  std::string out(kMetricPrefix);
  for (unsigned char c : name) {
    if (c >= 'a' && c <= 'z') out += static_cast<char>(c - 'a' + 'A');
    else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) out += static_cast<char>(c);
    else out += '_';
  }
  return out;
}

// The checkpoint's environment: what docs/cli.md ("ckpt watch") lists. A colliding metric
// variable (two names, one variable) is left out; `collisions` gets it and its names.
std::map<std::string, std::string> checkpoint_environment(const std::filesystem::path& dir, const std::string& name,
                                                          const CheckpointRecord& r,
                                                          const std::vector<NamedMetric>& metrics,
                                                          std::map<std::string, std::vector<std::string>>& collisions) {
  std::map<std::string, std::string> env{
      {"CKPT_DIR", dir.string()},
      {"CKPT_PATH", fmt::format("/dev/fd/{}", kCheckpointFd)},
      {"CKPT_FILE", r.file},
      {"CKPT_KIND", std::string(to_string(r.kind))},
      {"CKPT_ID", std::to_string(r.id)},
      {"CKPT_COMMIT_SEQ", std::to_string(r.commit_seq)},
      {"CKPT_HASH", r.hash},
      {"CKPT_HASH_ALGO", r.hash_algo},
      {"CKPT_WATCH_NAME", name},
  };
  // The epoch the state is of: an epoch checkpoint's own, the best's or interrupt's when known.
  if (auto epoch = r.state_epoch ? r.state_epoch : r.epoch) env["CKPT_EPOCH"] = std::to_string(*epoch);
  if (r.step) env["CKPT_STEP"] = std::to_string(*r.step);
  if (r.metric) env["CKPT_METRIC"] = number(*r.metric);
  nlohmann::ordered_json all = nlohmann::ordered_json::object();
  std::map<std::string, std::vector<const NamedMetric*>> by_variable;
  for (const auto& m : metrics) {
    // A name that is not UTF-8 gets \\xNN escapes (docs/cli.md, "Untrusted text"): dump() cannot throw.
    all[ckpt::format::json_safe(m.name)] =
        std::isfinite(m.value) ? nlohmann::ordered_json(m.value) : nlohmann::ordered_json(nullptr);
    by_variable[metric_variable(m.name)].push_back(&m);
  }
  env["CKPT_METRICS"] = all.dump();
  for (const auto& entry : env) {
    if (std::none_of(std::begin(kVariables), std::end(kVariables), [&](const char* v) { return entry.first == v; })) {
      throw std::logic_error("ckpt watch: " + entry.first + " is not in kVariables");
    }
  }
  for (const auto& [variable, named] : by_variable) {
    if (named.size() == 1) {
      env[variable] = number(named.front()->value);
      continue;
    }
    auto& names = collisions[variable];
    names.clear();
    for (const auto* m : named) names.push_back(m->name);
  }
  return env;
}

// The watch's environment without the variables it sets, plus `env`.
std::vector<std::string> child_environment(const std::map<std::string, std::string>& env) {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    std::string_view key = entry.substr(0, entry.find('='));
    if (key.substr(0, kMetricPrefix.size()) == kMetricPrefix) continue;
    if (std::any_of(std::begin(kVariables), std::end(kVariables), [&](const char* v) { return key == v; })) continue;
    out.emplace_back(entry);
  }
  for (const auto& [key, value] : env) out.push_back(key + "=" + value);
  return out;
}

std::string status_text(int status) {
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  return fmt::format("wait status {}", status);
}

// Keeps a checkpoint's pin renewed while the watch verifies its file and runs the
// command: every half TTL, and after a failed renewal again within a second (reported
// once, until one succeeds; the pin holds until its expiry meanwhile).
class PinKeeper {
 public:
  using Clock = std::chrono::steady_clock;
  PinKeeper(CheckpointPin& pin, std::chrono::milliseconds ttl, std::string what)
      : pin_(pin), ttl_(ttl), what_(std::move(what)), renew_at_(Clock::now() + ttl / 2) {}
  void renew_if_due() {
    if (Clock::now() >= renew_at_) renew();
  }
  void renew() {
    try {
      pin_.renew(ttl_);
      if (failing_) say(fmt::format("{}: the pin is renewed again, until {}", what_, pin_.expires_at()));
      failing_ = false;
      renew_at_ = Clock::now() + ttl_ / 2;
    } catch (const Error& e) {
      if (!failing_) {
        say(fmt::format("{}: the pin could not be renewed (retrying; it lapses at {} unless a renewal succeeds): {}",
                        what_, pin_.expires_at(), p(e.what())));
      }
      failing_ = true;
      renew_at_ = Clock::now() + std::min<Clock::duration>(ttl_ / 2, std::chrono::seconds(1));
    }
  }

 private:
  CheckpointPin& pin_;
  std::chrono::milliseconds ttl_;
  std::string what_;
  Clock::time_point renew_at_;
  bool failing_ = false;
};

// Runs `command` under /bin/sh -c with `env` and the verified file open as descriptor 3,
// keeping the pin renewed until the child exits. Returns its wait status; the command is
// never abandoned while it runs. The child (the shell) gets SIGTERM if the
// watch dies. nullopt, nothing started, when SIGINT or SIGTERM came first: the decision
// and the fork happen with both blocked, so a signal is either before it (nothing starts)
// or after it (the command runs and is waited for).
std::optional<int> run_command(const std::string& command, const std::map<std::string, std::string>& env,
                               int checkpoint_fd, PinKeeper& pin, const std::string& what) {
  std::vector<std::string> environment = child_environment(env);
  std::vector<char*> envp;
  for (auto& entry : environment) envp.push_back(entry.data());
  envp.push_back(nullptr);
  const char* argv[] = {"sh", "-c", command.c_str(), nullptr};
  const pid_t parent = ::getpid();
  sigset_t stops, previous;
  sigemptyset(&stops);
  sigaddset(&stops, SIGINT);
  sigaddset(&stops, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &stops, &previous);
  if (g_stop) {
    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    return std::nullopt;
  }
  const pid_t child = ::fork();
  if (child < 0) {
    const int error = errno;
    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    throw IoError(ErrorCode::io, fmt::format("cannot start the command: fork: {}", std::strerror(error)), {}, error);
  }
  if (child == 0) {
    // Async-signal-safe calls only until execve. The command's signals are its own.
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // the watch died before prctl
    if (checkpoint_fd == kCheckpointFd) {
      ::fcntl(kCheckpointFd, F_SETFD, 0);  // keep it across execve
    } else if (::dup2(checkpoint_fd, kCheckpointFd) < 0) {
      ::_exit(127);
    }
    ::execve("/bin/sh", const_cast<char* const*>(argv), envp.data());
    ::_exit(127);
  }
  ::sigprocmask(SIG_SETMASK, &previous, nullptr);
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(child, &status, WNOHANG);
    if (done == child) return status;
    if (done < 0 && errno != EINTR) {
      throw IoError(ErrorCode::io, fmt::format("waitpid for the command on {}: {}", what, std::strerror(errno)), {}, errno);
    }
    pin.renew_if_due();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The checkpoint's file opened once and checked through that descriptor against its row
// (size, then the whole file's hash, streamed: the bytes are not kept). The command then
// reads that open file, which a later save renaming another file over the name (a new
// best model, an epoch saved again) cannot change. `fd` is -1 and `problem` says why
// when the file is missing or does not match; an I/O error throws IoError naming the file
// (the watch stops with the cursor where it is: the checkpoint may be fine).
struct OpenedCheckpoint {
  int fd = -1;
  std::string problem;
  OpenedCheckpoint() = default;
  OpenedCheckpoint(const OpenedCheckpoint&) = delete;
  OpenedCheckpoint& operator=(const OpenedCheckpoint&) = delete;
  ~OpenedCheckpoint() {
    if (fd >= 0) ::close(fd);
  }
};

void open_verified(const std::filesystem::path& path, const CheckpointRecord& r, OpenedCheckpoint& out,
                   const std::function<void()>& while_reading) {
  auto io_error = [&](const char* call) {
    const int error = errno;
    return IoError(ErrorCode::io, fmt::format("{}: {} failed: {}", path.string(), call, std::strerror(error)), path,
                   error);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      out.problem = "its file is missing";
      return;
    }
    throw io_error("open");
  }
  out.fd = fd;
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw io_error("fstat");
  if (static_cast<std::uint64_t>(st.st_size) != r.size) {
    out.problem = fmt::format("its file has {} bytes, the index recorded {}", st.st_size, r.size);
    return;
  }
  HashAlgorithm algorithm{};
  if (!io::parse_hash_algorithm(r.hash_algo, algorithm)) {  // a newer ckpt's row: not damage
    throw IndexError(ErrorCode::index,
                     fmt::format("{}: its row's hash algorithm '{}' is unknown to this ckpt", path.string(),
                                 p(r.hash_algo)),
                     path);
  }
  auto hasher = io::Hasher::create(algorithm);
  std::vector<char> buffer(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw io_error("read");
    if (n == 0) break;
    hasher->update(buffer.data(), static_cast<std::size_t>(n));
    while_reading();
  }
  const std::string hash = hasher->hex_digest();
  if (hash != r.hash) {
    out.problem = fmt::format("its file's {} hash is {}, the index recorded {}", r.hash_algo, hash, r.hash);
    return;
  }
  if (::lseek(fd, 0, SEEK_SET) != 0) throw io_error("lseek");
}

std::string holder(const std::string& name) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  return fmt::format("ckpt watch {}, pid {} on {}", name, ::getpid(), host);
}

}  // namespace

int run_watch(const WatchOptions& o) {
  const std::filesystem::path dir = std::filesystem::absolute(o.dir);
  CheckpointReader reader(dir, ReaderOptions{ReaderOptions::Access::shared, nullptr});

  // The cursor: created at once if new, which also proves this user can write the index
  // before any command runs.
  std::int64_t newest = 0;
  for (const auto& row : reader.checkpoints(true)) newest = std::max(newest, row.commit_seq);
  std::optional<std::int64_t> stored = reader.watch_cursor(o.name);
  if (!stored) {
    const std::int64_t start = o.from_now ? newest : 0;
    if (!reader.move_watch_cursor(o.name, std::nullopt, start)) stored = reader.watch_cursor(o.name);
    else stored = start;
  }
  if (!stored) throw IndexError(ErrorCode::index, fmt::format("{}: cursor '{}' vanished", dir.string(), p(o.name)), dir);
  std::int64_t cursor = *stored;  // what watch_cursors holds
  if (cursor > newest) {
    say(fmt::format("cursor '{}' is at commit {}, past the newest commit ({}): nothing runs until commit {} "
                    "(was the index rebuilt? `ckpt ls --all` shows the commits)",
                    p(o.name), cursor, newest, cursor + 1));
  }
  auto advance = [&](std::int64_t to) {
    if (to <= cursor) return;
    if (!reader.move_watch_cursor(o.name, cursor, to)) {
      throw Error(ErrorCode::locked,
                  fmt::format("{}: cursor '{}' is no longer at commit {} (now {}): another watch of that name moved "
                              "it; two watches of one name run commands twice, give each its own --name",
                              dir.string(), p(o.name), cursor, reader.watch_cursor(o.name).value_or(0)),
                  dir);
    }
    cursor = to;
  };

  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  using Clock = std::chrono::steady_clock;
  std::map<std::string, std::vector<std::string>> collisions;
  std::set<std::string> collisions_reported;
  std::int64_t scanned = cursor;  // rows up to here are handled; those of other kinds pass unpersisted
  std::int64_t ran = 0;
  auto idle_since = Clock::now();
  auto done = [&] { return g_stop || (o.max && ran >= *o.max); };
  while (!done()) {
    std::vector<CheckpointRecord> rows = reader.commits_after(scanned, kPage);
    if (rows.empty()) {
      // Nothing after `scanned`: look again after 10 ms, backing off to every 200 ms, until
      // a commit (of any kind) or the poll's end; a signal is acted on at the next look.
      const auto poll_end = Clock::now() + o.poll;
      bool committed = false;
      std::chrono::milliseconds interval(10);
      while (!committed && !g_stop && Clock::now() < poll_end) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(poll_end - Clock::now());
        std::this_thread::sleep_for(std::min(left, interval));
        interval = std::min(interval * 2, std::chrono::milliseconds(200));
        committed = reader.wait_for_new(scanned, std::chrono::milliseconds(0)).has_value();
      }
      if (!committed && o.idle_exit && Clock::now() - idle_since >= *o.idle_exit) break;
      continue;
    }
    for (const CheckpointRecord& r : rows) {
      if (done()) break;
      if (o.kind && r.kind != *o.kind) {
        scanned = r.commit_seq;
        continue;
      }
      const std::string what = fmt::format("{} (commit {})", p(r.file), r.commit_seq);
      // Gone when the page was read (a status never becomes live again): reported and
      // passed without a pin attempt; the cursor moves past such rows with the next
      // command's, at the end of the page, or when the watch stops (one transaction, not
      // one per row: a new name over a long history of rotated-out rows).
      if (r.status != "committed" && r.status != "consumed") {
        say(fmt::format("{}: skipped, not run: gone before its turn: no longer live (status '{}'; docs/schema.md)",
                        what, p(r.status)));
        scanned = r.commit_seq;
        continue;
      }
      auto skip = [&](const std::string& why) {
        say(fmt::format("{}: skipped, not run: {}", what, why));
        advance(r.commit_seq);
        scanned = r.commit_seq;
        idle_since = Clock::now();
      };
      // The pin first: once it holds, rotation leaves the file alone; a row that is not
      // live any more (rotated out, replaced, quarantined) is refused here.
      CheckpointPin pin;
      try {
        pin = reader.pin(r.id, o.pin_ttl, holder(o.name));
      } catch (const InvalidArgument&) {
        skip("gone before its turn: no longer live (rotated out, replaced or removed; `ckpt ls --all` says which)");
        continue;
      }
      // Verified (whole-file hash against the row, through the descriptor the command
      // then reads) before the command runs. An I/O error throws: the cursor stays.
      OpenedCheckpoint file;
      // Renewed while a large file is read, so the pin cannot lapse before the command.
      PinKeeper keeper(pin, o.pin_ttl, what);
      open_verified(dir / r.file, r, file, [&] { keeper.renew_if_due(); });
      if (!file.problem.empty()) {
        pin.release();
        // A pin holds off rotation, not a save renaming a new file over the name (a new
        // best model, an epoch saved again): then the row is no longer live either.
        const auto live = reader.checkpoints();
        const bool replaced =
            std::none_of(live.begin(), live.end(), [&](const CheckpointRecord& row) { return row.id == r.id; });
        skip(replaced ? "gone before its turn: replaced by a newer save of its name before it was read"
                      : fmt::format("its file does not match its index row ({}); a writer quarantines it when it "
                                    "loads it, or `ckpt repair --apply`",
                                    file.problem));
        continue;
      }
      auto env = checkpoint_environment(dir, o.name, r, reader.metrics(r.id), collisions);
      for (const auto& [variable, names] : collisions) {
        if (!collisions_reported.insert(variable).second) continue;
        std::string quoted;
        for (const auto& n : names) quoted += (quoted.empty() ? "'" : ", '") + p(n) + "'";
        say(fmt::format("metrics {} all map to {}: it is not set (CKPT_METRICS has each by its name)", quoted,
                        variable));
      }
      collisions.clear();
      keeper.renew();  // the read may have taken much of the ttl
      const std::optional<int> started = run_command(o.command, env, file.fd, keeper, what);
      if (!started) {  // a signal came first (while it was pinned and read, say): nothing ran
        pin.release();
        break;
      }
      const int status = *started;
      idle_since = Clock::now();
      // Killed by the stop signal, or a command that caught it and exited 128 + its number.
      const bool stopped = WIFSIGNALED(status) ? (WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM)
                                               : (WEXITSTATUS(status) == 128 + SIGINT || WEXITSTATUS(status) == 128 + SIGTERM);
      if (g_stop && stopped) {
        advance(scanned);  // past what was passed over before it
        say(fmt::format("stopped by a signal while the command ran on {} ({}): cursor '{}' stays at commit {}, the "
                        "next watch runs it again",
                        what, status_text(status), p(o.name), cursor));
        pin.release();
        return 0;
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        advance(scanned);
        say(fmt::format("the command failed on {}: {}; stopping. Cursor '{}' stays at commit {}: the next watch "
                        "runs it again",
                        what, status_text(status), p(o.name), cursor));
        pin.release();
        return 1;
      }
      // The cursor before the pin's release: a crash between the command's end and this
      // write runs the command again on restart (docs/cli.md: the one re-run window).
      advance(r.commit_seq);
      scanned = r.commit_seq;
      ++ran;
      pin.release();
    }
    advance(scanned);  // the page's rows passed over (other kinds, gone) after the last command
  }
  // Rows of other kinds passed since the last one of ours: a restart need not read them again.
  advance(scanned);
  return 0;
}

}  // namespace ckpt::cli
