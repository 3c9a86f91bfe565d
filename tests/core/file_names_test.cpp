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

TEST_CASE("names that are not the guide's are not checkpoint files", "[names]") {
  for (const char* name : {"checkpoint_epoch_.pth", "checkpoint_epoch_01.pth", "checkpoint_epoch_-1.pth",
                           "checkpoint_epoch_+1.pth", "checkpoint_epoch_1.pt", "checkpoint_epoch_1x.pth",
                           "checkpoint_epoch_99999999999999999999.pth", "best_model.pth.tmp", "model.pth",
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
