// `ckpt watch DIR --exec CMD`, run as a user runs it: the built binary on real
// directories a CheckpointStore writes, its commands logging what they were given. Every
// watch runs under timeout(1) and ends by --idle-exit or --max, so no case can hang.
#include <catch2/catch.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "ckpt/store.hpp"
#include "support/cli_support.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

// `ckpt watch DIR --exec EXEC FLAGS` with `env` before it (VAR=value ...), bounded by
// timeout(1) (exit 124 if it ever hung). Output: the watch's stderr and stdout.
CommandResult watch(const std::filesystem::path& dir, const std::string& exec, const std::string& flags,
                    const std::string& env = "") {
  return run_command(env + " timeout -k 5 120 " + std::string(CKPT_CLI) + " watch " + shell_quote(dir.string()) +
                     " --exec " + shell_quote(exec) + " --poll-ms 20 " + flags + " 2>&1");
}

// A command appending one line per run to `log`: the listed variables, '|'-separated,
// "-" for an unset one.
std::string log_command(const std::filesystem::path& log, const std::vector<std::string>& variables) {
  std::string line;
  for (const auto& v : variables) line += (line.empty() ? "" : "|") + std::string("${") + v + "--}";
  return "printf '%s\\n' \"" + line + "\" >> " + shell_quote(log.string());
}

std::vector<std::string> lines_of(const std::filesystem::path& file) {
  std::vector<std::string> lines;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> parts;
  std::stringstream in(line);
  for (std::string part; std::getline(in, part, '|');) parts.push_back(part);
  return parts;
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::optional<std::int64_t> cursor_of(const std::filesystem::path& dir, const std::string& name = "default") {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, "SELECT last_commit_seq FROM watch_cursors WHERE name = ?");
  query.bind(1, name);
  if (!query.executeStep()) return std::nullopt;
  return query.getColumn(0).getInt64();
}

std::int64_t pin_count(const std::filesystem::path& dir) {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  return db.execAndGet("SELECT count(*) FROM pins").getInt64();
}

CheckpointRecord save_with(CheckpointStore& store, SaveRequest request, int seed) {
  const std::string bytes = zip_payload(seed);
  request.size_hint = bytes.size();
  return store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

SaveRequest epoch_request(std::int64_t epoch, std::vector<std::pair<std::string, double>> metrics = {}) {
  SaveRequest request;
  request.kind = CheckpointKind::epoch;
  request.epoch = epoch;
  request.metrics = std::move(metrics);
  return request;
}

// DIR holding epochs `first` to `last`, all kept: where most cases start.
void save_run(const std::filesystem::path& dir, std::int64_t first, std::int64_t last) {
  CheckpointStore store(dir, StoreOptions{0});
  save_epochs(store, first, last);
}

}  // namespace

