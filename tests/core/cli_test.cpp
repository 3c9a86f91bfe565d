// The `ckpt` tool, run as a user runs it: the built binary on real directories, each
// command's output and exit code.
#include <catch2/catch.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#include <chrono>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <unistd.h>

#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "ckpt/version.hpp"
#include "format/checkpoint_format.hpp"
#include "format/printable.hpp"
#include "format/zip_writer.hpp"
#include "support/store_support.hpp"
#include "support/cli_support.hpp"
#include "support/memory_source.hpp"
#include "support/test_dir.hpp"
#include "store/test_hooks.hpp"  // on_step, sqlite_vfs, fsync skips: test hooks

using namespace ckpt;
using namespace ckpt::test;
using nlohmann::json;

namespace {


// A real payload (torch.save's layout, written by ckpt's writer): epoch, val_acc, and a
// float32 tensor model.w of 4 elements starting at `first`.
std::string real_payload(std::int64_t epoch, double val_acc, float first, std::vector<float>* keep_alive) {
  keep_alive->assign({first, first + 1, first + 2, first + 3});
  auto storage = std::make_shared<format::StorageInfo>();
  storage->key = "0";
  storage->dtype = format::DType::float32;
  storage->numel = 4;
  storage->data = keep_alive->data();
  auto tensor = std::make_shared<format::TensorInfo>();
  tensor->storage = storage;
  tensor->sizes = {4};
  tensor->strides = {1};
  auto model = format::Value::dict();
  model->add_entry(format::Value::of_string("w"), format::Value::of_tensor(tensor));
  auto root = format::Value::dict();
  root->add_entry(format::Value::of_string("epoch"), format::Value::of_int(epoch));
  root->add_entry(format::Value::of_string("val_acc"), format::Value::of_double(val_acc));
  root->add_entry(format::Value::of_string("model"), model);
  format::PreparedCheckpoint prepared = format::prepare_checkpoint(root, {storage});
  StringSink sink;
  prepared.write(sink);
  return sink.bytes;
}

// A temp file as a killed save leaves it, old enough for recovery to remove: another
// writer's one younger than 10 s may be a save in progress, and is left alone.
void make_old(const std::filesystem::path& file) {
  std::filesystem::last_write_time(file, std::filesystem::file_time_type::clock::now() - std::chrono::minutes(1));
}

// A directory with epochs 1..5 (max_to_keep 3), a best model and a history.
void make_run(const std::filesystem::path& dir) {
  CheckpointStore store(dir, StoreOptions{3});
  std::vector<float> data;
  for (int epoch = 1; epoch <= 5; ++epoch) {
    save_bytes(store, CheckpointKind::epoch, epoch, real_payload(epoch, 0.5 + epoch * 0.1, float(epoch), &data), 0.5 + epoch * 0.1);
    if (epoch == 4) save_bytes(store, CheckpointKind::best, std::nullopt, real_payload(epoch, 0.9, float(epoch), &data), 0.9);
  }
}

}  // namespace

TEST_CASE("ckpt ls lists the committed checkpoints; --all adds history; --json is parseable", "[cli]") {
  TestDir dir("cli");
  make_run(dir.path());
  auto ls = ckpt_cli("ls " + shell_quote(dir.path().string()));
  CHECK(ls.exit_code == 0);
  CHECK_THAT(ls.output, Catch::Contains("checkpoint_epoch_5.pth") && Catch::Contains("best_model.pth") &&
                            !Catch::Contains("checkpoint_epoch_2.pth"));
  CHECK_THAT(ckpt_cli("ls --all " + shell_quote(dir.path().string())).output,
             Catch::Contains("deleted") && Catch::Contains("checkpoint_epoch_2.pth"));
  json rows = json::parse(ckpt_stdout("--json ls " + shell_quote(dir.path().string())).output);
  REQUIRE(rows.size() == 4);
  CHECK(rows[0]["kind"] == "best");
  CHECK(rows[0]["metric"] == 0.9);
}

TEST_CASE("ckpt latest and best print the path, say why with -v, and exit 1 when there is none", "[cli]") {
  TestDir dir("cli");
  make_run(dir.path());
  auto latest = ckpt_stdout("latest -v " + shell_quote(dir.path().string()));
  CHECK(latest.exit_code == 0);
  CHECK_THAT(latest.output, Catch::StartsWith((dir / "checkpoint_epoch_5.pth").string() + "\n") &&
                                Catch::Contains("epoch 5: the most recently committed of 3 resumable checkpoints"));
  CHECK(ckpt_stdout("best " + shell_quote(dir.path().string())).output == (dir / "best_model.pth").string() + "\n");
  TestDir empty("cli-empty");
  { CheckpointStore store(empty.path()); }
  auto none = ckpt_cli("latest " + shell_quote(empty.path().string()));
  CHECK(none.exit_code == 1);
  CHECK_THAT(none.output, Catch::Contains("no resumable checkpoint"));
  CHECK(ckpt_cli("best " + shell_quote(empty.path().string())).exit_code == 1);
}

TEST_CASE("ckpt best --metric --mode prints the live checkpoint best by that metric; NaN and missing are never best",
          "[cli][retention]") {
  TestDir dir("cli-best-by");
  {
    CheckpointStore store(dir.path(), StoreOptions{0});
    // epoch: val_loss, val_acc   1: 0.4, 0.7   2: NaN, 0.9   3: (none), 0.8   4: 0.2, 0.6   5: 0.2, 0.5
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<std::vector<std::pair<std::string, double>>> metrics = {
        {{"val_loss", 0.4}, {"val_acc", 0.7}}, {{"val_loss", nan}, {"val_acc", 0.9}}, {{"val_acc", 0.8}},
        {{"val_loss", 0.2}, {"val_acc", 0.6}}, {{"val_loss", 0.2}, {"val_acc", 0.5}}};
    std::vector<float> data;
    for (std::size_t i = 0; i < metrics.size(); ++i) {
      const auto epoch = static_cast<std::int64_t>(i + 1);
      const std::string bytes = real_payload(epoch, 0.5, float(epoch), &data);
      SaveRequest request;
      request.epoch = epoch;
      request.metrics = metrics[i];
      request.size_hint = bytes.size();
      store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
    }
  }
  const std::string d = shell_quote(dir.path().string());
  // Of the equal 0.2s the more recently committed (epoch 5) wins; NaN (2) and none (3) never do.
  auto min_loss = ckpt_stdout("best -v --metric val_loss --mode min " + d);
  CHECK(min_loss.exit_code == 0);
  CHECK_THAT(min_loss.output, Catch::StartsWith((dir / "checkpoint_epoch_5.pth").string() + "\nval_loss 0.2: the lowest"));
  CHECK(ckpt_stdout("best --metric val_loss --mode max " + d).output == (dir / "checkpoint_epoch_1.pth").string() + "\n");
  json max_acc = json::parse(ckpt_stdout("--json best --metric val_acc --mode max " + d).output);
  CHECK(max_acc["file"] == "checkpoint_epoch_2.pth");
  CHECK(max_acc["value"] == 0.9);
  auto none = ckpt_cli("best --metric no_such --mode min " + d);
  CHECK(none.exit_code == 1);
  CHECK_THAT(none.output, Catch::Contains("has a number for no_such"));
  CHECK(ckpt_cli("best --metric val_loss " + d).exit_code == 2);            // --mode missing
  CHECK(ckpt_cli("best --metric val_loss --mode lowest " + d).exit_code == 2);  // not min or max
}

TEST_CASE("ckpt latest -v explains a choice by commit order: a restarted run, an interrupt", "[cli][order]") {
  TestDir dir("cli");
  std::vector<float> data;
  {
    CheckpointStore store(dir.path(), StoreOptions{3});
    for (int epoch : {7, 8, 9, 3}) save_bytes(store, CheckpointKind::epoch, epoch, real_payload(epoch, 0.5, 1, &data));
  }
  auto latest = ckpt_stdout("latest -v " + shell_quote(dir.path().string()));
  CHECK_THAT(latest.output, Catch::StartsWith((dir / "checkpoint_epoch_3.pth").string() + "\n") &&
                                Catch::Contains("epoch 3: the most recently committed of 3 resumable checkpoints") &&
                                Catch::Contains("higher epochs 8, 9 are older") && Catch::Contains("superseded"));
  {
    CheckpointStore store(dir.path(), StoreOptions{3});
    save_bytes(store, CheckpointKind::interrupt, std::nullopt, real_payload(4, 0.5, 1, &data));
  }
  CHECK_THAT(ckpt_stdout("latest -v " + shell_quote(dir.path().string())).output,
             Catch::Contains("interrupt checkpoint (not resumed yet): the most recently committed of 4"));
}

