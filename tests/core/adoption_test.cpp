// What the index records of files it did not write: a directory the guide's Python
// CheckpointManager wrote (its metrics, times, epochs), another writer saving on in a
// directory ckpt indexes (external saves are adopted, damage is still quarantined), a
// stray copy (adopted, and said loudly), and a file the restricted reader refuses (left
// alone, never indexed). Also the named metrics a save records.
#include <SQLiteCpp/SQLiteCpp.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <sstream>

#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "support/captured_log.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

std::optional<CheckpointRecord> live(const std::filesystem::path& dir, const std::string& file) {
  for (const auto& row : CheckpointReader(dir).checkpoints()) {
    if (row.file == file) return row;
  }
  return std::nullopt;
}

std::string iso_mtime(const std::filesystem::path& path) {
  auto written = std::filesystem::last_write_time(path);
  auto system = std::chrono::time_point_cast<std::chrono::milliseconds>(
      written - std::filesystem::file_time_type::clock::now() + std::chrono::system_clock::now());
  std::time_t seconds = std::chrono::system_clock::to_time_t(system);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &tm);
  return buffer;
}

// The guide's loop saved through the store up to epoch 2 (val_acc 0.5, 0.6).
void save_guide_epochs_1_2(const std::filesystem::path& dir) {
  CheckpointStore store(dir);
  save_epoch(store, 1, guide_payload(1, 0.5, 0, 1));
  save_epoch(store, 2, guide_payload(2, 0.6, 0.5, 2));
}

bool has_event(const std::filesystem::path& dir, const std::string& event) {
  auto events = index_events(dir);
  return std::find(events.begin(), events.end(), event) != events.end();
}

// What the guide's Python loop leaves: epochs 1..3 (val_acc 0.5, 0.7, 0.6), best_model.pth
// saved at epoch 2 with best_acc 0.5 (the guide saves best_acc before updating it).
void guide_directory(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const double val_acc[] = {0.5, 0.7, 0.6};
  double best = 0;
  for (int epoch = 1; epoch <= 3; ++epoch) {
    std::string bytes = guide_payload(epoch, val_acc[epoch - 1], best, epoch);
    write_bytes(dir / ("checkpoint_epoch_" + std::to_string(epoch) + ".pth"), bytes);
    if (val_acc[epoch - 1] > best) {
      write_bytes(dir / "best_model.pth", bytes);
      best = val_acc[epoch - 1];
    }
  }
}

}  // namespace

TEST_CASE("a save records the state's named metrics, its epoch and where its metric came from", "[store][metrics]") {
  TestDir dir("metrics");
  CheckpointStore store(dir.path());
  SaveRequest request;
  request.kind = CheckpointKind::best;
  request.metric = 0.75;
  request.state_epoch = 7;
  request.metrics = {{"val_acc", 0.75}, {"train_loss", 0.125}, {"diverged", std::nan("")}};
  const std::string bytes = zip_payload(1);
  request.size_hint = bytes.size();
  auto row = store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
  CHECK(row.state_epoch == 7);
  CHECK(row.metric_source == "the save's argument");
  CHECK(row.origin == "saved");
  auto metrics = store.metrics_of(row.id);
  REQUIRE(metrics.size() == 3);
  CHECK(metrics[0].name == "val_acc");
  CHECK(metrics[1].name == "train_loss");
  CHECK(metrics[1].value == 0.125);
  CHECK(std::isnan(metrics[2].value));  // stored as NULL
  CHECK(CheckpointReader(dir.path()).metrics().size() == 3);
  // Queryable with sqlite3, as docs/schema.md shows.
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  CHECK(db.execAndGet("SELECT value FROM metrics WHERE name = 'train_loss'").getDouble() == 0.125);
  CHECK(db.execAndGet("SELECT detail FROM events WHERE event = 'new_best'").getString() == "best from epoch 7, metric 0.75");
}

TEST_CASE("a directory of the guide's Python loop is adopted with the right best metric, epochs, times and metrics",
          "[store][adoption]") {
  TestDir dir("adopt");
  guide_directory(dir.path());
  age_file(dir / "checkpoint_epoch_1.pth", std::chrono::seconds(300));
  const std::string epoch1_written = iso_mtime(dir / "checkpoint_epoch_1.pth");
  {
    CheckpointStore store(dir.path());
    CHECK(store.last_recovery().adopted == 4);
  }
  auto best = live(dir.path(), "best_model.pth").value();
  // Its own best_acc is 0.5, the previous best; its epoch checkpoint (same bytes) says 0.7.
  CHECK(best.metric == 0.7);
  CHECK(best.metric_source == "epoch 2, the same content");
  CHECK(best.state_epoch == 2);
  CHECK(best.origin == "adopted");
  auto epoch1 = live(dir.path(), "checkpoint_epoch_1.pth").value();
  CHECK(epoch1.metric == 0.5);
  CHECK(epoch1.metric_source == "val_acc in the file");
  CHECK(epoch1.created_at.substr(0, 19) == epoch1_written);  // the file's time, not the import's
  std::vector<std::string> names;
  for (const auto& metric : CheckpointReader(dir.path()).metrics()) {
    if (metric.checkpoint_id == epoch1.id) names.push_back(metric.name);
  }
  CHECK(names == std::vector<std::string>{"epoch", "best_acc", "val_acc"});
}