TEST_CASE("ckpt watch runs its command once per committed checkpoint, in commit order, with path, kind, epoch and "
          "metrics in its environment; a restarted watch runs only what is new",
          "[cli][watch]") {
  TestDir dir("watch-basic");
  const auto log = dir / "log.txt";
  std::vector<CheckpointRecord> saved;
  {
    CheckpointStore store(dir / "run", StoreOptions{0});
    saved.push_back(save_with(store, epoch_request(1, {{"val_acc", 0.5}, {"train_loss", 2.25}}), 1));
    SaveRequest best;
    best.kind = CheckpointKind::best;
    best.metric = 0.5;
    best.state_epoch = 1;
    best.metrics = {{"val_acc", 0.5}};
    saved.push_back(save_with(store, best, 2));
    SaveRequest step = epoch_request(2, {{"val_acc", 0.75}});
    step.step = 1200;
    saved.push_back(save_with(store, step, 3));
    saved.push_back(save_with(store, epoch_request(3), 4));
  }
  const std::string command = log_command(log, {"CKPT_COMMIT_SEQ", "CKPT_ID", "CKPT_KIND", "CKPT_EPOCH", "CKPT_STEP",
                                                "CKPT_PATH", "CKPT_HASH", "CKPT_METRIC", "CKPT_METRIC_VAL_ACC",
                                                "CKPT_METRIC_TRAIN_LOSS", "CKPT_METRICS", "CKPT_METRIC_STALE"});
  // Variables of those names in the watch's own environment never reach a command.
  auto first = watch(dir / "run", command, "--idle-exit 0.3", "CKPT_STEP=stale CKPT_METRIC_STALE=1");
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  CHECK(first.output.empty());
  auto lines = lines_of(log);
  REQUIRE(lines.size() == 4);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto v = split(lines[i]);
    REQUIRE(v.size() == 12);
    CHECK(v[0] == std::to_string(saved[i].commit_seq));
    CHECK(v[1] == std::to_string(saved[i].id));
    CHECK(v[5] == "/dev/fd/3");  // the verified file, open
    CHECK(v[6] == saved[i].hash);
    CHECK(v[11] == "-");
  }
  // An epoch checkpoint with named metrics and no metric column.
  CHECK(split(lines[0])[2] == "epoch");
  CHECK(split(lines[0])[3] == "1");
  CHECK(split(lines[0])[4] == "-");
  CHECK(split(lines[0])[7] == "-");
  CHECK(split(lines[0])[8] == "0.5");
  CHECK(split(lines[0])[9] == "2.25");
  CHECK(split(lines[0])[10] == R"({"val_acc":0.5,"train_loss":2.25})");
  // The best model: its state's epoch; its metric column.
  CHECK(split(lines[1])[2] == "best");
  CHECK(split(lines[1])[3] == "1");
  CHECK(split(lines[1])[7] == "0.5");
  // A step checkpoint: its step and file name.
  CHECK(split(lines[2])[3] == "2");
  CHECK(split(lines[2])[4] == "1200");
  CHECK(saved[2].file == "checkpoint_step_1200.pth");
  CHECK(split(lines[2])[8] == "0.75");
  // No named metrics: none set, CKPT_METRICS an empty object.
  CHECK(split(lines[3])[8] == "-");
  CHECK(split(lines[3])[10] == "{}");
  CHECK(cursor_of(dir / "run") == saved.back().commit_seq);

  // Restarted: nothing new, nothing runs.
  auto again = watch(dir / "run", command, "--idle-exit 0.2");
  CHECK(again.exit_code == 0);
  CHECK(lines_of(log).size() == 4);
  // One more commit: only it runs.
  CheckpointRecord fifth;
  {
    CheckpointStore store(dir / "run", StoreOptions{0});
    fifth = save_with(store, epoch_request(4), 5);
  }
  auto third = watch(dir / "run", command, "--idle-exit 0.2");
  CHECK(third.exit_code == 0);
  lines = lines_of(log);
  REQUIRE(lines.size() == 5);
  CHECK(split(lines[4])[0] == std::to_string(fifth.commit_seq));
  CHECK(split(lines[4])[3] == "4");
  CHECK(cursor_of(dir / "run") == fifth.commit_seq);
}

TEST_CASE("ckpt watch --max N stops after N commands and the next watch goes on after them; --kind filters; "
          "--from-now starts a new name after the newest commit",
          "[cli][watch]") {
  TestDir dir("watch-max");
  const auto log = dir / "log.txt";
  {
    CheckpointStore store(dir / "run", StoreOptions{0});
    save_epochs(store, 1, 2);
    save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(10), 0.9);
    save_epochs(store, 3, 4);
  }
  const std::string command = log_command(log, {"CKPT_KIND", "CKPT_EPOCH"});
  // No --idle-exit: --max alone ends it.
  auto first = watch(dir / "run", command, "--max 2");
  CHECK(first.exit_code == 0);
  CHECK(lines_of(log) == std::vector<std::string>{"epoch|1", "epoch|2"});
  auto second = watch(dir / "run", command, "--max 2");
  CHECK(second.exit_code == 0);
  CHECK(lines_of(log) == std::vector<std::string>{"epoch|1", "epoch|2", "best|-", "epoch|3"});

  std::filesystem::remove(log);
  auto best_only = watch(dir / "run", command, "--name bests --kind best --idle-exit 0.2");
  CHECK(best_only.exit_code == 0);
  CHECK(lines_of(log) == std::vector<std::string>{"best|-"});
  // The epochs after the last best were read past: the cursor is at the newest commit.
  CHECK(cursor_of(dir / "run", "bests") == 5);

  std::filesystem::remove(log);
  auto from_now = watch(dir / "run", command, "--name late --from-now --idle-exit 0.2");
  CHECK(from_now.exit_code == 0);
  CHECK(!std::filesystem::exists(log));
  CHECK(cursor_of(dir / "run", "late") == 5);
  save_run(dir / "run", 5, 5);
  auto late = watch(dir / "run", command, "--name late --from-now --idle-exit 0.2");
  CHECK(late.exit_code == 0);
  CHECK(lines_of(log) == std::vector<std::string>{"epoch|5"});
}

