#include "watch.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <csignal>
#include <fmt/format.h>
#include <iostream>
#include <map>
#include <thread>
#include <vector>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "format/printable.hpp"

namespace ckpt::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

std::string p(std::string_view text) { return ckpt::format::printable(text); }

// The cursor's home: watch_cursors(name, last_commit_seq, updated_at) in index.sqlite,
// written through a short read-write connection (the reader's is read-only).
class Cursor {
 public:
  Cursor(const std::filesystem::path& dir, std::string name)
      : db_((dir / "index.sqlite").string(), SQLite::OPEN_READWRITE), name_(std::move(name)) {
    db_.setBusyTimeout(10000);
    db_.exec("PRAGMA synchronous=FULL");
  }
  std::optional<std::int64_t> get() {
    SQLite::Statement q(db_, "SELECT last_commit_seq FROM watch_cursors WHERE name = ?");
    q.bind(1, name_);
    if (!q.executeStep()) return std::nullopt;
    return q.getColumn(0).getInt64();
  }
  std::int64_t newest_commit() {
    SQLite::Statement q(db_, "SELECT COALESCE(MAX(commit_seq), 0) FROM checkpoints");
    q.executeStep();
    return q.getColumn(0).getInt64();
  }
  std::optional<std::int64_t> step_of(std::int64_t id) {
    SQLite::Statement q(db_, "SELECT step FROM checkpoints WHERE id = ?");
    q.bind(1, id);
    if (!q.executeStep() || q.getColumn(0).isNull()) return std::nullopt;
    return q.getColumn(0).getInt64();
  }
  // Durable before it returns (synchronous=FULL, one transaction).
  void set(std::int64_t commit_seq) {
    SQLite::Transaction tx(db_);
    SQLite::Statement q(db_,
                        "INSERT INTO watch_cursors(name, last_commit_seq, updated_at) "
                        "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now')) "
                        "ON CONFLICT(name) DO UPDATE SET last_commit_seq = excluded.last_commit_seq, "
                        "updated_at = excluded.updated_at");
    q.bind(1, name_);
    q.bind(2, commit_seq);
    q.exec();
    tx.commit();
  }

 private:
  SQLite::Database db_;
  std::string name_;
};

std::string env_name(const std::string& metric) {
  std::string out = "CKPT_METRIC_";
  for (unsigned char c : metric) out += std::isalnum(c) ? static_cast<char>(std::toupper(c)) : '_';
  return out;
}

std::string number(double v) { return fmt::format("{}", v); }

// Runs `command` with `env` added; renews `pin` every half TTL while it runs. Returns the
// wait status.
int run_command(const std::string& command, const std::map<std::string, std::string>& env, CheckpointPin& pin,
                std::chrono::milliseconds ttl) {
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error(fmt::format("watch: fork failed: {}", std::strerror(errno)));
  if (child == 0) {
    for (const auto& [key, value] : env) ::setenv(key.c_str(), value.c_str(), 1);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto renew_at = std::chrono::steady_clock::now() + ttl / 2;
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(child, &status, WNOHANG);
    if (done == child) return status;
    if (done < 0 && errno != EINTR) throw std::runtime_error(fmt::format("watch: waitpid failed: {}", std::strerror(errno)));
    if (std::chrono::steady_clock::now() >= renew_at) {
      pin.renew(ttl);
      renew_at = std::chrono::steady_clock::now() + ttl / 2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string status_text(int status) {
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return fmt::format("wait status {}", status);
}

}  // namespace

int run_watch(const WatchOptions& o) {
  const std::filesystem::path dir = std::filesystem::absolute(o.dir);
  CheckpointReader reader(dir, ReaderOptions{ReaderOptions::Access::shared, nullptr});
  Cursor cursor(dir, o.name);
  std::int64_t after = 0;
  if (auto stored = cursor.get()) {
    after = *stored;
  } else if (o.from_now) {
    after = cursor.newest_commit();
    cursor.set(after);
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  WaitCondition condition;
  condition.kind = o.kind;
  std::int64_t ran = 0;
  auto idle_since = std::chrono::steady_clock::now();
  while (!g_stop && (!o.max || ran < *o.max)) {
    std::optional<CheckpointRecord> next = reader.wait_for_new(after, o.poll, condition);
    if (!next) {
      if (o.idle_exit && std::chrono::steady_clock::now() - idle_since >= *o.idle_exit) break;
      continue;
    }
    // Checkpoints of the kind committed between the cursor and `next` that are gone
    // already (rotated out before their turn): reported, passed.
    for (const auto& row : reader.checkpoints(true)) {
      if (row.commit_seq > after && row.commit_seq < next->commit_seq && (!o.kind || row.kind == *o.kind)) {
        std::cerr << fmt::format("ckpt watch: {} (commit {}): skipped: rotated out before its turn\n", p(row.file), row.commit_seq);
      }
    }
    const CheckpointRecord& r = *next;
    CheckpointPin pin;
    std::optional<ReaderLoad> verified;
    std::string problem;
    try {
      pin = reader.pin(r.id, o.pin_ttl, fmt::format("ckpt watch {} pid {}", o.name, ::getpid()));
      verified = reader.load(r.id);
      if (!verified) problem = "skipped: rotated out before its turn";
    } catch (const InvalidArgument&) {
      problem = "skipped: rotated out before its turn";
    } catch (const CorruptError& e) {
      problem = fmt::format("skipped, not run: {}", e.what());
    }
    if (!problem.empty()) {
      std::cerr << fmt::format("ckpt watch: {} (commit {}): {}\n", p(r.file), r.commit_seq, p(problem));
      pin.release();
      cursor.set(r.commit_seq);
      after = r.commit_seq;
      continue;
    }
    verified.reset();  // the bytes are not needed: the command reads the file
    std::map<std::string, std::string> env{
        {"CKPT_DIR", dir.string()},
        {"CKPT_PATH", (dir / r.file).string()},
        {"CKPT_FILE", r.file},
        {"CKPT_KIND", std::string(to_string(r.kind))},
        {"CKPT_EPOCH", r.epoch ? std::to_string(*r.epoch) : std::string()},
        {"CKPT_STEP", [&] { auto s = cursor.step_of(r.id); return s ? std::to_string(*s) : std::string(); }()},
        {"CKPT_ID", std::to_string(r.id)},
        {"CKPT_COMMIT_SEQ", std::to_string(r.commit_seq)},
        {"CKPT_HASH", r.hash},
        {"CKPT_METRIC", r.metric ? number(*r.metric) : std::string()},
    };
    for (const auto& m : reader.metrics()) {
      if (m.checkpoint_id == r.id) env[env_name(m.name)] = number(m.value);
    }
    const int status = run_command(o.command, env, pin, o.pin_ttl);
    pin.release();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::cerr << fmt::format("ckpt watch: the command failed on {} (commit {}): {}; cursor '{}' left at commit {}\n",
                               p(r.file), r.commit_seq, status_text(status), p(o.name), after);
      return 1;
    }
    cursor.set(r.commit_seq);
    after = r.commit_seq;
    ++ran;
    idle_since = std::chrono::steady_clock::now();
  }
  return 0;
}

}  // namespace ckpt::cli
