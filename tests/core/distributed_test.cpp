// DistributedCheckpointManager with ranks as real processes (ckpt_dist_rank: Gloo over
// 127.0.0.1, rank 0 hosting the TCPStore): saves and resumes in both modes at world sizes
// 1, 2 and 4, resharded loads, and a rank or rank 0 killed mid-save. This binary is
// torch-free: it starts the ranks and reads the directory and the index as a user would.
#include <catch2/catch.hpp>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include <regex>

#include "store/file_names.hpp"
#include "support/ranks.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

#ifdef CKPT_DIST_RANK
using namespace ckpt;
using namespace ckpt::test;

namespace {

// Every rank of a job of `world` running `args` (ckpt_dist_rank's DIR MODE ACTION ...),
// with the environment variables `env` ("NAME=value ...").
std::vector<std::string> job(const TestDir& dir, int world, const std::string& args, const std::string& env = "") {
  const int port = free_port();
  std::vector<std::string> commands;
  for (int r = 0; r < world; ++r) {
    commands.push_back(fmt::format("env {} {} {} {} {} {}", env, CKPT_DIST_RANK, r, world, port, args));
  }
  return run_ranks(dir.path(), commands);
}

std::vector<std::string> shard_files(const std::filesystem::path& dir) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (names::parse_shard_file(name)) files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// (file, number of shard rows) of every live checkpoint, by file.
std::vector<std::pair<std::string, int>> live_shard_counts(const std::filesystem::path& dir) {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, "SELECT file, (SELECT count(*) FROM shards WHERE checkpoint_id = checkpoints.id) "
                              "FROM checkpoints WHERE status IN ('committed', 'consumed') ORDER BY file");
  std::vector<std::pair<std::string, int>> rows;
  while (query.executeStep()) rows.emplace_back(query.getColumn(0).getString(), query.getColumn(1).getInt());
  return rows;
}

// The milliseconds an "error <ms> <message>" line reports.
long error_ms(const std::string& output) {
  std::smatch match;
  REQUIRE(std::regex_search(output, match, std::regex("^error ([0-9]+) ")));
  return std::stol(match[1]);
}

}  // namespace

TEST_CASE("sharded saves commit at world sizes 1, 2 and 4, and each rank resumes its own shard's values",
          "[distributed][processes]") {
  for (int world : {1, 2, 4}) {
    INFO("world size " << world);
    TestDir dir("dist-sharded");
    const std::string ckpt = (dir / "run").string();
    for (const auto& out : job(dir, world, ckpt + " sharded save 4")) CHECK(out == "saved\n0\n");
    // max_to_keep 3: epochs 2 to 4 and the best model, each with one shard row per rank.
    std::vector<std::pair<std::string, int>> expected = {{"best_model.pth", world},
                                                         {"checkpoint_epoch_2.pth", world},
                                                         {"checkpoint_epoch_3.pth", world},
                                                         {"checkpoint_epoch_4.pth", world}};
    CHECK(live_shard_counts(dir / "run") == expected);
    CHECK(shard_files(dir / "run").size() == static_cast<std::size_t>(4 * world));
    CHECK(invariant_violations(dir / "run").empty());
    auto loads = job(dir, world, ckpt + " sharded load");
    for (int r = 0; r < world; ++r) CHECK(loads[static_cast<std::size_t>(r)] == fmt::format("loaded epoch 4 from rank {}'s shard\n0\n", r));
  }
}

TEST_CASE("with a rollback-journal index (network file systems' mode) a sharded job saves, resumes and recovers "
          "from a killed rank", "[distributed][processes][journal]") {
  TestDir dir("dist-rollback");
  const std::string ckpt = (dir / "run").string();
  auto in_rollback = [&](int world, const std::string& args) {
    return job(dir, world, args, "CKPT_TEST_INDEX_JOURNAL=rollback");
  };
  for (const auto& out : in_rollback(2, ckpt + " sharded save 2")) CHECK(out == "saved\n0\n");
  CHECK_FALSE(std::filesystem::exists(dir / "run" / "index.sqlite-wal"));
  {
    SQLite::Database db((dir / "run" / "index.sqlite").string(), SQLite::OPEN_READONLY);
    CHECK(db.execAndGet("PRAGMA journal_mode").getString() != "wal");
  }
  auto killed = in_rollback(2, ckpt + " sharded save 3 1 shard_written");
  CHECK(killed[1] == "137\n");
  CHECK_THAT(killed[0], Catch::Contains("rank 1 did not report"));
  for (const auto& out : in_rollback(2, ckpt + " sharded load")) CHECK_THAT(out, Catch::StartsWith("loaded epoch 2 "));
  CHECK(invariant_violations(dir / "run").empty());
}