TEST_CASE("a command that fails stops ckpt watch naming the checkpoint and the exit status; the cursor stays and "
          "the next watch runs that checkpoint again",
          "[cli][watch]") {
  TestDir dir("watch-fail");
  const auto log = dir / "log.txt";
  const auto fixed = dir / "fixed";
  save_run(dir / "run", 1, 3);
  const std::string command = log_command(log, {"CKPT_EPOCH"}) + "; [ \"$CKPT_EPOCH\" != 2 ] || [ -e " +
                              shell_quote(fixed.string()) + " ] || exit 7";
  auto failed = watch(dir / "run", command, "--idle-exit 0.2");
  INFO(failed.output);
  CHECK(failed.exit_code == 1);
  CHECK(failed.output.find("the command failed on checkpoint_epoch_2.pth (commit 2): exit status 7") != std::string::npos);
  CHECK(failed.output.find("Cursor 'default' stays at commit 1") != std::string::npos);
  CHECK(lines_of(log) == std::vector<std::string>{"1", "2"});
  CHECK(cursor_of(dir / "run") == 1);
  CHECK(pin_count(dir / "run") == 0);

  // Killed by a signal is a failure too.
  auto killed = watch(dir / "run", "kill -9 $$", "--idle-exit 0.2");
  CHECK(killed.exit_code == 1);
  CHECK(killed.output.find("checkpoint_epoch_2.pth (commit 2): killed by signal 9") != std::string::npos);
  CHECK(cursor_of(dir / "run") == 1);

  write_bytes(fixed, "");
  auto rerun = watch(dir / "run", command, "--idle-exit 0.2");
  CHECK(rerun.exit_code == 0);
  CHECK(lines_of(log) == std::vector<std::string>{"1", "2", "2", "3"});
  CHECK(cursor_of(dir / "run") == 3);
}

TEST_CASE("a watch killed with SIGKILL while a command runs resumes after the last command that finished: nothing "
          "done runs again, the interrupted one runs again",
          "[cli][watch]") {
  TestDir dir("watch-killed");
  const auto log = dir / "log.txt";
  const auto killed_once = dir / "killed";
  save_run(dir / "run", 1, 4);
  // On epoch 3 (the first time), the command kills the watch ($PPID: the watch forks sh).
  const std::string command = log_command(log, {"CKPT_EPOCH"}) + "; if [ \"$CKPT_EPOCH\" = 3 ] && [ ! -e " +
                              shell_quote(killed_once.string()) + " ]; then : > " + shell_quote(killed_once.string()) +
                              "; kill -9 $PPID; fi";
  auto killed = watch(dir / "run", command, "--idle-exit 0.3 --pin-ttl 30");
  INFO(killed.output);
  CHECK(killed.exit_code == 128 + 9);
  CHECK(lines_of(log) == std::vector<std::string>{"1", "2", "3"});
  CHECK(cursor_of(dir / "run") == 2);  // durable after each command, not only at a clean exit
  CHECK(pin_count(dir / "run") == 1);  // the dead watch's pin: it lapses at its expiry

  auto resumed = watch(dir / "run", command, "--idle-exit 0.3");
  CHECK(resumed.exit_code == 0);
  CHECK(lines_of(log) == std::vector<std::string>{"1", "2", "3", "3", "4"});
  CHECK(cursor_of(dir / "run") == 4);
}

TEST_CASE("ckpt watch's command reads the bytes that were verified even when a save puts other bytes under the "
          "name while it runs (a new best model)",
          "[cli][watch]") {
  TestDir dir("watch-replaced");
  const auto log = dir / "log.txt";
  CheckpointRecord best;
  {
    CheckpointStore store(dir / "run", StoreOptions{0});
    best = save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(1), 0.5);
  }
  const auto other = dir / "other.pth";
  write_bytes(other, zip_payload(2));
  // As a new best does: another file renamed over best_model.pth while the command runs;
  // then the command hashes what CKPT_PATH gives it.
  const std::string name = shell_quote((dir / "run" / "best_model.pth").string());
  const std::string command = "cp " + shell_quote(other.string()) + " " + name + ".new && mv " + name + ".new " +
                              name + " && printf '%s %s\\n' \"$CKPT_HASH\" \"$(xxhsum -H2 < \"$CKPT_PATH\" | cut -d' ' -f1)\" >> " +
                              shell_quote(log.string());
  auto result = watch(dir / "run", command, "--max 1");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const auto lines = lines_of(log);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == best.hash + " " + best.hash);
  CHECK(read_bytes(dir / "run" / "best_model.pth") == zip_payload(2));  // the name did change under it
}

