// One writer and several readers at once, as on a shared login node: a trainer saving
// in a loop while other processes load its files, query the index with the sqlite3 CLI,
// and run the ckpt tool's read commands. No reader may see a torn file or get an error,
// a second writer is refused, and the WAL stays bounded.
#include <catch2/catch.hpp>

#include <poll.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <stdexcept>

#include <SQLiteCpp/SQLiteCpp.h>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

double run_seconds() { return env_number("CKPT_CONCURRENCY_SECONDS", 1.5); }

// Whether pipe `fd` has a byte to read (the parent's "stop"; left unread, so one byte
// stops every child polling it).
bool signalled(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// Runs `body` repeatedly in a child, at least `min_iterations` times however slow the
// machine (a sanitizer build, a loaded CI host), then until the deadline, or, given a
// `stop_fd`, until the parent writes to that pipe instead. The child exits 0 if
// every iteration succeeded, 1 (after printing why) otherwise.
pid_t spawn_loop(const std::function<bool(std::string&)>& body, int* iterations_fd, int min_iterations = 0,
                 int stop_fd = -1) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(run_seconds());
    auto more = [&] { return stop_fd >= 0 ? !signalled(stop_fd) : std::chrono::steady_clock::now() < deadline; };
    int iterations = 0;
    std::string why;
    while (iterations < min_iterations || more()) {
      if (!body(why)) {
        std::fprintf(stderr, "reader failed: %s\n", why.c_str());
        ::_exit(1);
      }
      ++iterations;
    }
    if (iterations_fd) (void)!::write(*iterations_fd, &iterations, sizeof iterations);
    ::_exit(0);
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Reads the file latest() names and checks its bytes are a version the index knows.
bool load_latest_as_reader(const std::filesystem::path& dir, std::string& why) {
  try {
    CheckpointReader reader(dir);
    auto latest = reader.latest();
    if (!latest) return true;
    std::string bytes;
    try {
      bytes = read_bytes(dir / latest->file);
    } catch (const std::exception&) {
      return true;  // rotated out between the query and the open: a reader retries
    }
    write_bytes(dir / ("reader-" + std::to_string(::getpid()) + ".bin"), bytes);
    std::string hash = xxh3_of(dir / ("reader-" + std::to_string(::getpid()) + ".bin"));
    SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY, 5000);
    SQLite::Statement query(db, "SELECT count(*) FROM checkpoints WHERE file = ? AND hash = ?");
    query.bind(1, latest->file);
    query.bind(2, hash);
    query.executeStep();
    if (query.getColumn(0).getInt() == 0) {
      why = latest->file + " read torn: its hash matches no version the index recorded";
      return false;
    }
    return true;
  } catch (const std::exception& error) {
    why = error.what();
    return false;
  }
}

}  // namespace

TEST_CASE("readers beside a writer never see a torn file or an error; a second writer is refused", "[store][concurrency]") {
  // At least this many saves, so that rotation and the best model's replacement happen
  // whatever the machine's speed; the readers run (at least once each) until the writer
  // has finished, so every one of those saves happens beside them.
  constexpr int kMinSaves = 21;
  TestDir dir("concurrency");
  { CheckpointStore store(dir.path(), StoreOptions{3}); }
  int writer_pipe[2];
  REQUIRE(::pipe(writer_pipe) == 0);
  int locked[2];  // the writer's byte: it holds the lock
  REQUIRE(::pipe(locked) == 0);
  pid_t writer = spawn_loop(
      [&, epoch = std::int64_t{0}](std::string& why) mutable {
        static CheckpointStore* store = nullptr;
        try {
          if (!store) {
            store = new CheckpointStore(dir.path(), StoreOptions{3});
            const char byte = 1;
            if (::write(locked[1], &byte, 1) != 1) throw std::runtime_error("cannot report the lock");
          }
          ++epoch;
          save_epoch(*store, epoch, zip_payload(static_cast<int>(epoch), 1000 + static_cast<std::size_t>(epoch % 13) * 7000));
          if (epoch % 5 == 0) save_bytes(*store, CheckpointKind::best, std::nullopt, zip_payload(-static_cast<int>(epoch)), 0.1 * epoch);
          return true;
        } catch (const std::exception& error) {
          why = error.what();
          return false;
        }
      },
      &writer_pipe[1], kMinSaves);
  ::close(locked[1]);
  char byte = 0;
  REQUIRE(::read(locked[0], &byte, 1) == 1);
  ::close(locked[0]);
  CHECK_THROWS_AS(CheckpointStore(dir.path(), StoreOptions{3}), LockedError);

  int stop[2];  // written by the parent once the writer is done: the readers' stop
  REQUIRE(::pipe(stop) == 0);
  std::vector<pid_t> readers;
  for (int i = 0; i < 2; ++i) {
    readers.push_back(
        spawn_loop([&](std::string& why) { return load_latest_as_reader(dir.path(), why); }, nullptr, 1, stop[0]));
  }
  readers.push_back(spawn_loop(
      [&](std::string& why) {
        // As docs/schema.md advises beside a running trainer: a busy timeout, because a
        // WAL reader can meet a lock for a moment (another connection's checkpoint).
        auto result = run_command("sqlite3 -cmd '.timeout 5000' " + shell_quote((dir / "index.sqlite").string()) +
                                  " 'SELECT count(*) FROM checkpoints; SELECT file FROM checkpoints WHERE status = \"committed\"' 2>&1");
        why = result.output;
        return result.exit_code == 0 && result.output.find("Error") == std::string::npos;
      },
      nullptr, 1, stop[0]));
  readers.push_back(spawn_loop(
      [&](std::string& why) {
        auto ls = run_command(std::string(CKPT_CLI) + " ls " + shell_quote(dir.path().string()) + " 2>&1");
        auto verify = run_command(std::string(CKPT_CLI) + " verify " + shell_quote(dir.path().string()) + " 2>&1");
        why = ls.output + verify.output;
        return ls.exit_code == 0 && verify.exit_code == 0;
      },
      nullptr, 1, stop[0]));
  CHECK(wait_for(writer) == 0);
  const char stop_byte = 1;
  CHECK(::write(stop[1], &stop_byte, 1) == 1);
  for (pid_t reader : readers) CHECK(wait_for(reader) == 0);
  ::close(stop[0]);
  ::close(stop[1]);
  int saves = 0;
  ::close(writer_pipe[1]);
  REQUIRE(::read(writer_pipe[0], &saves, sizeof saves) == sizeof saves);
  ::close(writer_pipe[0]);
  CHECK(saves >= kMinSaves);
  // Checkpointing kept the WAL small (SQLite's default: every 1000 pages, ~4 MB).
  if (std::filesystem::exists(dir / "index.sqlite-wal")) CHECK(std::filesystem::file_size(dir / "index.sqlite-wal") < (16u << 20));
  for (const auto& name : file_names(dir.path())) {
    if (name.rfind("reader-", 0) == 0) std::filesystem::remove(dir / name);
  }
  CHECK(invariant_violations(dir.path()).empty());
}