TEST_CASE("slices that overlap or leave a gap are refused at commit, on every rank, naming the tensor",
          "[distributed][processes]") {
  TestDir dir("dist-overlap");
  const std::string ckpt = (dir / "run").string();
  auto results = job(dir, 2, ckpt + " sharded save 2 0 overlap");
  for (const auto& out : results) {
    INFO(out);
    CHECK_THAT(out, Catch::Contains("placement model/w: the slices of ranks 0 and 1 overlap") &&
                        Catch::EndsWith("\n1\n"));
  }
  std::vector<std::pair<std::string, int>> expected = {{"best_model.pth", 2}, {"checkpoint_epoch_1.pth", 2}};
  CHECK(live_shard_counts(dir / "run") == expected);
}

TEST_CASE("replicated saves: rank 0 writes the guide's files alone, and every rank resumes the same state",
          "[distributed][processes]") {
  for (int world : {1, 2, 4}) {
    INFO("world size " << world);
    TestDir dir("dist-replicated");
    const std::string ckpt = (dir / "run").string();
    for (const auto& out : job(dir, world, ckpt + " replicated save 3")) CHECK(out == "saved\n0\n");
    CHECK(shard_files(dir / "run").empty());
    std::vector<std::pair<std::string, int>> expected = {
        {"best_model.pth", 0}, {"checkpoint_epoch_1.pth", 0}, {"checkpoint_epoch_2.pth", 0}, {"checkpoint_epoch_3.pth", 0}};
    CHECK(live_shard_counts(dir / "run") == expected);
    for (const auto& out : job(dir, world, ckpt + " replicated load")) {
      CHECK(out == "loaded epoch 3 from rank 0's shard\n0\n");  // the one state rank 0 saved
    }
  }
}

TEST_CASE("a checkpoint saved by 4 ranks loads resharded on 2 and on 1, and whole in one process",
          "[distributed][processes]") {
  TestDir dir("dist-reshard");
  const std::string ckpt = (dir / "run").string();
  for (const auto& out : job(dir, 4, ckpt + " sharded save 2")) REQUIRE(out == "saved\n0\n");
  // Each rank's slices of W (rows) and V (columns, split 3+3+3+1 at 4 and 5+5 at 2) are
  // checked against the whole tensors; the rest of the state comes from its rank's shard.
  auto two = job(dir, 2, ckpt + " sharded load");
  CHECK(two[0] == "loaded epoch 2 from rank 0's shard\n0\n");
  CHECK(two[1] == "loaded epoch 2 from rank 1's shard\n0\n");
  CHECK(job(dir, 1, ckpt + " sharded load")[0] == "loaded epoch 2 from rank 0's shard\n0\n");
  CHECK(run_command(fmt::format("{} 0 1 0 {} sharded full", CKPT_DIST_RANK, ckpt)).output == "full epoch 2\n");
  // And back up: saved by 2, loaded by 4.
  TestDir up("dist-reshard-up");
  const std::string ckpt2 = (up / "run").string();
  for (const auto& out : job(up, 2, ckpt2 + " sharded save 1")) REQUIRE(out == "saved\n0\n");
  auto four = job(up, 4, ckpt2 + " sharded load");
  for (int r = 0; r < 4; ++r) {
    CHECK(four[static_cast<std::size_t>(r)] == fmt::format("loaded epoch 1 from rank {}'s shard\n0\n", r < 2 ? r : 0));
  }
}