TEST_CASE("ckpt watch stops at SIGTERM: the running command finishes and counts, nothing starts after it",
          "[cli][watch]") {
  TestDir dir("watch-sigterm");
  const auto log = dir / "log.txt";
  save_run(dir / "run", 1, 3);
  // The command of epoch 1 sends SIGTERM to the watch alone ($PPID), then finishes.
  const std::string command = log_command(log, {"CKPT_EPOCH"}) + "; [ \"$CKPT_EPOCH\" != 1 ] || kill -TERM $PPID; sleep 0.3";
  auto stopped = watch(dir / "run", command, "--idle-exit 5");
  INFO(stopped.output);
  CHECK(stopped.exit_code == 0);
  CHECK(lines_of(log) == std::vector<std::string>{"1"});
  CHECK(cursor_of(dir / "run") == 1);
  CHECK(pin_count(dir / "run") == 0);
  // A signal while it only waits ends it within a slice of the wait, not at --poll-ms's
  // end (30 s: timeout(1) would kill it at 10 s, exit 124). timeout passes SIGTERM on.
  auto waiting = run_command("timeout -k 5 10 " + std::string(CKPT_CLI) + " watch " + shell_quote((dir / "run").string()) +
                             " --exec true --name idle --from-now --poll-ms 30000 & pid=$!; sleep 0.5; kill -TERM $pid; "
                             "wait $pid");
  CHECK(waiting.exit_code == 0);
}

TEST_CASE("ckpt watch's --idle-exit counts from the end of the last command, not its start", "[cli][watch]") {
  TestDir dir("watch-idle");
  const auto log = dir / "log.txt";
  save_run(dir / "run", 1, 1);
  // The command outlasts --idle-exit (1.5 s against 1 s); epoch 2 is saved 0.4 s after
  // it ends, within --idle-exit of its end but not of its start.
  const std::string command = log_command(log, {"CKPT_EPOCH"}) + "; [ \"$CKPT_EPOCH\" != 1 ] || { sleep 1.5; " +
                              "(sleep 0.4; " + std::string(CKPT_STORE_SCRIPT) + " " + shell_quote((dir / "run").string()) +
                              " keep=0 save-epoch 2 2 >/dev/null) & }";
  auto result = watch(dir / "run", command, "--idle-exit 1");
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK(lines_of(log) == std::vector<std::string>{"1", "2"});
}

TEST_CASE("a metric name that is not UTF-8 reaches CKPT_METRICS escaped and does not stop ckpt watch",
          "[cli][watch][untrusted]") {
  TestDir dir("watch-utf8");
  const auto log = dir / "log.txt";
  {
    CheckpointStore store(dir / "run", StoreOptions{0});
    save_with(store, epoch_request(1, {{std::string("val\xe9"), 0.5}}), 1);
  }
  auto result = watch(dir / "run", log_command(log, {"CKPT_METRICS"}), "--max 1");
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK(lines_of(log) == std::vector<std::string>{R"({"val\\xe9":0.5})"});
}

