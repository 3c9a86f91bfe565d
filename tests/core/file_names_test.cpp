#include <catch2/catch.hpp>

#include "store/file_names.hpp"

using namespace ckpt;

TEST_CASE("checkpoint file names round-trip through the parser", "[names]") {
  struct Row {
    CheckpointKind kind;
    std::optional<std::int64_t> epoch;
    const char* name;
  };
  const Row rows[] = {
      {CheckpointKind::best, std::nullopt, "best_model.pth"},
      {CheckpointKind::interrupt, std::nullopt, "interrupt_checkpoint.pth"},
      {CheckpointKind::epoch, 0, "checkpoint_epoch_0.pth"},
      {CheckpointKind::epoch, 7, "checkpoint_epoch_7.pth"},
      {CheckpointKind::epoch, 100, "checkpoint_epoch_100.pth"},
      {CheckpointKind::epoch, INT64_MAX, "checkpoint_epoch_9223372036854775807.pth"},
  };
  for (const auto& row : rows) {
    INFO(row.name);
    CHECK(names::checkpoint_file(row.kind, row.epoch) == row.name);
    auto parsed = names::parse_checkpoint_file(row.name);
    REQUIRE(parsed);
    CHECK(parsed->kind == row.kind);
    CHECK(parsed->epoch == row.epoch);
  }
}

TEST_CASE("step checkpoint file names round-trip through the parser, whatever the epoch", "[names]") {
  struct Row {
    std::optional<std::int64_t> epoch;  // recorded, not in the name
    std::int64_t step;
    const char* name;
  };
  const Row rows[] = {
      {std::nullopt, 0, "checkpoint_step_0.pth"},
      {3, 1500, "checkpoint_step_1500.pth"},
      {std::nullopt, 10, "checkpoint_step_10.pth"},
      {0, INT64_MAX, "checkpoint_step_9223372036854775807.pth"},
  };
  for (const auto& row : rows) {
    INFO(row.name);
    CHECK(names::step_file(row.step) == row.name);
    CHECK(names::checkpoint_file(CheckpointKind::epoch, row.epoch, row.step) == row.name);
    auto parsed = names::parse_checkpoint_file(row.name);
    REQUIRE(parsed);
    CHECK(parsed->kind == CheckpointKind::epoch);
    CHECK(parsed->step == row.step);
    CHECK_FALSE(parsed->epoch);
  }
  // An epoch name parses without a step; the best model and interrupt keep their names.
  CHECK_FALSE(names::parse_checkpoint_file("checkpoint_epoch_4.pth")->step);
  CHECK(names::checkpoint_file(CheckpointKind::best, 2, 700) == "best_model.pth");
  CHECK(names::checkpoint_file(CheckpointKind::interrupt, std::nullopt, 700) == "interrupt_checkpoint.pth");
  CHECK(names::is_own_temp_file(names::temp_file("checkpoint_step_700.pth", 9, 2)));
  CHECK(names::is_temp_file("checkpoint_step_700.pth.tmp"));
}

TEST_CASE("names that are not the guide's are not checkpoint files", "[names]") {
  for (const char* name : {"checkpoint_epoch_.pth", "checkpoint_epoch_01.pth", "checkpoint_epoch_-1.pth",
                           "checkpoint_epoch_+1.pth", "checkpoint_epoch_1.pt", "checkpoint_epoch_1x.pth",
                           "checkpoint_epoch_99999999999999999999.pth", "best_model.pth.tmp", "model.pth",
                           "checkpoint_step_.pth", "checkpoint_step_007.pth", "checkpoint_step_-3.pth",
                           "checkpoint_step_+3.pth", "checkpoint_step_3.pt", "checkpoint_step_3e2.pth",
                           "checkpoint_step_99999999999999999999.pth", "checkpoint_steps_3.pth",
                           "index.sqlite", "Best_model.pth", ""}) {
    INFO(name);
    CHECK_FALSE(names::parse_checkpoint_file(name));
  }
}

TEST_CASE("temp files are recognised, ours and the guide's, and nothing else", "[names]") {
  CHECK(names::temp_file("best_model.pth", 42, 3) == "best_model.pth.42-3.tmp");
  CHECK(names::is_temp_file(names::temp_file("checkpoint_epoch_5.pth", 1, 1)));
  CHECK(names::is_temp_file("best_model.pth.tmp"));  // what the Python guide leaves
  CHECK(names::is_temp_file("interrupt_checkpoint.pth.tmp"));
  CHECK_FALSE(names::is_temp_file("notes.tmp"));
  CHECK_FALSE(names::is_temp_file("best_model.pth"));
  CHECK_FALSE(names::is_temp_file("index.sqlite-wal"));
}

TEST_CASE("our temp files are told from another writer's (recovery leaves a young foreign one)", "[names]") {
  CHECK(names::is_own_temp_file(names::temp_file("best_model.pth", 42, 3)));
  CHECK(names::is_own_temp_file(names::temp_file("checkpoint_epoch_12.pth", 7, 100)));
  CHECK_FALSE(names::is_own_temp_file("best_model.pth.tmp"));  // the Python guide's
  CHECK_FALSE(names::is_own_temp_file("checkpoint_epoch_3.pth.x-1.tmp"));
  CHECK_FALSE(names::is_own_temp_file("checkpoint_epoch_3.pth.42.tmp"));
  CHECK_FALSE(names::is_own_temp_file("notes.42-1.tmp"));
}

TEST_CASE("shard file names round-trip through the parser and are never checkpoint files", "[names][shards]") {
  struct Case {
    std::string manifest;
    int rank, world;
    std::string token;
    std::string name;
  };
  for (const Case& c : {Case{"checkpoint_epoch_5.pth", 2, 4, "3f9a1c07-12", "checkpoint_epoch_5.shard-2-of-4.3f9a1c07-12.pth"},
                        Case{"best_model.pth", 0, 1, "a", "best_model.shard-0-of-1.a.pth"},
                        Case{"interrupt_checkpoint.pth", 9, 10, "x-1", "interrupt_checkpoint.shard-9-of-10.x-1.pth"},
                        Case{"checkpoint_step_700.pth", 1, 2, "t", "checkpoint_step_700.shard-1-of-2.t.pth"}}) {
    INFO(c.name);
    CHECK(names::shard_file(c.manifest, c.rank, c.world, c.token) == c.name);
    auto parsed = names::parse_shard_file(c.name);
    REQUIRE(parsed);
    CHECK(parsed->manifest == c.manifest);
    CHECK(parsed->rank == c.rank);
    CHECK(parsed->world_size == c.world);
    CHECK(parsed->token == c.token);
    CHECK_FALSE(names::parse_checkpoint_file(c.name));
  }
  for (const char* name : {"best_model.shard-4-of-4.a.pth", "best_model.shard-01-of-4.a.pth", "best_model.shard-1-of-4.pth",
                           "best_model.shard-1-of-4..pth", "best_model.shard-1-of-4.A.pth", "model.shard-1-of-4.a.pth",
                           "best_model.shard-1-of-4.a.pt", "best_model.shard--1-of-4.a.pth", "best_model.pth",
                           "checkpoint_epoch_05.shard-0-of-1.a.pth", "best_model.shard-1-of-4.a/b.pth"}) {
    INFO(name);
    CHECK_FALSE(names::parse_shard_file(name));
  }
}