TEST_CASE("ckpt show prints the structure without tensor data, and statistics with --stats", "[cli]") {
  TestDir dir("cli");
  make_run(dir.path());
  auto show = ckpt_cli("show " + shell_quote(dir.path().string()) + " epoch 4");
  CHECK(show.exit_code == 0);
  CHECK_THAT(show.output, Catch::Contains("model.w") && Catch::Contains("float32 [4]") && Catch::Contains("epoch") &&
                              Catch::Contains("zip payload"));
  auto stats = ckpt_cli("show --stats " + shell_quote((dir / "checkpoint_epoch_5.pth").string()));
  CHECK_THAT(stats.output, Catch::Contains("min 5 max 8 mean 6.5"));
  json parsed = json::parse(ckpt_stdout("--json show --stats " + shell_quote(dir.path().string()) + " best").output);
  CHECK(parsed["entries"][2]["path"] == "model.w");
  CHECK(parsed["entries"][2]["stats"]["max"] == 7.0);
  CHECK(ckpt_cli("show " + shell_quote(dir.path().string()) + " epoch 1").exit_code == 2);  // rotated out
}

TEST_CASE("ckpt diff says which keys and tensors differ and by how much", "[cli]") {
  TestDir dir("cli");
  make_run(dir.path());
  std::string a = shell_quote((dir / "checkpoint_epoch_4.pth").string());
  std::string b = shell_quote((dir / "checkpoint_epoch_5.pth").string());
  // The best model was saved from the same state as epoch 4.
  auto same = ckpt_cli("diff " + a + " " + shell_quote((dir / "best_model.pth").string()));
  CHECK(same.exit_code == 0);
  CHECK(same.output == "no differences\n");
  auto different = ckpt_cli("diff " + a + " " + b);
  CHECK(different.exit_code == 1);
  CHECK_THAT(different.output, Catch::Contains("model.w") && Catch::Contains("max |a-b| 1 over 4 of 4 elements") &&
                                   Catch::Contains("epoch") && Catch::Contains("4 vs 5"));
  json parsed = json::parse(ckpt_stdout("--json diff " + a + " " + b).output);
  CHECK(parsed.size() == 3);  // epoch, val_acc, model.w
}

TEST_CASE("ckpt history lists the events and draws them as SVG", "[cli]") {
  TestDir dir("cli");
  make_run(dir.path());
  auto history = ckpt_cli("history " + shell_quote(dir.path().string()));
  CHECK(history.exit_code == 0);
  CHECK_THAT(history.output, Catch::Contains("rotated_out") && Catch::Contains("new_best"));
  auto plot = ckpt_cli("history " + shell_quote(dir.path().string()) + " --plot " + shell_quote((dir / "h.svg").string()));
  CHECK(plot.exit_code == 0);
  std::string svg = read_bytes(dir / "h.svg");
  CHECK_THAT(svg, Catch::Contains("<svg"));  // what it draws: tests/core/history_plot_test.cpp
}

TEST_CASE("ckpt verify passes an intact directory and names a flipped bit, exiting 1", "[cli]") {
  TestDir dir("cli");
  make_run(dir.path());
  auto ok = ckpt_cli("verify " + shell_quote(dir.path().string()));
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.output, Catch::Contains("4 checkpoints verified, 4 ok, 0 mismatched"));
  // Epoch 5: make_run's best model is epoch 4's state, one file with it (a hard link).
  std::string bytes = read_bytes(dir / "checkpoint_epoch_5.pth");
  bytes[bytes.size() / 2] ^= 0x08;
  write_bytes(dir / "checkpoint_epoch_5.pth", bytes);
  auto bad = ckpt_cli("verify " + shell_quote(dir.path().string()));
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.output, Catch::Contains("MISMATCH") && Catch::Contains("checkpoint_epoch_5.pth") &&
                             Catch::Contains("1 mismatched"));
}

TEST_CASE("ckpt verify and repair say which names share one file, and damage to it shows under each",
          "[cli][dedupe]") {
  TestDir dir("cli-shared");
  const std::string state = zip_payload(5);
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 5, state);
    save_bytes(store, CheckpointKind::best, std::nullopt, state, 0.9);  // a hard link to epoch 5's file
    save_epoch(store, 6, zip_payload(6));
  }
  const std::string d = shell_quote(dir.path().string());
  auto ok = ckpt_cli("verify " + d);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.output, Catch::Contains("SHARED  best_model.pth shares its bytes with checkpoint_epoch_5.pth (one "
                                        "file, hard links)") &&
                            !Catch::Contains("checkpoint_epoch_6.pth shares"));
  json rows = json::parse(ckpt_stdout("--json verify " + d).output);
  for (const auto& row : rows) {
    INFO(row.dump());
    const std::string file = row["file"];
    CHECK(row["shares_file_with"].size() == (file == "checkpoint_epoch_6.pth" ? 0u : 1u));
  }
  {
    std::fstream file(dir / "checkpoint_epoch_5.pth", std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(state.size() / 2));
    file.put('\x7f');  // in place: both names see it
  }
  auto bad = ckpt_cli("verify " + d);
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.output, Catch::Contains("2 mismatched") && Catch::Contains("SHARED  best_model.pth"));
  auto plan = ckpt_cli("repair " + d);
  CHECK(plan.exit_code == 1);
  CHECK_THAT(plan.output, Catch::Contains("quarantine  ") &&
                              Catch::Contains("best_model.pth shares its bytes with checkpoint_epoch_5.pth"));
}

TEST_CASE("ckpt gc applies retention now and ckpt rm removes one checkpoint with its row", "[cli]") {
  TestDir dir("cli");
  make_run(dir.path());
  auto gc = ckpt_cli("gc --keep 1 " + shell_quote(dir.path().string()));
  CHECK(gc.exit_code == 0);
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_4.pth"));
  CHECK(std::filesystem::exists(dir / "checkpoint_epoch_5.pth"));
  json best = json::parse(ckpt_stdout("--json best " + shell_quote(dir.path().string())).output);
  auto rm = ckpt_cli("rm " + shell_quote(dir.path().string()) + " " + std::to_string(best["id"].get<int>()));
  CHECK(rm.exit_code == 0);
  CHECK_FALSE(std::filesystem::exists(dir / "best_model.pth"));
  CHECK(ckpt_cli("best " + shell_quote(dir.path().string())).exit_code == 1);
  CHECK(ckpt_cli("rm " + shell_quote(dir.path().string()) + " 9999").exit_code == 2);
  CHECK(invariant_violations(dir.path()).empty());
  // The stored retention (3) was not changed by the tool.
  CHECK_THAT(ckpt_cli("history " + shell_quote(dir.path().string())).output, !Catch::Contains("max_to_keep 5"));
}

TEST_CASE("ckpt gc --keep applies once: the stored retention stays, and later saves rotate by it", "[cli][gc]") {
  TestDir dir("cli");
  make_run(dir.path());  // max_to_keep 3
  auto epoch_files = [](const std::filesystem::path& path) {
    std::vector<std::string> epochs;
    for (const auto& name : file_names(path)) {
      if (name.rfind("checkpoint_epoch_", 0) == 0) epochs.push_back(name);
    }
    return epochs;
  };
  REQUIRE(ckpt_cli("gc --keep 1 " + shell_quote(dir.path().string())).exit_code == 0);
  CHECK(epoch_files(dir.path()) == std::vector<std::string>{"checkpoint_epoch_5.pth"});
  // Reopened: the index still records 3, and a writer that takes the stored retention (as
  // the tool's own writers do) keeps 3 epochs, not 1.
  auto stored = CheckpointReader(dir.path()).max_to_keep();
  REQUIRE(stored);
  CHECK(*stored == 3);
  {
    CheckpointStore store(dir.path(), StoreOptions{*stored});
    std::vector<float> data;
    for (int epoch = 6; epoch <= 8; ++epoch) {
      save_bytes(store, CheckpointKind::epoch, epoch, real_payload(epoch, 0.5, float(epoch), &data), 0.5);
    }
  }
  CHECK(epoch_files(dir.path()) ==
        std::vector<std::string>{"checkpoint_epoch_6.pth", "checkpoint_epoch_7.pth", "checkpoint_epoch_8.pth"});
  CHECK_THAT(ckpt_cli("gc --dry-run " + shell_quote(dir.path().string())).output, Catch::Contains("(retention: newest 3)"));
}