TEST_CASE("a checkpoint rotated out before its turn is reported once by ckpt watch, naming its file, and the cursor "
          "passes it",
          "[cli][watch]") {
  TestDir dir("watch-rotated");
  const auto log = dir / "log.txt";
  const auto fixed = dir / "fixed";
  {
    CheckpointStore store(dir / "run", StoreOptions{2});
    save_epochs(store, 1, 5);  // epochs 1 to 3 rotated out
  }
  // The command fails on epoch 4 at first: the report of 1 to 3 must not come again.
  const std::string command = log_command(log, {"CKPT_EPOCH"}) + "; [ \"$CKPT_EPOCH\" != 4 ] || [ -e " +
                              shell_quote(fixed.string()) + " ] || exit 1";
  auto first = watch(dir / "run", command, "--idle-exit 0.2");
  INFO(first.output);
  CHECK(first.exit_code == 1);
  for (int epoch = 1; epoch <= 3; ++epoch) {
    const std::string report = "checkpoint_epoch_" + std::to_string(epoch) + ".pth (commit " + std::to_string(epoch) +
                               "): skipped, not run: gone before its turn: no longer live";
    CHECK(count_of(first.output, report) == 1);
  }
  CHECK(cursor_of(dir / "run") == 3);
  write_bytes(fixed, "");
  auto second = watch(dir / "run", command, "--idle-exit 0.2");
  INFO(second.output);
  CHECK(second.exit_code == 0);
  CHECK(second.output.find("skipped") == std::string::npos);
  CHECK(lines_of(log) == std::vector<std::string>{"4", "4", "5"});
  CHECK(cursor_of(dir / "run") == 5);
}

TEST_CASE("ckpt watch skips a checkpoint whose file does not match its row, naming it, and never runs the command "
          "on it",
          "[cli][watch]") {
  TestDir dir("watch-corrupt");
  const auto log = dir / "log.txt";
  save_run(dir / "run", 1, 3);
  flip_byte(dir / "run" / "checkpoint_epoch_2.pth");
  auto result = watch(dir / "run", log_command(log, {"CKPT_EPOCH"}), "--idle-exit 0.2");
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK(count_of(result.output, "checkpoint_epoch_2.pth (commit 2): skipped, not run: its file does not match") == 1);
  CHECK(lines_of(log) == std::vector<std::string>{"1", "3"});
  CHECK(cursor_of(dir / "run") == 3);
}

TEST_CASE("ckpt watch pins the checkpoint while its command runs, renews the pin past its ttl, and releases it after",
          "[cli][watch][pin]") {
  TestDir dir("watch-pin");
  const auto log = dir / "log.txt";
  std::vector<CheckpointRecord> saved;
  {
    CheckpointStore store(dir / "run", StoreOptions{0});
    saved.push_back(save_epoch(store, 1, zip_payload(1)));
    saved.push_back(save_epoch(store, 2, zip_payload(2)));
  }
  // From inside the command: the pins that hold now, after the pin's ttl (0.4 s) has
  // passed twice over; the watch renews it at half its ttl.
  const std::string query = "SELECT group_concat(checkpoint_id || ':' || holder, ';') FROM pins WHERE expires_at > "
                            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
  const std::string command = "sleep 1; printf '%s=%s\\n' \"$CKPT_ID\" \"$(sqlite3 -readonly \"$CKPT_DIR/index.sqlite\" " +
                              shell_quote(query) + ")\" >> " + shell_quote(log.string());
  auto result = watch(dir / "run", command, "--idle-exit 0.2 --pin-ttl 0.4 --name pinned");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  auto lines = lines_of(log);
  REQUIRE(lines.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    const std::string id = std::to_string(saved[i].id);
    CHECK(lines[i].rfind(id + "=" + id + ":ckpt watch pinned, pid ", 0) == 0);
    CHECK(lines[i].find(";") == std::string::npos);  // only this checkpoint's pin
  }
  CHECK(pin_count(dir / "run") == 0);
}

TEST_CASE("metric names that collide as variable names (val-loss, val_loss) get no variable, are reported once, "
          "and are in CKPT_METRICS by name",
          "[cli][watch]") {
  TestDir dir("watch-metric-names");
  const auto log = dir / "log.txt";
  {
    CheckpointStore store(dir / "run", StoreOptions{0});
    const double nan = std::numeric_limits<double>::quiet_NaN();
    save_with(store, epoch_request(1, {{"val-loss", 0.5}, {"val_loss", 0.25}, {"top1 acc", 0.875}, {"gnorm", nan}}), 1);
    save_with(store, epoch_request(2, {{"val-loss", 0.4}, {"val_loss", 0.2}}), 2);
  }
  auto result = watch(dir / "run",
                      log_command(log, {"CKPT_METRIC_VAL_LOSS", "CKPT_METRIC_TOP1_ACC", "CKPT_METRIC_GNORM", "CKPT_METRICS"}),
                      "--idle-exit 0.2");
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK(count_of(result.output, "metrics 'val-loss', 'val_loss' all map to CKPT_METRIC_VAL_LOSS: it is not set") == 1);
  auto lines = lines_of(log);
  REQUIRE(lines.size() == 2);
  auto first = split(lines[0]);
  REQUIRE(first.size() == 4);
  CHECK(first[0] == "-");
  CHECK(first[1] == "0.875");
  CHECK(first[2] == "nan");
  auto metrics = nlohmann::json::parse(first[3]);
  CHECK(metrics["val-loss"] == 0.5);
  CHECK(metrics["val_loss"] == 0.25);
  CHECK(metrics["top1 acc"] == 0.875);
  CHECK(metrics["gnorm"].is_null());
  CHECK(split(lines[1])[0] == "-");
  CHECK(nlohmann::json::parse(split(lines[1])[3])["val_loss"] == 0.2);
}

