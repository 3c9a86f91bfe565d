// `ckpt import` on directories the guide's Python CheckpointManager wrote: what it reads
// first, what it refuses, the retention it records, and what the index says of each file.
#include <algorithm>
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ckpt/reader.hpp"
#include "support/store_support.hpp"
#include "support/cli_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;
using nlohmann::json;

namespace {


// A directory written by the guide's CheckpointManager (tests/python/guide_checkpoint_manager.py)
// with the guide's basic loop: each epoch's state holds the best_acc so far; the epoch is
// saved; on a new best, best_acc is updated and the same state saved as the best model,
// so the best file's best_acc is the previous best. val_acc of epoch N is 0.5 + N * 0.05.
// `numpy_epoch`: that epoch's val_acc is a numpy float64, as `acc.item()` forgotten leaves
// it (torch.save pickles numpy's scalar global, which the restricted reader refuses).
// `first`: the epoch the loop starts at (a run resumed in Python), best_acc then taken from
// the directory's best model.
void guide_run(const std::filesystem::path& dir, int epochs, int max_to_keep, int numpy_epoch = 0, int first = 1) {
  TestDir scripts("guide-script");
  const std::filesystem::path script = scripts / "run.py";
  write_bytes(script,
              "import sys\n"
              "import numpy as np\n"
              "import torch\n"
              "sys.path.insert(0, sys.argv[5])\n"
              "from guide_checkpoint_manager import CheckpointManager\n"
              "directory, epochs, max_to_keep, numpy_epoch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])\n"
              "torch.manual_seed(0)\n"
              "model = torch.nn.Linear(3, 2)\n"
              "manager = CheckpointManager(directory, max_to_keep=max_to_keep)\n"
              "first = int(sys.argv[6])\n"
              "best = torch.load(directory + '/best_model.pth') if first > 1 else None\n"
              "best_acc = float(best['val_acc']) if best else 0.0\n"
              "for epoch in range(first, epochs + 1):\n"
              "    val_acc = 0.5 + epoch * 0.05\n"
              "    state = {'epoch': epoch, 'model': model.state_dict(), 'best_acc': best_acc, 'train_loss': 1.0 / epoch,\n"
              "             'val_acc': np.float64(val_acc) if epoch == numpy_epoch else val_acc}\n"
              "    manager.save_epoch_checkpoint(state, epoch)\n"
              "    if val_acc > best_acc:\n"
              "        best_acc = val_acc\n"
              "        manager.save_best_model(state, metric=best_acc)\n");
  auto made = run_command(std::string(CKPT_PYTHON) + " " + shell_quote(script.string()) + " " + shell_quote(dir.string()) + " " +
                          std::to_string(epochs) + " " + std::to_string(max_to_keep) + " " + std::to_string(numpy_epoch) + " " +
                          shell_quote(std::string(CKPT_SOURCE_DIR) + "/tests/python") + " " + std::to_string(first) + " 2>&1");
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
}

void make_old(const std::filesystem::path& file) {
  std::filesystem::last_write_time(file, std::filesystem::file_time_type::clock::now() - std::chrono::minutes(1));
}

// A file's mtime as the index writes times: UTC, ISO-8601, milliseconds (truncated).
std::string mtime_iso(const std::filesystem::path& file) {
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  std::tm tm{};
  gmtime_r(&st.st_mtim.tv_sec, &tm);
  char seconds[32];
  std::strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &tm);
  char text[48];
  std::snprintf(text, sizeof text, "%s.%03dZ", seconds, static_cast<int>(st.st_mtim.tv_nsec / 1000000));
  return text;
}

// Names, bytes and mtimes of every file: what "nothing touched" is checked against.
std::string snapshot(const std::filesystem::path& dir) {
  std::string state;
  for (const auto& name : file_names(dir)) state += name + " " + mtime_iso(dir / name) + "\n" + read_bytes(dir / name) + "\n";
  return state;
}