TEST_CASE("a rank killed mid-save: nothing commits, earlier checkpoints stay, every other rank is told which "
          "rank within the timeout",
          "[distributed][processes][kill]") {
  TestDir dir("dist-kill");
  const std::string ckpt = (dir / "run").string();
  // Rank 2 dies (SIGKILL) with its shard of epoch 2 written, before it reports.
  auto results = job(dir, 4, ckpt + " sharded save 2 2 shard_written");
  CHECK(results[2] == "137\n");
  for (int r : {0, 1, 3}) {
    const std::string& out = results[static_cast<std::size_t>(r)];
    INFO(out);
    CHECK_THAT(out, Catch::Contains("the save of checkpoint_epoch_2.pth was aborted: rank 2 did not report before "
                                    "the deadline") && Catch::EndsWith("\n1\n"));
    CHECK(error_ms(out) < 3000 + 2000 + 1000);  // the timeout, plus the others' grace, plus slack
  }
  std::vector<std::pair<std::string, int>> expected = {{"best_model.pth", 4}, {"checkpoint_epoch_1.pth", 4}};
  CHECK(live_shard_counts(dir / "run") == expected);
  CHECK_FALSE(std::filesystem::exists(dir / "run" / "checkpoint_epoch_2.pth"));
  // The next job resumes from epoch 1; rank 0's open removed the aborted save's shards.
  for (const auto& out : job(dir, 4, ckpt + " sharded load")) CHECK_THAT(out, Catch::StartsWith("loaded epoch 1 "));
  for (const auto& file : shard_files(dir / "run")) CHECK(file.find("checkpoint_epoch_2") == std::string::npos);
  CHECK(invariant_violations(dir / "run").empty());
}

TEST_CASE("rank 0 killed after every shard is written, before the commit: not visible, cleaned up by the next open",
          "[distributed][processes][kill]") {
  TestDir dir("dist-kill0");
  const std::string ckpt = (dir / "run").string();
  auto results = job(dir, 4, ckpt + " sharded save 2 0 reports_collected");
  CHECK(results[0] == "137\n");
  std::size_t epoch2_shards = 0;
  for (const auto& file : shard_files(dir / "run")) epoch2_shards += file.find("checkpoint_epoch_2") != std::string::npos;
  CHECK(epoch2_shards == 4);  // every shard was written
  for (int r : {1, 2, 3}) {
    const std::string& out = results[static_cast<std::size_t>(r)];
    INFO(out);
    // The TCPStore lived in rank 0: its death is seen at once, as the store's failure.
    CHECK_THAT(out, Catch::StartsWith("error ") && Catch::Contains("the c10d store failed") &&
                        Catch::Contains("did that rank die?"));
    CHECK(error_ms(out) < 3000 + 2000 + 1000);
  }
  for (const auto& out : job(dir, 2, ckpt + " sharded load")) CHECK_THAT(out, Catch::StartsWith("loaded epoch 1 "));
  for (const auto& file : shard_files(dir / "run")) CHECK(file.find("checkpoint_epoch_2") == std::string::npos);
  CHECK(invariant_violations(dir / "run").empty());
}
TEST_CASE("asynchronous saves commit on every rank as the synchronous ones do, from snapshots the caller overwrites "
          "at once", "[distributed][processes][async]") {
  for (auto [mode, world] : {std::pair<std::string, int>{"sharded", 2}, {"sharded", 4}, {"replicated", 2}}) {
    INFO(mode << " at world size " << world);
    TestDir dir("dist-async");
    const std::string ckpt = (dir / "run").string();
    // Each rank overwrites its tensors with -1 right after each call: the loads below
    // check every value against the epoch's, so each save wrote its snapshot.
    for (const auto& out : job(dir, world, ckpt + " " + mode + " async 4")) CHECK(out == "saved\n0\n");
    const int shards = mode == "sharded" ? world : 0;
    std::vector<std::pair<std::string, int>> expected = {{"best_model.pth", shards},
                                                         {"checkpoint_epoch_2.pth", shards},
                                                         {"checkpoint_epoch_3.pth", shards},
                                                         {"checkpoint_epoch_4.pth", shards}};
    CHECK(live_shard_counts(dir / "run") == expected);
    CHECK(invariant_violations(dir / "run").empty());
    for (const auto& out : job(dir, world, ckpt + " " + mode + " load")) CHECK_THAT(out, Catch::StartsWith("loaded epoch 4 "));
  }
}