TEST_CASE("a writer command on a directory a trainer holds fails with one line naming the holder", "[cli]") {
  TestDir dir("cli");
  make_run(dir.path());
  CheckpointStore running(dir.path(), StoreOptions{3});
  auto gc = ckpt_cli("gc " + shell_quote(dir.path().string()));
  CHECK(gc.exit_code == 3);
  CHECK_THAT(gc.output, Catch::Contains("locked") && Catch::Contains("pid"));
  CHECK(std::count(gc.output.begin(), gc.output.end(), '\n') == 1);
  CHECK(ckpt_cli("ls " + shell_quote(dir.path().string())).exit_code == 0);  // readers need no lock
}

TEST_CASE("ckpt import adopts a directory written by the guide's Python CheckpointManager, once", "[cli][python]") {
  TestDir dir("cli-import");
  std::string script = std::string(CKPT_SOURCE_DIR) + "/tests/python/guide_checkpoint_manager.py";
  auto made = run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script) + " " + shell_quote(dir.path().string()) + " 2>&1");
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  REQUIRE(std::filesystem::exists(dir / "checkpoint_epoch_9.pth.tmp"));
  make_old(dir / "checkpoint_epoch_9.pth.tmp");
  auto imported = ckpt_cli("import " + shell_quote(dir.path().string()));
  CHECK(imported.exit_code == 0);
  CHECK_THAT(imported.output, Catch::Contains("adopted 6") && Catch::Contains("removed 1 temp file"));
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_9.pth.tmp"));
  json rows = json::parse(ckpt_stdout("--json ls " + shell_quote(dir.path().string())).output);
  REQUIRE(rows.size() == 6);
  CHECK(rows[0]["kind"] == "best");
  CHECK(rows[0]["metric"].get<double>() == Approx(0.9));
  CHECK(rows[5]["epoch"] == 8);
  CHECK(rows[5]["metric"].get<double>() == Approx(0.9));
  auto events_before = index_events(dir.path()).size();
  auto again = ckpt_cli("import " + shell_quote(dir.path().string()));
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.output, Catch::Contains("adopted 0"));
  CHECK(index_events(dir.path()).size() == events_before);
}

TEST_CASE("ckpt --help lists every command, each command has help, and misuse exits 2", "[cli]") {
  auto help = ckpt_cli("--help");
  CHECK(help.exit_code == 0);
  const std::set<std::string> commands{"ls", "latest", "best", "show", "diff", "history", "verify", "gc", "rm", "repair", "import", "watch"};
  for (const auto& command : commands) {
    INFO(command);
    CHECK(ckpt_cli(command + " --help").exit_code == 0);
  }
  // The first word of each line under "Subcommands:" (a plain Contains would find "repair"
  // in the --allow-network-fs line even if the command were gone).
  std::set<std::string> listed;
  std::istringstream lines(help.output.substr(std::min(help.output.find("Subcommands:"), help.output.size())));
  for (std::string line; std::getline(lines, line) && line.rfind("Exit codes", 0) != 0;) {
    if (line.rfind("  ", 0) == 0 && line.size() > 2 && line[2] != ' ') listed.insert(line.substr(2, line.find(' ', 2) - 2));
  }
  CHECK(listed == commands);
  CHECK(ckpt_cli("ls").exit_code == 2);
  CHECK(ckpt_cli("nonsense").exit_code == 2);
  auto missing = ckpt_cli("ls /nonexistent/dir");
  CHECK(missing.exit_code == 3);
  CHECK(missing.output == "ckpt: /nonexistent/dir: no such directory\n");
  TestDir plain("cli-plain");  // a directory, but not a ckpt one
  CHECK_THAT(ckpt_cli("ls " + shell_quote(plain.path().string())).output,
             Catch::StartsWith("ckpt: " + plain.path().string() + ": no index.sqlite"));
}

namespace {
struct RepairCase {
  bool dry_run_changed_nothing = false;
  CommandResult plan;
  CommandResult applied;
  CommandResult after;  // a second dry run
};

RepairCase repair(const std::filesystem::path& dir) {
  RepairCase result;
  auto snapshot = [&] {
    std::string state;
    for (const auto& name : file_names(dir)) state += name + "\n";
    for (const char* index : {"index.sqlite", "index.sqlite-wal"}) {
      if (std::filesystem::exists(dir / index)) state += read_bytes(dir / index);
    }
    return state;
  };
  const std::string before = snapshot();
  result.plan = ckpt_cli("repair " + shell_quote(dir.string()));
  result.dry_run_changed_nothing = snapshot() == before;
  result.applied = ckpt_cli("repair --apply " + shell_quote(dir.string()));
  result.after = ckpt_cli("repair " + shell_quote(dir.string()));
  return result;
}
}  // namespace