// The cells of the table row whose first cell is `first` (cells are separated by 2+ spaces).
std::vector<std::string> table_row(const std::string& output, const std::string& first) {
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    std::vector<std::string> cells;
    std::size_t start = 0;
    while (start < line.size()) {
      std::size_t gap = line.find("  ", start);
      cells.push_back(line.substr(start, gap - start));
      if (gap == std::string::npos) break;
      start = line.find_first_not_of(' ', gap);
    }
    if (!cells.empty() && cells[0] == first) return cells;
  }
  return {};
}

}  // namespace

TEST_CASE("ckpt import records each file's own epoch metric, its mtime and the run's retention; a second run changes nothing",
          "[cli][import][python]") {
  TestDir dir("cli-import");
  guide_run(dir.path(), 8, 5);  // epochs 4..8 kept, the best from epoch 8
  write_bytes(dir / "checkpoint_epoch_9.pth.tmp", "a save killed before os.replace");
  make_old(dir / "checkpoint_epoch_9.pth.tmp");
  const std::string d = shell_quote(dir.path().string());
  // The fixture is the guide's: its best file holds the previous best as best_acc.
  json best_acc = json::parse(ckpt_stdout("--json show " + shell_quote((dir / "best_model.pth").string()) + " --key best_acc").output);
  REQUIRE(best_acc["entries"][0]["value"].get<double>() == Approx(0.85));

  auto imported = ckpt_cli("import " + d);
  INFO(imported.output);
  CHECK(imported.exit_code == 0);
  CHECK_THAT(imported.output,
             Catch::Contains("retention: keep 5 (5 epoch files (4..8): the epochs before them were rotated out, so the run kept 5)\n") &&
                 Catch::Contains("adopted 6, quarantined 0, removed 1 temp file; 6 checkpoints indexed"));
  CHECK(table_row(imported.output, "adopted") == std::vector<std::string>{"adopted", "kind", "epoch", "metric", "metric source"});
  auto best_row = table_row(imported.output, "best_model.pth");
  REQUIRE(best_row.size() == 5);
  CHECK(best_row[1] == "best");
  CHECK(best_row[2] == "8");
  CHECK(best_row[3] == "0.9");
  // torch.save names the archive's folder after the file, so the bytes differ; the content is epoch 8's.
  CHECK(best_row[4] == "epoch 8, the same content");
  CHECK(table_row(imported.output, "checkpoint_epoch_6.pth") ==
        std::vector<std::string>{"checkpoint_epoch_6.pth", "epoch", "6", "0.8", "val_acc in the file"});
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_9.pth.tmp"));

  json rows = json::parse(ckpt_stdout("--json ls " + d).output);
  REQUIRE(rows.size() == 6);
  CHECK(rows[0]["kind"] == "best");
  CHECK(rows[0]["metric"].get<double>() == Approx(0.9));  // epoch 8's val_acc, not the file's best_acc (0.85)
  CHECK(rows[0]["state_epoch"] == 8);
  CHECK(rows[0]["origin"] == "adopted");
  CHECK_FALSE(rows[0]["metric_source"].get<std::string>().empty());
  for (const auto& row : rows) {
    INFO(row.dump());
    CHECK(row["created_at"] == mtime_iso(dir / row["file"].get<std::string>()));
    if (row["kind"] == "epoch") CHECK(row["metric"].get<double>() == Approx(0.5 + row["epoch"].get<int>() * 0.05));
  }
  CHECK(CheckpointReader(dir.path()).max_to_keep() == 5);
  CHECK_THAT(ckpt_stdout("best -v " + d).output, Catch::Contains("best model, from epoch 8, metric 0.9 (") &&
                                                    Catch::Contains("adopted from a file found without an index row"));

  const auto events = index_events(dir.path());
  const auto index = index_rows(dir.path());
  const std::string files = [&] {
    std::string state;
    for (const auto& name : file_names(dir.path())) {
      if (name.rfind("index.", 0) != 0) state += name + "\n" + read_bytes(dir / name);
    }
    return state;
  }();
  auto again = ckpt_cli("import " + d);
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.output, Catch::Contains("retention: keep 5 (the retention the index records)") && Catch::Contains("adopted 0,") &&
                               !Catch::Contains("\nbest_model.pth"));
  CHECK(index_events(dir.path()) == events);
  CHECK(index_rows(dir.path()).size() == index.size());
  std::string files_after;
  for (const auto& name : file_names(dir.path())) {
    if (name.rfind("index.", 0) != 0) files_after += name + "\n" + read_bytes(dir / name);
  }
  CHECK(files_after == files);
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("the Python guide writing on after an import: its new files are adopted, its new best is an external save",
          "[cli][import][python][external]") {
  TestDir dir("cli-import");
  guide_run(dir.path(), 5, 3);  // epochs 3..5 kept, the best from epoch 5
  const std::string d = shell_quote(dir.path().string());
  REQUIRE(ckpt_cli("import " + d).exit_code == 0);
  // The same run resumed in Python: epochs 6 and 7 (new bests), its rotation deletes 3 and 4.
  guide_run(dir.path(), 7, 3, 0, /*first=*/6);
  REQUIRE_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_4.pth"));
  {
    CheckpointStore store(dir.path(), StoreOptions{3});
    const RecoveryReport& report = store.last_recovery();
    CHECK(report.adopted == 2);  // epochs 6 and 7
    CHECK(report.missing == 2);  // 3 and 4, rotated out by Python
    CHECK(report.quarantined == 0);
    auto latest = store.load_latest();
    REQUIRE(latest);
    CHECK(latest->record.epoch == 7);
    // best_model.pth has its old size and other bytes: noticed when loaded, adopted as
    // another writer's save (never quarantined), described from epoch 7, the same content.
    auto best = store.load_best();
    REQUIRE(best);
    CHECK(best->record.origin == "external");
    CHECK(best->record.state_epoch == 7);
    CHECK(best->record.metric == Approx(0.85));
    CHECK(best->record.metric_source == "epoch 7, the same content");
  }
  CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
  CHECK_THAT(ckpt_stdout("latest -v " + d).output, Catch::Contains("checkpoint_epoch_7.pth"));
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("ckpt repair --apply rebuilds a lost index with the retention the files show", "[cli][import][python][repair]") {
  TestDir dir("cli-import");
  guide_run(dir.path(), 8, 3);  // epochs 6..8 kept
  const std::string d = shell_quote(dir.path().string());
  auto repaired = ckpt_cli("repair --apply " + d);
  INFO(repaired.output);
  CHECK(repaired.exit_code == 0);
  CHECK_THAT(repaired.output, Catch::Contains("retention: keep 3 (3 epoch files (6..8)"));
  CHECK(CheckpointReader(dir.path()).max_to_keep() == 3);
}

TEST_CASE("ckpt import infers the retention from the epoch files unless given --keep", "[cli][import][python]") {
  TestDir dir("cli-import");
  const std::string d = shell_quote(dir.path().string());
  SECTION("epochs rotated out: as many as are left") {
    guide_run(dir.path(), 8, 3);
    auto imported = ckpt_cli("import " + d);
    CHECK(imported.exit_code == 0);
    CHECK_THAT(imported.output, Catch::Contains("retention: keep 3 (3 epoch files (6..8): the epochs before them were rotated out"));
    CHECK(CheckpointReader(dir.path()).max_to_keep() == 3);
  }
  SECTION("no sign of rotation: the guide's default") {
    guide_run(dir.path(), 3, 5);
    auto imported = ckpt_cli("import " + d);
    CHECK(imported.exit_code == 0);
    CHECK_THAT(imported.output, Catch::Contains("retention: keep 5 (3 epoch files (1..3): no sign of rotation: the guide's default, 5)"));
    CHECK(CheckpointReader(dir.path()).max_to_keep() == 5);
  }
  SECTION("--keep: recorded; import itself removes nothing") {
    guide_run(dir.path(), 8, 5);
    auto imported = ckpt_cli("import --keep 2 " + d);
    CHECK(imported.exit_code == 0);
    CHECK_THAT(imported.output, Catch::Contains("retention: keep 2 (--keep)") && Catch::Contains("adopted 6"));
    CHECK(CheckpointReader(dir.path()).max_to_keep() == 2);
    for (int epoch = 4; epoch <= 8; ++epoch) CHECK(std::filesystem::exists(dir / ("checkpoint_epoch_" + std::to_string(epoch) + ".pth")));
    json planned = json::parse(ckpt_stdout("--json gc --dry-run " + d).output);
    REQUIRE(planned.size() == 5);  // every epoch checkpoint, with what keeps it or why it goes
    CHECK(std::count_if(planned.begin(), planned.end(), [](const json& c) { return c["action"] == "remove"; }) ==
          3);  // what the next gc or epoch save would rotate out
  }
}

TEST_CASE("ckpt import refuses a directory with a file that would not load, touching nothing, unless --allow-unloadable",
          "[cli][import][python]") {
  TestDir dir("cli-import");
  guide_run(dir.path(), 5, 5, /*numpy_epoch=*/3);
  const std::string d = shell_quote(dir.path().string());
  const std::string before = snapshot(dir.path());

  auto refused = ckpt_cli("import " + d);
  INFO(refused.output);
  CHECK(refused.exit_code == 3);
  CHECK_THAT(refused.output, Catch::StartsWith("would not load  checkpoint_epoch_3.pth  data.pkl: global 'numpy.core.multiarray.scalar' is not allowed") &&
                                 Catch::Contains("1 of 6 checkpoint files would not load") && Catch::Contains("--allow-unloadable") &&
                                 !Catch::Contains("retention"));
  CHECK_FALSE(std::filesystem::exists(dir / "index.sqlite"));
  CHECK(snapshot(dir.path()) == before);

  auto as_json = ckpt_stdout("--json import " + d);
  CHECK(as_json.exit_code == 3);
  json parsed = json::parse(as_json.output);
  CHECK(parsed["error"]["code"] == "format");
  CHECK(parsed["error"]["exit"] == 3);
  CHECK(parsed["error"]["file"] == dir.path().string());
  REQUIRE(parsed["would_not_load"].size() == 1);
  CHECK(parsed["would_not_load"][0]["file"] == "checkpoint_epoch_3.pth");
  CHECK_THAT(parsed["would_not_load"][0]["reason"].get<std::string>(), Catch::Contains("numpy.core.multiarray.scalar"));
  CHECK(snapshot(dir.path()) == before);

  auto allowed = ckpt_cli("import --allow-unloadable " + d);
  CHECK(allowed.exit_code == 0);
  CHECK_THAT(allowed.output, Catch::StartsWith("would not load  checkpoint_epoch_3.pth  ") &&
                                 Catch::Contains("adopted 5, left 1 that would not load,"));
  json rows = json::parse(ckpt_stdout("--json ls " + d).output);
  CHECK(rows.size() == 5);
  for (const auto& row : rows) CHECK(row["file"] != "checkpoint_epoch_3.pth");
  CHECK(std::filesystem::exists(dir / "checkpoint_epoch_3.pth"));  // left where it is
}

TEST_CASE("ckpt import leaves another program's temp file younger than 10 s, and says so", "[cli][import][python]") {
  TestDir dir("cli-import");
  guide_run(dir.path(), 2, 5);
  write_bytes(dir / "checkpoint_epoch_3.pth.tmp", "torch.save may still be writing this");
  auto imported = ckpt_cli("import " + shell_quote(dir.path().string()));
  CHECK(imported.exit_code == 0);
  CHECK_THAT(imported.output,
             Catch::Contains("left checkpoint_epoch_3.pth.tmp: another program's temp file, written less than 10 s ago (a save in progress?)") &&
                 Catch::Contains("adopted 3, quarantined 0, removed 0 temp files"));
  CHECK(std::filesystem::exists(dir / "checkpoint_epoch_3.pth.tmp"));
  json out = json::parse(ckpt_stdout("--json import " + shell_quote(dir.path().string())).output);
  CHECK(out["temp_files_left"] == json::array({"checkpoint_epoch_3.pth.tmp"}));
}