TEST_CASE("a best model whose epoch checkpoint was rotated away takes its own val_acc", "[store][adoption]") {
  TestDir dir("adopt");
  guide_directory(dir.path());
  std::filesystem::remove(dir / "checkpoint_epoch_2.pth");
  { CheckpointStore store(dir.path()); }
  auto best = live(dir.path(), "best_model.pth").value();
  CHECK(best.metric == 0.7);
  CHECK(best.metric_source == "val_acc in the file");
  CHECK(best.state_epoch == 2);  // the state's epoch entry
}

TEST_CASE("a stray epoch file copied in is adopted with a warning naming its epoch, and resume says it is adopted",
          "[store][adoption]") {
  TestDir dir("stray");
  save_guide_epochs_1_2(dir.path());
  write_bytes(dir / "checkpoint_epoch_99.pth", guide_payload(99, 0.9, 0.9, 99));
  CapturedLog log(spdlog::level::info, "%l %v");
  CheckpointStore store(dir.path());
  CHECK_THAT(log.text(), Catch::Contains("warning adopted") && Catch::Contains("epoch 99") &&
                             Catch::Contains("resume point"));
  auto latest = store.latest().value();
  CHECK(latest.epoch == 99);
  CHECK(latest.origin == "adopted");
}

TEST_CASE("another writer's complete save under a committed name is adopted, not quarantined; damage still is",
          "[store][adoption][external]") {
  TestDir dir("external");
  save_guide_epochs_1_2(dir.path());
  // The guide's Python loop run again on the directory: a new epoch 2, other content.
  std::optional<double> metric;
  const auto committed_size = std::filesystem::file_size(dir / "checkpoint_epoch_2.pth");
  SECTION("noticed at open (another size)") {
    write_bytes(dir / "checkpoint_epoch_2.pth", zip_payload(20, 5000));
    REQUIRE(std::filesystem::file_size(dir / "checkpoint_epoch_2.pth") != committed_size);
  }
  SECTION("noticed at load (same size, other hash)") {
    write_bytes(dir / "checkpoint_epoch_2.pth", guide_payload(2, 0.625, 0.5, 20));
    REQUIRE(std::filesystem::file_size(dir / "checkpoint_epoch_2.pth") == committed_size);
    metric = 0.625;
  }
  std::optional<CheckpointRecord> loaded;
  {
    CheckpointStore store(dir.path());
    auto payload = store.load_latest();
    REQUIRE(payload);
    loaded = payload->record;
    CHECK(store.last_recovery().quarantined == 0);
  }
  CHECK(loaded->epoch == 2);
  CHECK(loaded->origin == "external");
  CHECK(loaded->metric == metric);
  CHECK_FALSE(std::filesystem::exists(dir / "quarantine"));
  CHECK(has_event(dir.path(), "external_save"));
  CHECK_FALSE(has_event(dir.path(), "quarantined"));
}

TEST_CASE("a committed file with a flipped bit is quarantined, not adopted as another writer's save",
          "[store][adoption][external]") {
  TestDir dir("external");
  save_guide_epochs_1_2(dir.path());
  std::string flipped = guide_payload(2, 0.6, 0.5, 2);  // epoch 2's bytes
  SECTION("in a tensor's data: the archive is still whole, its CRC-32 is not") {
    const float second_weight = 2.25f;  // guide_payload's w[1] for seed 2
    const std::size_t at = flipped.find(std::string(reinterpret_cast<const char*>(&second_weight), sizeof second_weight));
    REQUIRE(at != std::string::npos);
    flipped[at + 1] ^= 0x04;
  }
  SECTION("in a record's alignment padding, which no CRC-32 covers") {
    const std::size_t at = flipped.find("ZZZZ");
    REQUIRE(at != std::string::npos);
    flipped[at + 2] ^= 0x04;
  }
  write_bytes(dir / "checkpoint_epoch_2.pth", flipped);
  CheckpointStore store(dir.path());
  auto payload = store.load_latest();
  REQUIRE(payload);
  CHECK(payload->record.epoch == 1);  // fell back past the damaged one
  CHECK(has_event(dir.path(), "quarantined"));
  CHECK_FALSE(has_event(dir.path(), "external_save"));
}