TEST_CASE("ckpt repair plans by default, changes nothing until --apply, then leaves nothing to repair", "[cli][repair]") {
  TestDir dir("repair");
  make_run(dir.path());
  CHECK(ckpt_cli("repair " + shell_quote(dir.path().string())).output == dir.path().string() + ": nothing to repair\n");

  SECTION("a deleted checkpoint file") {
    std::filesystem::remove(dir / "checkpoint_epoch_4.pth");
    auto r = repair(dir.path());
    CHECK(r.dry_run_changed_nothing);
    CHECK(r.plan.exit_code == 1);
    CHECK_THAT(r.plan.output, Catch::Contains("mark missing") && Catch::Contains("checkpoint_epoch_4.pth"));
    CHECK(r.applied.exit_code == 0);
    CHECK(r.after.exit_code == 0);
  }
  SECTION("a stray damaged checkpoint file is quarantined, a complete one adopted, other files left alone") {
    write_bytes(dir / "checkpoint_epoch_9.pth", "garbage");
    std::vector<float> data;
    write_bytes(dir / "checkpoint_epoch_7.pth", real_payload(7, 0.95, 7, &data));
    write_bytes(dir / "notes.txt", "mine");
    auto r = repair(dir.path());
    CHECK_THAT(r.plan.output, Catch::Contains("quarantine") && Catch::Contains("checkpoint_epoch_9.pth") &&
                                  Catch::Contains("adopt") && Catch::Contains("checkpoint_epoch_7.pth"));
    CHECK(r.dry_run_changed_nothing);
    CHECK(r.applied.exit_code == 0);
    CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_9.pth"));
    CHECK(file_names(dir / "quarantine").size() == 1);
    CHECK(read_bytes(dir / "notes.txt") == "mine");
    CHECK(ckpt_stdout("latest " + shell_quote(dir.path().string())).output == (dir / "checkpoint_epoch_7.pth").string() + "\n");
    CHECK(r.after.exit_code == 0);
  }
  SECTION("a flipped bit is found by the rehash and quarantined") {
    std::string bytes = read_bytes(dir / "checkpoint_epoch_5.pth");
    bytes[100] ^= 0x01;
    write_bytes(dir / "checkpoint_epoch_5.pth", bytes);
    auto r = repair(dir.path());
    CHECK_THAT(r.plan.output, Catch::Contains("quarantine") && Catch::Contains("hash"));
    CHECK(r.applied.exit_code == 0);
    CHECK(ckpt_stdout("latest " + shell_quote(dir.path().string())).output == (dir / "checkpoint_epoch_4.pth").string() + "\n");
    CHECK(r.after.exit_code == 0);
  }
  SECTION("a leftover temp file is removed") {
    write_bytes(dir / "best_model.pth.tmp", "partial");
    make_old(dir / "best_model.pth.tmp");
    auto r = repair(dir.path());
    CHECK_THAT(r.plan.output, Catch::Contains("remove temp file"));
    CHECK(r.applied.exit_code == 0);
    CHECK_FALSE(std::filesystem::exists(dir / "best_model.pth.tmp"));
  }
  SECTION("a save killed midway is rolled forward or back") {
    std::vector<float> data;
    std::string bytes = real_payload(6, 0.99, 6, &data);
    REQUIRE(run_in_child([&] {
              StoreOptions options;
              options.max_to_keep = 3;
              store::test_hooks(options).on_step = [](std::string_view step) {
                if (step == "renamed") ::_exit(42);
              };
              CheckpointStore store(dir.path(), options);
              save_bytes(store, CheckpointKind::epoch, 6, bytes);
            }) == 42);
    auto r = repair(dir.path());
    CHECK_THAT(r.plan.output, Catch::Contains("roll forward") && Catch::Contains("checkpoint_epoch_6.pth"));
    CHECK(r.applied.exit_code == 0);
    CHECK(ckpt_stdout("latest " + shell_quote(dir.path().string())).output == (dir / "checkpoint_epoch_6.pth").string() + "\n");
  }
  SECTION("a deleted index is rebuilt from the files") {
    for (const char* name : {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"}) std::filesystem::remove(dir / name);
    auto r = repair(dir.path());
    CHECK(r.plan.exit_code == 1);
    CHECK_THAT(r.plan.output, Catch::Contains("rebuild the index"));
    CHECK(r.applied.exit_code == 0);
    CHECK_THAT(r.applied.output, Catch::Contains("adopted 4"));
    CHECK(ckpt_stdout("latest " + shell_quote(dir.path().string())).output == (dir / "checkpoint_epoch_5.pth").string() + "\n");
    json best = json::parse(ckpt_stdout("--json best " + shell_quote(dir.path().string())).output);
    CHECK(best["metric"].get<double>() == Approx(0.9));
  }
  SECTION("a truncated index is kept aside and rebuilt") {
    std::string index = read_bytes(dir / "index.sqlite");
    write_bytes(dir / "index.sqlite", index.substr(0, 3000));
    std::filesystem::remove(dir / "index.sqlite-wal");
    std::filesystem::remove(dir / "index.sqlite-shm");
    auto r = repair(dir.path());
    CHECK(r.plan.exit_code == 1);
    CHECK_THAT(r.plan.output, Catch::Contains("rebuild the index") && Catch::Contains("kept aside"));
    CHECK(r.applied.exit_code == 0);
    bool kept = false;
    for (const auto& name : file_names(dir.path())) kept |= name.rfind("index.sqlite.old-", 0) == 0;
    CHECK(kept);
    CHECK(ckpt_cli("verify " + shell_quote(dir.path().string())).exit_code == 0);
  }
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("ckpt repair refuses an index from a newer ckpt unless --force", "[cli][repair]") {
  TestDir dir("repair");
  make_run(dir.path());
  run_command("sqlite3 " + shell_quote((dir / "index.sqlite").string()) + " 'PRAGMA user_version = 99'");
  auto refused = ckpt_cli("repair --apply " + shell_quote(dir.path().string()));
  CHECK(refused.exit_code == 3);
  CHECK_THAT(refused.output, Catch::Contains("newer") && Catch::Contains("--force"));
  auto forced = ckpt_cli("repair --apply --force " + shell_quote(dir.path().string()));
  CHECK(forced.exit_code == 0);
  CHECK(ckpt_stdout("latest " + shell_quote(dir.path().string())).output == (dir / "checkpoint_epoch_5.pth").string() + "\n");
}

TEST_CASE("the ckpt tool does not link libtorch, so it starts in milliseconds", "[cli]") {
  auto libraries = run_command("ldd " + shell_quote(CKPT_CLI) + " 2>&1");
  REQUIRE(libraries.exit_code == 0);
  CHECK_THAT(libraries.output, !Catch::Contains("libtorch") && !Catch::Contains("libc10"));
  CHECK(ckpt_cli("--version").output == std::string(ckpt::version()) + "\n");
}

// ---- untrusted text: what a checkpoint file or an index holds is escaped when printed ----

TEST_CASE("printable escapes control characters, backslashes and bytes that are not UTF-8", "[cli][printable]") {
  using format::printable;
  SECTION("valid UTF-8 text passes through") {
    CHECK(printable("") == "");
    CHECK(printable("model.0.weight 'x' ~") == "model.0.weight 'x' ~");
    CHECK(printable("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80") == "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80");
    CHECK(printable("\xc2\xa0") == "\xc2\xa0");              // U+00A0, the first code point after C1
    CHECK(printable("\xf4\x8f\xbf\xbf") == "\xf4\x8f\xbf\xbf");  // U+10FFFF, the last one
  }
  SECTION("C0 controls: newline, carriage return and tab by name, the others in hex") {
    CHECK(printable("a\nb") == "a\\nb");
    CHECK(printable("a\rb") == "a\\rb");
    CHECK(printable("a\tb") == "a\\tb");
    CHECK(printable("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07");
    CHECK(printable("\x1b[2J") == "\\x1b[2J");
    CHECK(printable(std::string_view("\0", 1)) == "\\x00");
    CHECK(printable("\x01\x1f") == "\\x01\\x1f");
  }
  SECTION("DEL and the C1 controls") {
    CHECK(printable("\x7f") == "\\x7f");
    CHECK(printable("\xc2\x80") == "\\u0080");
    CHECK(printable("\xc2\x9b" "2J") == "\\u009b2J");  // CSI
    CHECK(printable("\xc2\x9f") == "\\u009f");
  }
  SECTION("a backslash is doubled, so an escape in the output always means an escaped byte") {
    CHECK(printable("\\x1b") == "\\\\x1b");
    CHECK(printable("\\") == "\\\\");
  }
  SECTION("bytes that are not valid UTF-8 are written \\xNN, one by one") {
    CHECK(printable("\xff\xfe") == "\\xff\\xfe");
    CHECK(printable("\x80") == "\\x80");                              // a lone continuation byte
    CHECK(printable("\xc0\xaf") == "\\xc0\\xaf");                     // overlong '/'
    CHECK(printable("\xc1\xbf") == "\\xc1\\xbf");                     // overlong
    CHECK(printable("\xe0\x80\xaf") == "\\xe0\\x80\\xaf");            // overlong, 3 bytes
    CHECK(printable("\xf0\x80\x80\xaf") == "\\xf0\\x80\\x80\\xaf");   // overlong, 4 bytes
    CHECK(printable("\xc0\x9b") == "\\xc0\\x9b");                     // overlong C1 CSI
    CHECK(printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");            // surrogate U+D800
    CHECK(printable("\xed\xbf\xbf") == "\\xed\\xbf\\xbf");            // surrogate U+DFFF
    CHECK(printable("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");   // U+110000
    CHECK(printable("\xf5\x80\x80\x80") == "\\xf5\\x80\\x80\\x80");   // never a lead byte
    CHECK(printable("ab\xe2\x82") == "ab\\xe2\\x82");                 // truncated at the end
    CHECK(printable("\xe2\x82" "A") == "\\xe2\\x82A");                // truncated by an ASCII byte
    CHECK(printable("\xe2\x1b[2J") == "\\xe2\\x1b[2J");               // ... by an escape sequence
  }
}

TEST_CASE("printable_message escapes like printable but leaves backslashes, so escaped names are not doubled", "[cli][printable]") {
  using format::printable;
  using format::printable_message;
  CHECK(printable_message("record '\x1b[2J\xff\r' \\ \xc2\x9b") == "record '\\x1b[2J\\xff\\r' \\ \\u009b");
  for (std::string text : {"\x1b]0;pwned\x07", "a\\b\n", "\xff\xfe\xed\xa0\x80", "caf\xc3\xa9"}) {
    CHECK(printable_message(printable(text)) == printable(text));
  }
}

TEST_CASE("json_safe keeps valid UTF-8 and writes each invalid byte as \\xNN", "[cli][printable]") {
  using format::json_safe;
  CHECK(json_safe("caf\xc3\xa9 \xf0\x9f\x98\x80") == "caf\xc3\xa9 \xf0\x9f\x98\x80");
  CHECK(json_safe("\x1b[2J\r\n\t\\") == "\x1b[2J\r\n\t\\");  // control characters are the encoder's job
  CHECK(json_safe("\xc2\x9b") == "\xc2\x9b");
  CHECK(json_safe("\xff\xfe") == "\\xff\\xfe");
  CHECK(json_safe("\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82") ==
        "\\xc0\\xaf|\\xed\\xa0\\x80|\\xf4\\x90\\x80\\x80|\\xe2\\x82");
  std::string hostile = "k\xff\x1b[2J\xed\xa0\x80";
  CHECK_THROWS(json(hostile).dump());  // why the tool needs it
  std::string dumped = json(json_safe(hostile)).dump();
  CHECK(json::parse(dumped).get<std::string>() == "k\\xff\x1b[2J\\xed\\xa0\\x80");
}

namespace {

const std::string kTitle = "\x1b]0;pwned\x07";  // sets the terminal window title
const std::string kClear = "\x1b[2J";           // clears the screen
const std::string kNotUtf8 = "\xff\xfe";

std::string le32(std::size_t n) {
  std::string bytes;
  for (int i = 0; i < 4; ++i) bytes += static_cast<char>((n >> (8 * i)) & 0xff);
  return bytes;
}

// A protocol-2 pickle of a dict of str to str, written by hand (BINUNICODE takes any bytes).
std::string pickle_str_dict(const std::vector<std::pair<std::string, std::string>>& items) {
  std::string p = "\x80\x02}(";
  for (const auto& [key, value] : items) p += "X" + le32(key.size()) + key + "X" + le32(value.size()) + value;
  return p + "u.";
}

// A zip payload as torch.save writes one: archive/data.pkl and archive/version; no tensors.
std::string zip_of_pickle(const std::string& pickle, const std::vector<std::string>& extra_records = {}) {
  StringSink sink;
  format::ZipWriter zip(sink, "archive");
  zip.write_record("data.pkl", pickle.data(), pickle.size());
  zip.write_record("version", "3\n", 2);
  for (const auto& name : extra_records) zip.write_record(name, "", 0);
  zip.finish();
  return sink.bytes;
}

// What a terminal would act on: ESC, BEL, CR, a raw C1 CSI, and bytes that are not UTF-8.
void check_inert(const std::string& output) {
  INFO(output);
  CHECK(output.find('\x1b') == std::string::npos);
  CHECK(output.find('\x07') == std::string::npos);
  CHECK(output.find('\r') == std::string::npos);
  CHECK(output.find("\xc2\x9b") == std::string::npos);
  CHECK(output.find('\xff') == std::string::npos);
  CHECK(output.find('\xfe') == std::string::npos);
}


}  // namespace

TEST_CASE("ckpt show and diff escape hostile keys and values; --json stays valid", "[cli][untrusted]") {
  TestDir dir("cli-untrusted");
  const std::string a = (dir / "a.pth").string(), b = (dir / "b.pth").string();
  write_bytes(a, zip_of_pickle(pickle_str_dict({{kTitle, "v1"}, {kClear, "x\ry"}, {kNotUtf8, "ok"},
                                                 {"csi", "\xc2\x9b" "31m"}, {"plain", kTitle}})));
  write_bytes(b, zip_of_pickle(pickle_str_dict({{kTitle, "v2" + kClear}, {kNotUtf8, "ok\xff"}, {"only\rB", "1"}})));

  auto show = ckpt_cli("show " + shell_quote(a));
  CHECK(show.exit_code == 0);
  check_inert(show.output);
  CHECK_THAT(show.output, Catch::Contains("\\x1b]0;pwned\\x07") && Catch::Contains("\\x1b[2J") &&
                              Catch::Contains("'x\\ry'") && Catch::Contains("\\xff\\xfe") && Catch::Contains("\\u009b31m"));
  // The table's columns line up on the escaped text: each value column starts at the same offset.
  {
    std::istringstream lines(show.output);
    std::string line, header;
    std::getline(lines, header);
    std::set<std::size_t> columns;
    while (std::getline(lines, line)) columns.insert(line.find(" str "));
    CHECK(columns.size() == 1);
  }

  auto shown = ckpt_stdout("--json show " + shell_quote(a));
  CHECK(shown.exit_code == 0);
  check_inert(shown.output);
  json parsed = json::parse(shown.output);
  std::set<std::string> paths;
  for (const auto& entry : parsed["entries"]) paths.insert(entry["path"].get<std::string>());
  CHECK(paths == std::set<std::string>{kTitle, kClear, "\\xff\\xfe", "csi", "plain"});

  auto diff = ckpt_cli("diff " + shell_quote(a) + " " + shell_quote(b));
  CHECK(diff.exit_code == 1);
  check_inert(diff.output);
  CHECK_THAT(diff.output, Catch::Contains("'v2\\x1b[2J'") && Catch::Contains("only\\rB") && Catch::Contains("'ok\\xff'"));
  auto diffed = ckpt_stdout("--json diff " + shell_quote(a) + " " + shell_quote(b));
  CHECK(diffed.exit_code == 1);
  check_inert(diffed.output);
  json differences = json::parse(diffed.output);
  bool found = false;
  for (const auto& d : differences) found |= d["path"] == "\\xff\\xfe" && d["detail"] == "'ok' vs 'ok\\xff'";
  CHECK(found);
}

TEST_CASE("an error quoting a hostile name from a file is printed escaped", "[cli][untrusted]") {
  TestDir dir("cli-untrusted");
  SECTION("a refused pickle global") {
    const std::string file = (dir / "global.pth").string();
    write_bytes(file, zip_of_pickle("\x80\x02" "c" + kClear + "evil\nx\n."));
    auto shown = ckpt_cli("show " + shell_quote(file));
    CHECK(shown.exit_code == 3);
    check_inert(shown.output);
    CHECK_THAT(shown.output, Catch::Contains("global '\\x1b[2Jevil.x'") && Catch::Contains("not allowed"));
    CHECK(std::count(shown.output.begin(), shown.output.end(), '\n') == 1);
  }
  SECTION("a zip record name that appears twice") {
    const std::string file = (dir / "twice.pth").string();
    write_bytes(file, zip_of_pickle(pickle_str_dict({{"k", "v"}}), {kTitle + kNotUtf8 + "\r", kTitle + kNotUtf8 + "\r"}));
    for (const char* command : {"show ", "diff "}) {
      INFO(command);
      auto result = ckpt_stderr(command + shell_quote(file) + (command == std::string("diff ") ? " " + shell_quote(file) : ""));
      CHECK(result.exit_code == 3);
      check_inert(result.output);
      CHECK_THAT(result.output, Catch::Contains("record '\\x1b]0;pwned\\x07\\xff\\xfe\\r' appears twice"));
    }
    auto result = ckpt_stdout("--json show " + shell_quote(file));  // under --json the error is JSON on stdout
    CHECK(result.exit_code == 3);
    check_inert(result.output);
    CHECK_THAT(json::parse(result.output)["error"]["message"].get<std::string>(),
               Catch::Contains("record '\\x1b]0;pwned\\x07\\xff\\xfe\\r' appears twice"));
  }
  SECTION("a file name given on the command line") {
    const std::string file = (dir / (kClear + "missing.pth")).string();
    auto result = ckpt_cli("show " + shell_quote(file));
    CHECK(result.exit_code == 3);
    check_inert(result.output);
    CHECK_THAT(result.output, Catch::Contains("/\\x1b[2Jmissing.pth:"));
  }
}

TEST_CASE("ckpt ls, latest, history and verify escape hostile text from the index", "[cli][untrusted]") {
  TestDir dir("cli-untrusted");
  make_run(dir.path());
  {
    SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READWRITE);
    SQLite::Statement update(db, "UPDATE checkpoints SET file = ?, created_at = ? WHERE kind = 'epoch' AND epoch = 5");
    update.bind(1, kTitle + kNotUtf8 + "\r.pth");
    update.bind(2, kClear + "\xc2\x9b");
    REQUIRE(update.exec() == 1);
    SQLite::Statement insert(db, "INSERT INTO events (event, detail) VALUES (?, ?)");
    insert.bind(1, "note" + kClear);
    insert.bind(2, kTitle + " \xed\xa0\x80\r\nfake line");
    insert.exec();
  }
  const std::string d = shell_quote(dir.path().string());
  for (const char* command : {"ls ", "ls --all ", "latest -v ", "history ", "verify "}) {
    INFO(command);
    auto result = ckpt_cli(command + d);
    check_inert(result.output);
    CHECK_THAT(result.output, Catch::Contains("\\x1b]0;pwned\\x07"));
  }
  CHECK_THAT(ckpt_cli("history " + d).output, Catch::Contains("\\xed\\xa0\\x80\\r\\nfake line") && Catch::Contains("note\\x1b[2J"));
  CHECK_THAT(ckpt_cli("latest -v " + d).output, Catch::Contains("saved \\x1b[2J\\u009b"));
  // In JSON text the replacement `\xff` of an invalid byte is written "\\xff".
  const std::string file_bytes = "\\\\xff\\\\xfe", detail_bytes = "\\\\xed\\\\xa0\\\\x80";
  for (const auto& [command, escaped] : std::vector<std::pair<std::string, std::string>>{
           {"--json ls ", file_bytes}, {"--json ls --all ", file_bytes}, {"--json latest ", file_bytes},
           {"--json history ", detail_bytes}, {"--json verify ", file_bytes}}) {
    INFO(command);
    auto result = ckpt_stdout(command + d);
    check_inert(result.output);
    CHECK_NOTHROW(json::parse(result.output));
    CHECK_THAT(result.output, Catch::Contains(escaped));
  }
  json latest = json::parse(ckpt_stdout("--json latest " + d).output);
  CHECK(latest["file"] == kTitle + "\\xff\\xfe\r.pth");
}

// ---- issue 12: what a new user ran into ----

namespace {

// Runs a Python script (math, numpy and torch imported) in `dir`, e.g. to torch.save a
// file ckpt's writer would not write; the test stops if it fails.
void python_in(const std::filesystem::path& dir, const std::string& code) {
  const std::filesystem::path script = dir / "make.py";
  write_bytes(script, "import math, os, sys\nimport numpy as np\nimport torch\nos.chdir(sys.argv[1])\n" + code);
  auto made = run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script.string()) + " " + shell_quote(dir.string()) + " 2>&1");
  std::filesystem::remove(script);
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
}

// Every file's bytes by name, the index's included: what "changed nothing" is checked
// against. Any SQLite reader of a WAL database may create index.sqlite-shm (shared memory,
// no data) and an empty index.sqlite-wal: a WAL's bytes count, its existence does not.
std::map<std::string, std::string> snapshot(const std::filesystem::path& dir) {
  std::map<std::string, std::string> state;
  for (const auto& name : file_names(dir)) {
    if (name != "index.sqlite-shm") state[name] = read_bytes(dir / name);
  }
  if (state.count("index.sqlite-wal") && state["index.sqlite-wal"].empty()) state.erase("index.sqlite-wal");
  return state;
}


CheckpointRecord save_request(CheckpointStore& store, SaveRequest request, const std::string& bytes) {
  return store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

}  // namespace

TEST_CASE("ckpt gc --dry-run lists what gc would remove and changes nothing", "[cli][gc]") {
  TestDir dir("cli-gc");
  make_run(dir.path());  // epochs 3, 4, 5 kept (max_to_keep 3)
  const std::string d = shell_quote(dir.path().string());
  const auto before = snapshot(dir.path());

  auto nothing = ckpt_cli("gc --dry-run " + d);
  CHECK(nothing.exit_code == 0);
  const std::string e3 = (dir / "checkpoint_epoch_3.pth").string(), e4 = (dir / "checkpoint_epoch_4.pth").string(),
                    e5 = (dir / "checkpoint_epoch_5.pth").string();
  CHECK(nothing.output == "keep   " + e5 + ": newest; resume point; newest 3\nkeep   " + e4 + ": newest 3\nkeep   " + e3 +
                              ": newest 3\n0 checkpoints would be removed (retention: newest 3); nothing changed (--dry-run)\n");

  auto plan = ckpt_cli("gc --dry-run --keep 1 " + d);
  CHECK(plan.exit_code == 0);
  CHECK(plan.output == "keep   " + e5 + ": newest; resume point; newest 1\nremove " + e4 + ": beyond the newest 1\nremove " +
                           e3 + ": beyond the newest 1\n2 checkpoints would be removed (retention: newest 1); nothing "
                           "changed (--dry-run)\n");
  json planned = json::parse(ckpt_stdout("--json gc --dry-run --keep 1 " + d).output);
  REQUIRE(planned.size() == 3);
  CHECK(planned[0]["file"] == "checkpoint_epoch_5.pth");
  CHECK(planned[0]["action"] == "keep");
  CHECK(planned[0]["kept_by"] == json::array({"newest", "resume point", "newest 1"}));
  CHECK(planned[1]["file"] == "checkpoint_epoch_4.pth");
  CHECK(planned[1]["action"] == "remove");
  CHECK(planned[1]["reason"] == "beyond the newest 1");
  const auto after = snapshot(dir.path());
  for (const auto& [name, bytes] : before) {
    INFO(name);
    CHECK((after.count(name) && after.at(name) == bytes));
  }
  CHECK(after.size() == before.size());  // no file, no index byte changed

  {  // a reader: it needs no lock, so it runs beside a trainer
    CheckpointStore running(dir.path(), StoreOptions{3});
    CHECK(ckpt_cli("gc --dry-run --keep 1 " + d).exit_code == 0);
  }
  // And the real run removes exactly what the plan listed.
  json removed = json::parse(ckpt_stdout("--json gc --keep 1 " + d).output);
  REQUIRE(removed.size() == 2);
  CHECK(removed[0]["file"] == planned[1]["file"]);
  CHECK(removed[1]["file"] == planned[2]["file"]);
  CHECK(removed[0]["reason"] == "beyond the newest 1");
}

TEST_CASE("ckpt show --json gives ints, floats and bools as numbers and booleans, None as null", "[cli][python]") {
  TestDir dir("cli-json");
  python_in(dir.path(), "torch.save({'i': 3, 'neg': -7, 'big': 2**63 + 5, 'f': 0.1, 'b': True, 'no': False, 'n': None,\n"
                        "            's': 'hi', 'nan': math.nan, 'inf': math.inf, 'ninf': -math.inf, 'dt': torch.float16}, 'v.pth')\n");
  auto shown = ckpt_stdout("--json show " + shell_quote((dir / "v.pth").string()));
  REQUIRE(shown.exit_code == 0);
  json values;
  const json parsed = json::parse(shown.output);
  for (const auto& entry : parsed["entries"]) values[entry["path"].get<std::string>()] = entry;
  CHECK(values["i"]["value"] == 3);
  CHECK(values["i"]["value"].is_number_integer());
  CHECK(values["neg"]["value"] == -7);
  CHECK(values["big"]["value"].get<std::uint64_t>() == 9223372036854775813ull);
  CHECK(values["f"]["value"].is_number_float());
  CHECK(values["f"]["value"].get<double>() == 0.1);  // the same double, not an approximation
  CHECK(values["b"]["value"] == true);
  CHECK(values["no"]["value"] == false);
  CHECK(values["n"]["value"].is_null());
  CHECK(values["s"]["value"] == "'hi'");  // strings stay strings (Python's repr, as the table shows it)
  CHECK(values["dt"]["value"] == "torch.float16");
  for (const auto& [key, text] : std::vector<std::pair<std::string, std::string>>{{"nan", "nan"}, {"inf", "inf"}, {"ninf", "-inf"}}) {
    INFO(key);
    CHECK(values[key]["value"].is_null());
    CHECK(values[key]["value_text"] == text);
  }
  CHECK_FALSE(values["f"].contains("value_text"));
}

TEST_CASE("under --json an error is one JSON object on stdout, with the same exit codes", "[cli][json]") {
  TestDir dir("cli-json");
  make_run(dir.path());
  const std::string d = shell_quote(dir.path().string());
  auto error_of = [](const CommandResult& result) {
    INFO(result.output);
    json parsed = json::parse(result.output);  // exactly one document: parse() rejects trailing text
    REQUIRE(parsed.contains("error"));
    return parsed["error"];
  };
  SECTION("a missing checkpoint") {
    auto result = ckpt_stdout("--json show " + d + " epoch 1");  // rotated out
    CHECK(result.exit_code == 2);
    json error = error_of(result);
    CHECK(error["code"] == "invalid_argument");
    CHECK(error["exit"] == 2);
    CHECK(error["file"] == dir.path().string());
    CHECK(error["message"] == dir.path().string() + ": no epoch checkpoint 1");
    CHECK(ckpt_stderr("--json show " + d + " epoch 1").output.empty());  // nothing on stderr
  }
  SECTION("a usage error, whether --json comes before or after the command") {
    for (const char* command : {"--json ls", "ls --json", "--json nonsense", "--json gc --keep x " }) {
      INFO(command);
      auto result = ckpt_stdout(command);
      CHECK(result.exit_code == 2);
      json error = error_of(result);
      CHECK(error["code"] == "usage");
      CHECK(error["exit"] == 2);
      CHECK(error["file"].is_null());
      CHECK_FALSE(error["message"].get<std::string>().empty());
    }
  }
  SECTION("an I/O error") {
    const std::string missing = (dir / "missing.pth").string();
    auto result = ckpt_stdout("--json show " + shell_quote(missing));
    CHECK(result.exit_code == 3);
    json error = error_of(result);
    CHECK(error["code"] == "io");
    CHECK(error["exit"] == 3);
    CHECK(error["file"] == missing);
    CHECK(error["os_error"] == ENOENT);
    CHECK_THAT(error["message"].get<std::string>(), Catch::StartsWith(missing + ": "));
  }
  SECTION("a locked directory") {
    CheckpointStore running(dir.path(), StoreOptions{3});
    auto result = ckpt_stdout("--json gc " + d);
    CHECK(result.exit_code == 3);
    CHECK(error_of(result)["code"] == "locked");
  }
  SECTION("without --json, errors stay one line on stderr") {
    auto result = ckpt_cli("show " + d + " epoch 1");
    CHECK(result.exit_code == 2);
    CHECK(result.output == "ckpt: " + dir.path().string() + ": no epoch checkpoint 1\n");
  }
}

TEST_CASE("every command taking DIR reports a missing directory as missing, and no writer creates it", "[cli]") {
  TestDir parent("cli-missing");
  const std::filesystem::path absent = parent / "absent";
  const std::string a = shell_quote(absent.string());
  for (const std::string& command : {"ls " + a, "latest " + a, "best " + a, "show " + a + " best", "show " + a + " epoch 3",
                                     "history " + a, "verify " + a, "gc " + a, "gc --dry-run " + a, "rm " + a + " 1",
                                     "repair " + a, "repair --apply " + a, "import " + a, "watch " + a + " --exec true"}) {
    INFO(command);
    auto result = ckpt_cli(command);
    CHECK(result.exit_code == 3);
    CHECK(result.output == "ckpt: " + absent.string() + ": no such directory\n");
    CHECK_FALSE(std::filesystem::exists(absent));
  }
  write_bytes(absent, "a file");
  auto file = ckpt_cli("gc " + a);
  CHECK(file.exit_code == 3);
  CHECK(file.output == "ckpt: " + absent.string() + ": not a directory\n");
}

TEST_CASE("ckpt show --key selects entries by glob on their dotted paths", "[cli][python]") {
  TestDir dir("cli-key");
  python_in(dir.path(), "torch.manual_seed(0)\n"
                        "model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))\n"
                        "torch.save({'epoch': 4, 'val_acc': 0.5, 'model': model.state_dict()}, 'k.pth')\n");
  const std::string f = shell_quote((dir / "k.pth").string());
  auto paths_of = [](const std::string& output) {
    std::vector<std::string> paths;
    const json parsed = json::parse(output);
    for (const auto& entry : parsed["entries"]) paths.push_back(entry["path"]);
    return paths;
  };
  CHECK(paths_of(ckpt_stdout("--json show " + f + " --key 'model.*.weight'").output) ==
        std::vector<std::string>{"model.0.weight", "model.2.weight"});
  CHECK(paths_of(ckpt_stdout("--json show --key epoch --key 'val_*' " + f).output) == std::vector<std::string>{"epoch", "val_acc"});
  CHECK(paths_of(ckpt_stdout("--json show " + f + " --key 'model.*'").output).size() == 4);  // * matches dots too
  auto table = ckpt_cli("show " + f + " --key 'model.2.*'");
  CHECK(table.exit_code == 0);
  CHECK_THAT(table.output, Catch::Contains("model.2.weight") && Catch::Contains("model.2.bias") && !Catch::Contains("model.0") &&
                               !Catch::Contains("epoch"));
  auto none = ckpt_cli("show " + f + " --key optimizer.*");
  CHECK(none.exit_code == 1);
  CHECK_THAT(none.output, Catch::Contains("no entry matches --key optimizer.*"));
}

TEST_CASE("ckpt history --last N shows the N most recent events", "[cli]") {
  TestDir dir("cli-last");
  make_run(dir.path());
  const std::string d = shell_quote(dir.path().string());
  json all = json::parse(ckpt_stdout("--json history " + d).output);
  REQUIRE(all.size() > 3);
  json last = json::parse(ckpt_stdout("--json history --last 2 " + d).output);
  REQUIRE(last.size() == 2);
  CHECK(last[0] == all[all.size() - 2]);
  CHECK(last[1] == all[all.size() - 1]);
  auto table = ckpt_cli("history " + d + " --last 3");
  CHECK(std::count(table.output.begin(), table.output.end(), '\n') == 4);  // the header and 3 events
  CHECK(json::parse(ckpt_stdout("--json history --last 1000 " + d).output) == all);
  CHECK(ckpt_cli("history --last 0 " + d).exit_code == 2);
}

TEST_CASE("ckpt show --stats always counts NaN and Inf; min, max and mean are of the finite elements", "[cli][python]") {
  TestDir dir("cli-stats");
  python_in(dir.path(), "torch.save({'w': torch.tensor([1.0, math.nan, math.inf, -math.inf, 3.0]),\n"
                        "            'ok': torch.tensor([1.0, 2.0]), 'bad': torch.tensor([math.nan, math.inf])}, 's.pth')\n");
  const std::string f = shell_quote((dir / "s.pth").string());
  auto table = ckpt_cli("show --stats " + f);
  CHECK(table.exit_code == 0);
  CHECK_THAT(table.output, Catch::Contains("float32 [5]  20 B  min 1 max 3 mean 2  NaN 1 Inf 2") &&
                               Catch::Contains("float32 [2]  8 B  min 1 max 2 mean 1.5  NaN 0 Inf 0") &&
                               Catch::Contains("min - max - mean - (no finite element)  NaN 1 Inf 1"));
  json stats;
  const json parsed = json::parse(ckpt_stdout("--json show --stats " + f).output);
  for (const auto& entry : parsed["entries"]) {
    stats[entry["path"].get<std::string>()] = entry["stats"];
  }
  CHECK(stats["w"] == json{{"min", 1.0}, {"max", 3.0}, {"mean", 2.0}, {"nan", 1}, {"inf", 2}});
  CHECK(stats["ok"] == json{{"min", 1.0}, {"max", 2.0}, {"mean", 1.5}, {"nan", 0}, {"inf", 0}});
  CHECK(stats["bad"] == json{{"min", nullptr}, {"max", nullptr}, {"mean", nullptr}, {"nan", 1}, {"inf", 1}});
}

TEST_CASE("ckpt verify names each file that would not load and why, and exits 1", "[cli][python]") {
  TestDir dir("cli-verify");
  make_run(dir.path());
  TestDir made("cli-verify-py");
  python_in(made.path(), "torch.save({'epoch': 6, 'val_acc': np.float64(0.9)}, 'np.pth')\n");
  {
    CheckpointStore store(dir.path(), StoreOptions{3});
    save_bytes(store, CheckpointKind::epoch, 6, read_bytes(made / "np.pth"), 0.9);  // the bytes are as committed
  }
  const std::string d = shell_quote(dir.path().string());
  auto verified = ckpt_cli("verify " + d);
  CHECK(verified.exit_code == 1);
  CHECK_THAT(verified.output, Catch::Contains("WOULD NOT LOAD  " + (dir / "checkpoint_epoch_6.pth").string()) &&
                                  Catch::Contains("numpy") && Catch::Contains("not allowed") &&
                                  Catch::Contains("4 checkpoints verified, 3 ok, 0 mismatched, 1 would not load") &&
                                  !Catch::Contains("MISMATCH"));
  json rows = json::parse(ckpt_stdout("--json verify " + d).output);
  bool found = false;
  for (const auto& row : rows) {
    if (row["file"] != "checkpoint_epoch_6.pth") continue;
    found = true;
    CHECK(row["ok"] == false);
    CHECK_THAT(row["problem"].get<std::string>(), Catch::StartsWith("would not load: ") && Catch::Contains("numpy"));
  }
  CHECK(found);
}

TEST_CASE("ckpt ls and best -v say which epoch the best is of and where its metric came from", "[cli]") {
  TestDir dir("cli-best");
  std::vector<float> data;
  {
    CheckpointStore store(dir.path(), StoreOptions{3});
    for (int epoch = 1; epoch <= 3; ++epoch) save_bytes(store, CheckpointKind::epoch, epoch, real_payload(epoch, 0.5, 1, &data), 0.5);
    SaveRequest best;
    best.kind = CheckpointKind::best;
    best.metric = 0.875;
    best.state_epoch = 2;
    save_request(store, best, real_payload(2, 0.875, 2, &data));
    SaveRequest interrupt;
    interrupt.kind = CheckpointKind::interrupt;
    interrupt.state_epoch = 3;
    save_request(store, interrupt, real_payload(3, 0.5, 3, &data));
  }
  const std::string d = shell_quote(dir.path().string());
  auto ls = ckpt_cli("ls " + d);
  CHECK_THAT(ls.output, Catch::Matches("(.|\n)*\n[0-9]+ +best +2 +0\\.875 (.|\n)*") &&
                            Catch::Matches("(.|\n)*\n[0-9]+ +interrupt +3 +- (.|\n)*"));
  json rows = json::parse(ckpt_stdout("--json ls " + d).output);
  CHECK(rows[0]["kind"] == "best");
  CHECK(rows[0]["epoch"].is_null());  // the row's own epoch: only epoch checkpoints have one
  CHECK(rows[0]["state_epoch"] == 2);
  CHECK(rows[0]["metric_source"] == "the save's argument");
  CHECK(rows[0]["origin"] == "saved");
  auto best = ckpt_stdout("best -v " + d);
  CHECK_THAT(best.output, Catch::Contains("best model, from epoch 2, metric 0.875 (the save's argument), saved ") &&
                              !Catch::Contains("check it is this run's"));
}

TEST_CASE("ckpt latest -v warns when the resume point is a file the store did not write", "[cli]") {
  TestDir dir("cli-origin");
  make_run(dir.path());
  const std::string d = shell_quote(dir.path().string());
  CHECK_THAT(ckpt_stdout("latest -v " + d).output, !Catch::Contains("check it is this run's"));
  std::vector<float> data;
  SECTION("adopted: a complete file found without an index row") {
    write_bytes(dir / "checkpoint_epoch_7.pth", real_payload(7, 0.95, 7, &data));
    { CheckpointStore store(dir.path(), StoreOptions{3}); }  // opening adopts it
    auto latest = ckpt_stdout("latest -v " + d);
    CHECK_THAT(latest.output, Catch::StartsWith((dir / "checkpoint_epoch_7.pth").string() + "\n") &&
                                  Catch::Contains("adopted from a file found without an index row: check it is this run's"));
    CHECK(json::parse(ckpt_stdout("--json latest " + d).output)["origin"] == "adopted");
  }
  SECTION("external: another program saved over a committed checkpoint") {
    // Other bytes (of another size, so that opening notices), complete and valid.
    write_bytes(dir / "checkpoint_epoch_5.pth", zip_of_pickle(pickle_str_dict({{"note", "saved by another program"}})));
    { CheckpointStore store(dir.path(), StoreOptions{3}); }
    auto latest = ckpt_stdout("latest -v " + d);
    CHECK_THAT(latest.output, Catch::StartsWith((dir / "checkpoint_epoch_5.pth").string() + "\n") &&
                                  Catch::Contains("another program saved this file over a committed checkpoint: check it is this run's"));
    CHECK(json::parse(ckpt_stdout("--json latest " + d).output)["origin"] == "external");
  }
}

TEST_CASE("the library's log lines: errors only, unless SPDLOG_LEVEL asks for more", "[cli][logging]") {
  TestDir dir("cli-log");
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 1, zip_payload(1));
  }
  write_bytes(dir / "checkpoint_epoch_2.pth", zip_payload(2));  // copied in: adopted, with a warning
  const std::string d = shell_quote(dir.path().string());
  auto quiet = ckpt_stderr("gc " + d);
  CHECK(quiet.exit_code == 0);
  CHECK(quiet.output.find("adopted") == std::string::npos);
  write_bytes(dir / "checkpoint_epoch_3.pth", zip_payload(3));
  auto told = run_command("SPDLOG_LEVEL=info " + std::string(CKPT_CLI) + " gc " + d + " 2>&1 >/dev/null");
  CHECK(told.exit_code == 0);
  CHECK_THAT(told.output, Catch::Contains("adopted") && Catch::Contains("epoch 3"));
}

TEST_CASE("ckpt ls shows a step column only when a checkpoint has a step; show, latest and --json give the step",
          "[cli][steps]") {
  TestDir dir("cli");
  make_run(dir.path());
  const std::string d = shell_quote(dir.path().string());
  CHECK_THAT(ckpt_stdout("ls " + d).output, !Catch::Contains("step"));  // the guide's directories look as before
  for (const auto& row : json::parse(ckpt_stdout("--json ls " + d).output)) CHECK(row["step"].is_null());
  std::vector<float> data;
  {
    CheckpointStore store(dir.path(), StoreOptions{3});
    SaveRequest request;
    request.step = 2500;
    request.epoch = 6;
    request.metric = 0.8;
    const std::string bytes = real_payload(6, 0.8, 6, &data);
    request.size_hint = bytes.size();
    store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
  }
  auto ls = ckpt_stdout("ls " + d);
  CHECK(ls.exit_code == 0);
  std::istringstream lines(ls.output);
  std::string header;
  std::getline(lines, header);
  CHECK_THAT(header, Catch::StartsWith("id") && Catch::Contains("kind") && Catch::Contains("epoch  step  metric"));
  bool step_row = false;
  for (std::string line; std::getline(lines, line);) {
    if (line.find("checkpoint_step_2500.pth") == std::string::npos) continue;
    step_row = true;
    CHECK(std::regex_search(line, std::regex("epoch +6 +2500 +0\\.8")));
  }
  CHECK(step_row);
  CHECK_THAT(ckpt_stdout("ls --all " + d).output, Catch::Contains("status") && Catch::Contains("step"));
  json rows = json::parse(ckpt_stdout("--json ls " + d).output);
  int with_step = 0;
  for (const auto& row : rows) {
    if (row["file"] == "checkpoint_step_2500.pth") {
      CHECK(row["step"] == 2500);
      CHECK(row["epoch"] == 6);
      ++with_step;
    } else {
      CHECK(row["step"].is_null());
    }
  }
  CHECK(with_step == 1);
  auto latest = ckpt_stdout("latest -v " + d);
  CHECK_THAT(latest.output, Catch::StartsWith((dir / "checkpoint_step_2500.pth").string() + "\n") &&
                                Catch::Contains("step 2500 (epoch 6): the most recently committed"));
  CHECK(json::parse(ckpt_stdout("--json latest " + d).output)["step"] == 2500);
  auto show = ckpt_stdout("show " + d + " step 2500");
  CHECK(show.exit_code == 0);
  CHECK_THAT(show.output, Catch::Contains("checkpoint_step_2500.pth: zip payload") && Catch::Contains(", step 2500\n") &&
                              Catch::Contains("model.w"));
  CHECK(json::parse(ckpt_stdout("--json show " + d + " latest").output)["step"] == 2500);
  CHECK(json::parse(ckpt_stdout("--json show " + d + " epoch 5").output)["step"].is_null());
  CHECK(ckpt_cli("show " + d + " step 2400").exit_code == 2);
  CHECK(ckpt_cli("show " + d + " epoch 6").exit_code == 2);  // epoch 6 is a step checkpoint, not checkpoint_epoch_6.pth
}