TEST_CASE("an asynchronous save that fails on one rank fails on every rank, raised once on each by a later call",
          "[distributed][processes][async]") {
  TestDir dir("dist-async-fail");
  const std::string ckpt = (dir / "run").string();
  // Rank 1's placements of epoch 2 do not fit its state: the save fails in the background
  // on both ranks, and the call for epoch 3 raises it on both, once epoch 3 is queued.
  auto results = job(dir, 2, ckpt + " sharded async 3 1 bad");
  for (const auto& out : results) {
    INFO(out);
    CHECK_THAT(out, Catch::StartsWith("error ") &&
                        Catch::Contains("the save of checkpoint_epoch_2.pth was aborted: rank 1 failed: placement "
                                        "model/w: dimension 0") &&
                        Catch::EndsWith("\n1\n"));
  }
  std::vector<std::pair<std::string, int>> expected = {{"best_model.pth", 2}, {"checkpoint_epoch_1.pth", 2}};
  CHECK(live_shard_counts(dir / "run") ==
        std::vector<std::pair<std::string, int>>{{"best_model.pth", 2}, {"checkpoint_epoch_1.pth", 2},
                                                 {"checkpoint_epoch_3.pth", 2}});
  // The next job resumes from epoch 3; rank 0's open removed the aborted save's shards.
  for (const auto& out : job(dir, 2, ckpt + " sharded load")) CHECK_THAT(out, Catch::StartsWith("loaded epoch 3 "));
  for (const auto& file : shard_files(dir / "run")) CHECK(file.find("checkpoint_epoch_2") == std::string::npos);

  // Rank 0 raises it at wait(), rank 1 at the next call: every call still takes its turn,
  // so the ranks stay paired and epochs 3 and 4 commit.
  TestDir apart("dist-async-apart");
  auto raised = job(apart, 2, (apart / "run").string() + " sharded async 4 1 bad-wait");
  for (const auto& out : raised) {
    INFO(out);
    CHECK(std::regex_search(out, std::regex("^error [0-9]+ [^\n]*the save of checkpoint_epoch_2.pth was aborted: "
                                            "rank 1 failed: placement model/w[^\n]*\nsaved\n0\n$")));
  }
  // Rank 0 raised it at wait(), rank 1 raises it at a load with nothing to load: the load
  // fails on both (no rank starts afresh alone).
  TestDir empty("dist-async-load");
  auto loads = job(empty, 2, (empty / "run").string() + " sharded fail-load");
  INFO(loads[0] << loads[1]);
  CHECK_THAT(loads[0], Catch::Contains("wait: ") && Catch::Contains("load: ") &&
                           Catch::Contains("rank 1 raised an earlier save's failure instead") &&
                           Catch::EndsWith("\n1\n"));
  CHECK_THAT(loads[1], Catch::StartsWith("load: ") && Catch::Contains("rank 1 failed: placement model/w") &&
                           Catch::EndsWith("\n1\n"));
  CHECK(live_shard_counts(apart / "run") ==
        std::vector<std::pair<std::string, int>>{{"best_model.pth", 2}, {"checkpoint_epoch_1.pth", 2},
                                                 {"checkpoint_epoch_3.pth", 2}, {"checkpoint_epoch_4.pth", 2}});

  // Rank 1 dies with its shard of epoch 2 written: rank 0's wait() names it, in bounded time.
  TestDir killed_dir("dist-async-kill");
  const std::string ckpt2 = (killed_dir / "run").string();
  auto killed = job(killed_dir, 2, ckpt2 + " sharded async 2 1 shard_written");
  CHECK(killed[1] == "137\n");
  INFO(killed[0]);
  CHECK_THAT(killed[0], Catch::Contains("the save of checkpoint_epoch_2.pth was aborted: rank 1 did not report"));
  CHECK(error_ms(killed[0]) < 3000 + 1000);  // wait() began after the save did: within its timeout
  CHECK(live_shard_counts(killed_dir / "run") == expected);
  for (const auto& out : job(killed_dir, 2, ckpt2 + " sharded load")) CHECK_THAT(out, Catch::StartsWith("loaded epoch 1 "));
  CHECK(invariant_violations(killed_dir / "run").empty());
}

TEST_CASE("the c10d store keeps no keys of finished saves and loads: a longer job leaves no more of them",
          "[distributed][processes]") {
  // The keys a job of 2 ranks leaves in its store (rank 0's, gone with the job).
  auto keys_after = [](const TestDir& dir, const std::string& mode, const std::string& action) {
    auto results = job(dir, 2, (dir / "run").string() + " " + mode + " " + action, "CKPT_TEST_COUNT_KEYS=1");
    std::smatch match;
    REQUIRE(std::regex_search(results[0], match, std::regex("keys ([0-9]+)\n0\n$")));
    return std::stol(match[1]);
  };
  for (const std::string mode : {"sharded", "replicated"}) {
    INFO(mode);
    TestDir two_dir("dist-keys"), seven_dir("dist-keys"), async_dir("dist-keys");
    const long two = keys_after(two_dir, mode, "save 2");
    CHECK(keys_after(seven_dir, mode, "save 7") == two);
    CHECK(keys_after(async_dir, mode, "async 7") == two);
    CHECK(keys_after(seven_dir, mode, "load") == two);  // a load (its plan, its round) leaves none either
  }
}
#endif