TEST_CASE("two watches of one name: the one whose cursor was moved under it stops with an error naming the cursor",
          "[cli][watch]") {
  TestDir dir("watch-same-name");
  const auto log = dir / "log.txt";
  save_run(dir / "run", 1, 3);
  // The outer watch's first command runs a second watch of the same name to the end.
  const std::string inner = std::string(CKPT_CLI) + " watch " + shell_quote((dir / "run").string()) + " --exec " +
                            shell_quote(log_command(log, {"CKPT_EPOCH"})) + " --poll-ms 20 --idle-exit 0.2";
  auto outer = watch(dir / "run", "[ \"$CKPT_EPOCH\" != 1 ] || " + inner, "--idle-exit 0.2");
  INFO(outer.output);
  CHECK(outer.exit_code == 3);
  CHECK(outer.output.find("cursor 'default' is no longer at commit 0 (now 3): another watch of that name moved it") !=
        std::string::npos);
  CHECK(lines_of(log) == std::vector<std::string>{"1", "2", "3"});
  CHECK(cursor_of(dir / "run") == 3);
}

TEST_CASE("ckpt watch beside a writer saving and rotating in another process accounts for every commit exactly once, "
          "in commit order",
          "[cli][watch][two-process]") {
  TestDir dir("watch-concurrent");
  const auto log = dir / "log.txt";
  { CheckpointStore store(dir / "run", StoreOptions{3}); save_epochs(store, 1, 1); }
  constexpr int kEpochs = 30;
  CommandResult result;
  // The watch is its own process; this one is the writer (the watch takes no writer lock).
  std::thread watcher([&] {
    result = watch(dir / "run", log_command(log, {"CKPT_COMMIT_SEQ", "CKPT_EPOCH", "CKPT_KIND"}), "--idle-exit 3");
  });
  {
    CheckpointStore store(dir / "run", StoreOptions{3});
    for (int epoch = 2; epoch <= kEpochs; ++epoch) {
      save_epoch(store, epoch, zip_payload(epoch));
      if (epoch % 5 == 0) save_bytes(store, CheckpointKind::best, std::nullopt, zip_payload(100 + epoch), epoch);
    }
  }
  watcher.join();
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  // Every commit either ran or was reported skipped, never both, never twice.
  std::map<std::int64_t, int> accounted;
  std::int64_t last = 0;
  for (const auto& line : lines_of(log)) {
    const auto seq = std::stoll(split(line).at(0));
    CHECK(seq > last);  // commit order
    last = seq;
    ++accounted[seq];
  }
  std::int64_t commits = 0;
  {
    SQLite::Database db((dir / "run" / "index.sqlite").string(), SQLite::OPEN_READONLY);
    SQLite::Statement query(db, "SELECT commit_seq, file FROM checkpoints WHERE commit_seq IS NOT NULL ORDER BY commit_seq");
    while (query.executeStep()) {
      ++commits;
      const auto seq = query.getColumn(0).getInt64();
      const std::string report = query.getColumn(1).getString() + " (commit " + std::to_string(seq) + "): skipped";
      accounted[seq] += static_cast<int>(count_of(result.output, report));
    }
  }
  CHECK(commits == kEpochs + kEpochs / 5);
  CHECK(accounted.size() == static_cast<std::size_t>(commits));
  for (const auto& [seq, times] : accounted) {
    INFO("commit " << seq);
    CHECK(times == 1);
  }
  CHECK(last == commits);  // the newest always runs
  CHECK(cursor_of(dir / "run") == commits);
  CHECK(pin_count(dir / "run") == 0);
}
