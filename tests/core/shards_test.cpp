// The store's side of multi-rank checkpoints (SaveRequest::shards; docs/schema.md,
// "Shards"): shard rows committed with their checkpoint, shard files checked at commit,
// removed with their checkpoint and, when no save committed them, by the next open;
// and the verified byte-range reads a resharding load makes.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <fmt/format.h>

#include <fstream>

#include "ckpt/errors.hpp"
#include "ckpt/store.hpp"
#include "distributed/shard_file.hpp"
#include "store/file_names.hpp"
#include "store/test_hooks.hpp"
#include "support/power_loss.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

constexpr int kCrashed = 77;

// What `world` ranks would write for one checkpoint: shard_file names with `token`,
// each holding a real .pth (rank and token make its bytes differ).
std::vector<ShardRecord> write_shards(const std::filesystem::path& dir, const std::string& manifest, int world,
                                      const std::string& token, std::size_t bytes = 4096) {
  std::vector<ShardRecord> shards;
  for (int rank = 0; rank < world; ++rank) {
    const std::string payload = zip_payload(rank * 1000 + static_cast<int>(std::hash<std::string>{}(token) % 997), bytes);
    shards.push_back(distributed::write_shard(*FileSystem::posix(), dir, names::shard_file(manifest, rank, world, token),
                                              rank, world, HashAlgorithm::xxh3_128,
                                              [&](ByteSink& sink) { sink.write(payload.data(), payload.size()); }));
  }
  return shards;
}

SaveRequest sharded(CheckpointKind kind, std::optional<std::int64_t> epoch, std::vector<ShardRecord> shards) {
  SaveRequest request;
  request.kind = kind;
  request.epoch = epoch;
  request.shards = std::move(shards);
  return request;
}