TEST_CASE("a file without a row that the restricted reader refuses is left where it is, never indexed",
          "[store][adoption][python]") {
  TestDir dir("unloadable");
  const std::string script =
      "import sys, torch, numpy; "
      "torch.save({'epoch': 3, 'val_acc': numpy.float64(0.5)}, sys.argv[1] + '/checkpoint_epoch_3.pth')";
  auto made = run_command(std::string(CKPT_PYTHON) + " -c " + shell_quote(script) + " " + shell_quote(dir.path().string()) + " 2>&1");
  REQUIRE(made.exit_code == 0);
  const std::string before = read_bytes(dir / "checkpoint_epoch_3.pth");
  CheckpointStore store(dir.path());
  CHECK(store.last_recovery().adopted == 0);
  CHECK(store.last_recovery().quarantined == 0);
  CHECK(store.last_recovery().left_unloadable == 1);
  CHECK_FALSE(store.latest());
  CHECK(read_bytes(dir / "checkpoint_epoch_3.pth") == before);
  auto plan = CheckpointStore::plan_repair(dir.path());
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].type == RepairAction::Type::leave_unloadable);
  CHECK_THAT(plan[0].reason, Catch::Contains("numpy"));
}

TEST_CASE("a copied-in file with a record failing its CRC-32 is quarantined, not adopted nor left", "[store][adoption]") {
  TestDir dir("orphan-crc");
  { CheckpointStore store(dir.path()); }
  std::string bytes = guide_payload(4, 0.5, 0.5, 4);
  const float second_weight = 4.25f;  // guide_payload's w[1] for seed 4
  const std::size_t at = bytes.find(std::string(reinterpret_cast<const char*>(&second_weight), sizeof second_weight));
  REQUIRE(at != std::string::npos);
  bytes[at + 1] ^= 0x04;
  write_bytes(dir / "checkpoint_epoch_4.pth", bytes);
  CheckpointStore store(dir.path());
  CHECK(store.last_recovery().adopted == 0);
  CHECK(store.last_recovery().left_unloadable == 0);
  CHECK(store.last_recovery().quarantined == 1);
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint_epoch_4.pth"));
}

TEST_CASE("verify reports a committed file the restricted reader would not load", "[store][verify][python]") {
  TestDir dir("verify");
  { CheckpointStore store(dir.path()); }
  std::filesystem::path made_dir = dir / "made";
  std::filesystem::create_directories(made_dir);
  const std::string script =
      "import sys, torch, numpy; torch.save({'val_acc': numpy.float64(0.5)}, sys.argv[1] + '/x.pth')";
  REQUIRE(run_command(std::string(CKPT_PYTHON) + " -c " + shell_quote(script) + " " + shell_quote(made_dir.string())).exit_code == 0);
  const std::string bytes = read_bytes(made_dir / "x.pth");
  {
    CheckpointStore store(dir.path());
    save_epoch(store, 1, bytes);  // the store takes any bytes; verify reads them as load_file would
    save_epoch(store, 2, zip_payload(2));
  }
  auto results = CheckpointReader(dir.path()).verify();
  REQUIRE(results.size() == 2);
  for (const auto& result : results) {
    if (result.record.epoch == 1) {
      CHECK_FALSE(result.ok);
      CHECK_THAT(result.problem, Catch::StartsWith("would not load: ") && Catch::Contains("numpy"));
    } else {
      CHECK(result.ok);
    }
  }
}

TEST_CASE("gc_plan lists what gc would remove and changes nothing", "[store][gc]") {
  TestDir dir("gcplan");
  {
    CheckpointStore store(dir.path(), StoreOptions{0});
    for (int epoch = 1; epoch <= 4; ++epoch) save_epoch(store, epoch, zip_payload(epoch));
  }
  const auto rows_before = index_rows(dir.path());
  CheckpointReader reader(dir.path());
  auto plan = reader.gc_plan(2);
  REQUIRE(plan.size() == 2);
  CHECK(plan[0].epoch == 2);
  CHECK(plan[1].epoch == 1);
  CHECK(reader.gc_plan(0).empty());
  CHECK(reader.gc_plan().empty());  // the directory's retention: 0 keeps all
  CHECK(index_rows(dir.path()).size() == rows_before.size());
  CHECK(std::filesystem::exists(dir / "checkpoint_epoch_1.pth"));
}