CheckpointRecord save_manifest(CheckpointStore& store, const SaveRequest& request, int seed) {
  const std::string bytes = zip_payload(seed);
  return store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

std::vector<std::string> shard_files_in(const std::filesystem::path& dir) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (names::parse_shard_file(entry.path().filename().string())) files.push_back(entry.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::string> files_of(const std::vector<ShardRecord>& shards) {
  std::vector<std::string> files;
  for (const auto& shard : shards) files.push_back(shard.file);
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST_CASE("a sharded checkpoint commits with every rank's shard row, and rotation deletes all its shards",
          "[shards][store]") {
  TestDir dir("shards");
  std::vector<std::string> kept;
  {
    CheckpointStore store(dir.path(), options_with(nullptr, 2));
    for (int epoch = 1; epoch <= 4; ++epoch) {
      auto shards = write_shards(dir.path(), names::epoch_file(epoch), 4, fmt::format("run-{}", epoch));
      auto record = save_manifest(store, sharded(CheckpointKind::epoch, epoch, shards), epoch);
      auto rows = store.shards_of(record.id);
      REQUIRE(rows.size() == 4);
      for (int rank = 0; rank < 4; ++rank) {
        CHECK(rows[rank].rank == rank);
        CHECK(rows[rank].world_size == 4);
        CHECK(rows[rank].file == shards[rank].file);
        CHECK(rows[rank].hash == shards[rank].hash);
        CHECK(rows[rank].block_hashes == shards[rank].block_hashes);
      }
      if (epoch >= 3) {
        auto files = files_of(shards);
        kept.insert(kept.end(), files.begin(), files.end());
      }
    }
  }
  std::sort(kept.begin(), kept.end());
  CHECK(shard_files_in(dir.path()) == kept);  // epochs 1 and 2 rotated out with their 8 shards
  CHECK(invariant_violations(dir.path()).empty());
}

TEST_CASE("a new best model's shards replace the old best's only once it commits", "[shards][store]") {
  TestDir dir("shards");
  CheckpointStore store(dir.path());
  auto first = write_shards(dir.path(), "best_model.pth", 2, "a-1");
  save_manifest(store, sharded(CheckpointKind::best, std::nullopt, first), 1);
  auto second = write_shards(dir.path(), "best_model.pth", 2, "a-2");
  // Before the commit both sets are there: the committed best still has all of its shards.
  auto both = files_of(first);
  for (const auto& f : files_of(second)) both.push_back(f);
  std::sort(both.begin(), both.end());
  CHECK(shard_files_in(dir.path()) == both);
  auto record = save_manifest(store, sharded(CheckpointKind::best, std::nullopt, second), 2);
  CHECK(shard_files_in(dir.path()) == files_of(second));
  CHECK(store.best()->id == record.id);
}

TEST_CASE("a sharded save with a shard rank 0 cannot see commits nothing and names the rank and the file",
          "[shards][store]") {
  TestDir dir("shards");
  CheckpointStore store(dir.path());
  auto good = write_shards(dir.path(), "best_model.pth", 3, "g-1");
  auto committed = save_manifest(store, sharded(CheckpointKind::best, std::nullopt, good), 1);
  auto shards = write_shards(dir.path(), "best_model.pth", 3, "g-2");
  SECTION("missing") {
    std::filesystem::remove(dir / shards[1].file);
    CHECK_THROWS_MATCHES(save_manifest(store, sharded(CheckpointKind::best, std::nullopt, shards), 2), IoError,
                         Catch::Matchers::Predicate<IoError>([&](const IoError& e) {
                           const std::string what = e.what();
                           return what.find("rank 1") != std::string::npos &&
                                  what.find(shards[1].file) != std::string::npos &&
                                  what.find("not there") != std::string::npos;
                         }));
  }
  SECTION("of another size") {
    std::ofstream(dir / shards[2].file, std::ios::app) << "x";
    CHECK_THROWS_WITH(save_manifest(store, sharded(CheckpointKind::best, std::nullopt, shards), 2),
                      Catch::Contains("rank 2") && Catch::Contains("not the " + std::to_string(shards[2].size)));
  }
  SECTION("not one per rank") {
    shards[2] = shards[1];
    CHECK_THROWS_AS(save_manifest(store, sharded(CheckpointKind::best, std::nullopt, shards), 2), InvalidArgument);
  }
  SECTION("named for another checkpoint") {
    auto other = write_shards(dir.path(), "checkpoint_epoch_3.pth", 3, "g-3");
    CHECK_THROWS_AS(save_manifest(store, sharded(CheckpointKind::best, std::nullopt, other), 2), InvalidArgument);
  }
  CHECK(store.best()->id == committed.id);
  CHECK(store.shards_of(committed.id).size() == 3);
  for (const auto& shard : good) CHECK(std::filesystem::exists(dir / shard.file));
}

TEST_CASE("shards of a save that never committed are removed by the next open; the committed ones stay",
          "[shards][recovery]") {
  TestDir dir("shards");
  std::vector<ShardRecord> committed;
  {
    CheckpointStore store(dir.path());
    committed = write_shards(dir.path(), "best_model.pth", 2, "c-1");
    save_manifest(store, sharded(CheckpointKind::best, std::nullopt, committed), 1);
  }
  int orphans = 0;
  SECTION("rank 0 died before saving the manifest") {
    orphans = 4;
    write_shards(dir.path(), "best_model.pth", 2, "c-2");
    write_shards(dir.path(), "checkpoint_epoch_7.pth", 2, "c-3");
    CHECK(shard_files_in(dir.path()).size() == 6);
  }
  SECTION("rank 0 died with the pending row committed, before the rename") {
    orphans = 2;
    StoreOptions options;
    store::test_hooks(options).on_step = [](std::string_view step) {
      if (step == "pending_committed") ::_exit(kCrashed);
    };
    REQUIRE(run_in_child([&] {
              // Opened first, as a manager's rank 0 does: its recovery removes shards no row needs.
              CheckpointStore store(dir.path(), options);
              auto shards = write_shards(dir.path(), "best_model.pth", 2, "c-4");
              save_manifest(store, sharded(CheckpointKind::best, std::nullopt, shards), 2);
            }) == kCrashed);
  }
  CheckpointStore reopened(dir.path());
  CHECK(reopened.last_recovery().shards_removed == orphans);
  CHECK(shard_files_in(dir.path()) == files_of(committed));
  CHECK(reopened.shards_of(reopened.best()->id).size() == 2);
}

TEST_CASE("a sharded save killed after its rename is rolled forward with all its shards", "[shards][recovery]") {
  TestDir dir("shards");
  std::vector<ShardRecord> old;
  {
    CheckpointStore store(dir.path());
    old = write_shards(dir.path(), "best_model.pth", 2, "f-1");
    save_manifest(store, sharded(CheckpointKind::best, std::nullopt, old), 1);
  }
  const std::vector<std::string> expected = {names::shard_file("best_model.pth", 0, 2, "f-2"),
                                              names::shard_file("best_model.pth", 1, 2, "f-2")};
  StoreOptions options;
  store::test_hooks(options).on_step = [](std::string_view step) {
    if (step == "renamed") ::_exit(kCrashed);
  };
  REQUIRE(run_in_child([&] {
            CheckpointStore store(dir.path(), options);
            auto shards = write_shards(dir.path(), "best_model.pth", 2, "f-2");
            save_manifest(store, sharded(CheckpointKind::best, std::nullopt, shards), 2);
          }) == kCrashed);
  CheckpointStore reopened(dir.path());
  CHECK(reopened.last_recovery().rolled_forward == 1);
  CHECK(reopened.shards_of(reopened.best()->id).size() == 2);
  CHECK(shard_files_in(dir.path()) == expected);  // the replaced best's went
}

TEST_CASE("a committed sharded checkpoint whose shard vanished is quarantined, and resume passes it over for good",
          "[shards][recovery]") {
  TestDir dir("shards");
  std::vector<ShardRecord> second;
  {
    CheckpointStore store(dir.path());
    save_manifest(store, sharded(CheckpointKind::epoch, 1, write_shards(dir.path(), names::epoch_file(1), 2, "m-1")), 1);
    second = write_shards(dir.path(), names::epoch_file(2), 2, "m-2");
    save_manifest(store, sharded(CheckpointKind::epoch, 2, second), 2);
  }
  std::filesystem::remove(dir / second[1].file);
  {
    CheckpointStore reopened(dir.path());
    CHECK(reopened.last_recovery().quarantined == 1);
    CHECK(reopened.latest()->epoch == 1);
  }
  // Its manifest is out of the way: the next open does not adopt it back as the newest.
  CHECK_FALSE(std::filesystem::exists(dir / names::epoch_file(2)));
  CHECK_FALSE(std::filesystem::is_empty(dir / "quarantine"));
  CheckpointStore again(dir.path());
  CHECK(again.last_recovery().adopted == 0);
  CHECK(again.latest()->epoch == 1);
}

TEST_CASE("shards written for a save in progress survive the open store's deletions until it commits them",
          "[shards][store]") {
  TestDir dir("shards");
  CheckpointStore store(dir.path(), options_with(nullptr, 1));
  save_manifest(store, sharded(CheckpointKind::epoch, 1, write_shards(dir.path(), names::epoch_file(1), 2, "p-1")), 1);
  // The other ranks have written the next save's shards when rank 0 rotates and removes.
  auto next = write_shards(dir.path(), names::epoch_file(3), 2, "p-3");
  save_manifest(store, sharded(CheckpointKind::epoch, 2, write_shards(dir.path(), names::epoch_file(2), 2, "p-2")), 2);
  store.gc(1);
  for (const auto& shard : next) CHECK(std::filesystem::exists(dir / shard.file));
  save_manifest(store, sharded(CheckpointKind::epoch, 3, next), 3);
  CHECK(shard_files_in(dir.path()) == files_of(next));  // epoch 1's and 2's went with their rows
}

TEST_CASE("repair rehashes shards: a flipped byte in one quarantines its checkpoint", "[shards][recovery]") {
  TestDir dir("shards");
  std::vector<ShardRecord> shards;
  {
    CheckpointStore store(dir.path());
    shards = write_shards(dir.path(), names::epoch_file(1), 2, "r-1");
    save_manifest(store, sharded(CheckpointKind::epoch, 1, shards), 1);
  }
  {
    std::fstream file(dir / shards[1].file, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(100);
    file.put('\x5a' ^ 0x01);
  }
  CheckpointStore store(dir.path());
  CHECK(store.latest());  // an open does not rehash
  auto actions = store.repair();
  REQUIRE(actions.size() == 1);
  CHECK(actions[0].type == RepairAction::Type::quarantine_checkpoint);
  CHECK_THAT(actions[0].reason, Catch::Contains("rank 1") && Catch::Contains(shards[1].file));
  CHECK_FALSE(store.latest());
}

TEST_CASE("an index rebuilt without shard rows keeps the shards its adopted manifest lists", "[shards][recovery]") {
  TestDir dir("shards");
  std::vector<ShardRecord> shards;
  {
    CheckpointStore store(dir.path());
    shards = write_shards(dir.path(), "best_model.pth", 2, "i-1");
    save_manifest(store, sharded(CheckpointKind::best, std::nullopt, shards), 1);
  }
  for (const char* name : {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"}) std::filesystem::remove(dir / name);
  CheckpointStore reopened(dir.path());
  CHECK(reopened.last_recovery().adopted == 1);
  CHECK(reopened.last_recovery().shards_removed == 0);
  CHECK(shard_files_in(dir.path()) == files_of(shards));
}

TEST_CASE("a shard read by byte ranges checks every block it touches against its hash", "[shards]") {
  TestDir dir("shards");
  const std::size_t size = 3 * distributed::kShardBlockSize + 12345;
  const std::string bytes = pattern(size, 7);
  auto shard = distributed::write_shard(*FileSystem::posix(), dir.path(), "best_model.shard-0-of-1.b.pth", 0, 1,
                                        HashAlgorithm::xxh3_128,
                                        [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
  CHECK(shard.size == size);
  CHECK(shard.hash == xxh3_of(dir / shard.file));
  CHECK(shard.block_hashes == distributed::block_hashes_of(bytes.data(), bytes.size()));
  CHECK(shard.block_hashes.size() == 4 * 16);
  {
    distributed::VerifiedShardSource source(*FileSystem::posix(), dir / shard.file, shard);
    std::string got(100, '\0');
    const std::uint64_t at = 2 * distributed::kShardBlockSize + 500;
    source.read_at(at, got.data(), got.size());
    CHECK(got == bytes.substr(at, 100));
    CHECK(source.bytes_read() == distributed::kShardBlockSize);  // one block, not the file
    std::string all(size, '\0');
    source.read_at(0, all.data(), all.size());
    CHECK(all == bytes);
    CHECK_THROWS_AS(source.read_at(size - 1, got.data(), 2), FormatError);
  }
  {
    std::fstream file(dir / shard.file, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(distributed::kShardBlockSize + 7));
    file.put(static_cast<char>(bytes[distributed::kShardBlockSize + 7] ^ 0x10));
  }
  distributed::VerifiedShardSource source(*FileSystem::posix(), dir / shard.file, shard);
  std::string got(10, '\0');
  source.read_at(5, got.data(), got.size());  // block 0 is sound
  CHECK_THROWS_MATCHES(source.read_at(distributed::kShardBlockSize, got.data(), got.size()), CorruptError,
                       Catch::Matchers::Predicate<CorruptError>([&](const CorruptError& e) {
                         return std::string(e.what()).find(shard.file) != std::string::npos &&
                                std::string(e.what()).find("block hash") != std::string::npos;
                       }));
  std::string whole(size, '\0');
  CHECK_THROWS_AS(source.read_at(0, whole.data(), whole.size()), CorruptError);
}

TEST_CASE("a shard write_shard returned survives a power loss, bytes and name", "[shards][power-loss]") {
  TestDir dir("shards");
  const std::string bytes = pattern(3 * 4096 + 17, 3);
  PowerLossFileSystem fs;
  const std::string file = "checkpoint_epoch_1.shard-0-of-1.p.pth";
  auto shard = distributed::write_shard(fs, dir.path(), file, 0, 1, HashAlgorithm::xxh3_128,
                                        [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
  fs.lose_unsynced();
  REQUIRE(std::filesystem::exists(dir / file));
  CHECK(read_bytes(dir / file) == bytes);
  CHECK(xxh3_of(dir / file) == shard.hash);
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator()) == 1);
}
