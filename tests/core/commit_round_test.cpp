// The multi-rank two-phase commit's protocol (distributed/commit_round.hpp) over an
// in-memory store, ranks as threads: every outcome a rank can see, and that every wait
// ends by its deadline. Real processes on c10d's TCPStore are the distributed
// component's tests.
#include <catch2/catch.hpp>

#include <map>
#include <mutex>
#include <thread>

#include <unistd.h>

#include "support/cli_support.hpp"
#include "support/ranks.hpp"
#include "support/test_dir.hpp"

#include "distributed/commit_round.hpp"

using namespace ckpt::distributed;
using Clock = std::chrono::steady_clock;

namespace {

class MemoryStore final : public KeyValueStore {
 public:
  void set(const std::string& key, const std::string& value) override {
    std::lock_guard<std::mutex> lock(mutex_);
    values_[key] = value;
  }
  std::optional<std::string> try_get(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = values_.find(key);
    if (found == values_.end()) return std::nullopt;
    return found->second;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::string> values_;
};

ShardReport shard(int rank) {
  ShardReport r;
  r.file = "checkpoint_epoch_3.rank" + std::to_string(rank) + ".pth";
  r.size = 1000 + static_cast<std::uint64_t>(rank);
  r.hash = std::string(32, 'a' + static_cast<char>(rank));
  r.hash_algo = "xxh3-128";
  r.placement = "w: [0, " + std::to_string(rank) + "]";
  return r;
}

}  // namespace

TEST_CASE("a shard report survives its text form, whatever bytes it holds, and hostile text is refused",
          "[distributed]") {
  ShardReport r = shard(2);
  r.ok = false;
  r.error = std::string("disk full\n:7:\0x", 14);
  const ShardReport back = decode_report(encode_report(r));
  CHECK(back.rank == 0);  // encode_report writes what it is given; report() sets the rank
  CHECK_FALSE(back.ok);
  CHECK(back.error == r.error);
  CHECK(back.file == r.file);
  CHECK(back.size == r.size);
  CHECK(back.placement == r.placement);
  const std::string good = encode_report(shard(1));
  for (const std::string& bad :
       {std::string(), std::string("x"), good.substr(0, good.size() - 1), good + "1", std::string("ckpt-shard-report 1\n99999999:"),
        std::string("ckpt-shard-report 1\n1:1") + "1:1" + "0:" + "0:" + "21:999999999999999999999"}) {
    INFO(bad);
    CHECK_THROWS_AS(decode_report(bad), std::invalid_argument);
  }
}

TEST_CASE("every rank reports: rank 0 collects all, commits, and every rank sees the commit", "[distributed]") {
  for (int world : {1, 2, 4}) {
    INFO("world size " << world);
    MemoryStore store;
    std::vector<std::optional<Decision>> seen(static_cast<std::size_t>(world));
    std::vector<std::thread> ranks;
    for (int r = 1; r < world; ++r) {
      ranks.emplace_back([&, r] {
        CommitRound round(store, "ckpt/run/1/", r, world);
        round.report(shard(r));
        seen[static_cast<std::size_t>(r)] = round.await_decision(Clock::now() + std::chrono::seconds(20));
      });
    }
    CommitRound zero(store, "ckpt/run/1/", 0, world);
    zero.report(shard(0));
    auto collected = zero.collect(Clock::now() + std::chrono::seconds(20));
    REQUIRE_FALSE(collected.aborted);
    REQUIRE(collected.reports.size() == static_cast<std::size_t>(world));
    for (int r = 0; r < world; ++r) {
      CHECK(collected.reports[static_cast<std::size_t>(r)].rank == r);
      CHECK(collected.reports[static_cast<std::size_t>(r)].file == shard(r).file);
    }
    zero.publish(Decision{true, {}});
    for (auto& t : ranks) t.join();
    for (int r = 1; r < world; ++r) {
      REQUIRE(seen[static_cast<std::size_t>(r)]);
      CHECK(seen[static_cast<std::size_t>(r)]->commit);
    }
  }
}

TEST_CASE("a rank that fails or never reports aborts the round on every rank, by its deadline, naming the rank",
          "[distributed]") {
  MemoryStore store;
  constexpr int kWorld = 4;
  std::vector<std::optional<Decision>> seen(kWorld);
  std::vector<std::thread> ranks;
  for (int r = 1; r < kWorld; ++r) {
    ranks.emplace_back([&, r] {
      CommitRound round(store, "ckpt/run/7/", r, kWorld);
      if (r == 2) {
        ShardReport failed = shard(r);
        failed.ok = false;
        failed.error = "checkpoint_epoch_3.rank2.pth: fsync failed: Input/output error";
        round.report(failed);
      } else if (r == 3) {
        return;  // dead before it reported: never awaits either
      } else {
        round.report(shard(r));
      }
      seen[static_cast<std::size_t>(r)] = round.await_decision(Clock::now() + std::chrono::seconds(20));
    });
  }
  CommitRound zero(store, "ckpt/run/7/", 0, kWorld);
  zero.report(shard(0));
  auto collected = zero.collect(Clock::now() + std::chrono::milliseconds(300));
  REQUIRE(collected.aborted);
  CHECK(collected.reports.empty());
  CHECK(collected.aborted->reason ==
        "rank 2 failed: checkpoint_epoch_3.rank2.pth: fsync failed: Input/output error; rank 3 did not report before "
        "the deadline");
  for (auto& t : ranks) t.join();
  for (int r : {1, 2}) {
    REQUIRE(seen[static_cast<std::size_t>(r)]);
    CHECK_FALSE(seen[static_cast<std::size_t>(r)]->commit);
    CHECK(seen[static_cast<std::size_t>(r)]->reason == collected.aborted->reason);
  }
}

TEST_CASE("a rank waiting for a decision that rank 0 never publishes gets none by its deadline", "[distributed]") {
  MemoryStore store;
  CommitRound one(store, "ckpt/run/2/", 1, 2);
  one.report(shard(1));
  CHECK_FALSE(one.await_decision(Clock::now() + std::chrono::milliseconds(100)));
  // Another round's keys are not this one's.
  CommitRound other(store, "ckpt/run/3/", 0, 2);
  other.publish(Decision{true, {}});
  CHECK_FALSE(one.await_decision(Clock::now() + std::chrono::milliseconds(50)));
}

TEST_CASE("a report that is not one, or names another rank, fails its rank instead of being trusted", "[distributed]") {
  MemoryStore store;
  store.set("ckpt/run/4/rank/1", "garbage");
  ShardReport impostor = shard(0);
  impostor.rank = 0;
  store.set("ckpt/run/4/rank/2", encode_report(impostor));
  CommitRound zero(store, "ckpt/run/4/", 0, 3);
  zero.report(shard(0));
  auto collected = zero.collect(Clock::now() + std::chrono::seconds(5));
  REQUIRE(collected.aborted);
  CHECK_THAT(collected.aborted->reason, Catch::Contains("rank 1 failed: its report could not be read") &&
                                            Catch::Contains("rank 2 failed: its report names rank 0"));
}

#ifdef CKPT_COMMIT_RANK
namespace {

// Starts `world` ckpt_commit_rank processes (rank r with modes[r]) and returns each one's
// "exit-status output" line, by rank. Every process is bounded by timeout(1).
std::vector<std::string> run_commit_ranks(const ckpt::test::TestDir& dir, int world, const std::vector<std::string>& modes,
                                          int deadline_ms) {
  const int port = ckpt::test::free_port();
  std::vector<std::string> commands;
  for (int r = 0; r < world; ++r) {
    commands.push_back(std::string(CKPT_COMMIT_RANK) + " " + std::to_string(r) + " " + std::to_string(world) + " " +
                       std::to_string(port) + " " + std::to_string(deadline_ms) + " " + modes[static_cast<std::size_t>(r)]);
  }
  return ckpt::test::run_ranks(dir.path(), commands);
}

}  // namespace

TEST_CASE("ranks in separate processes commit over c10d's TCPStore at world sizes 1, 2 and 4",
          "[distributed][two-process]") {
  for (int world : {1, 2, 4}) {
    INFO("world size " << world);
    ckpt::test::TestDir dir("commit-tcp");
    auto results = run_commit_ranks(dir, world, std::vector<std::string>(static_cast<std::size_t>(world), "ok"), 10000);
    for (const auto& result : results) CHECK(result == "commit\n0\n");
  }
}

TEST_CASE("a rank that dies before it reports aborts every other process by the deadline, naming it",
          "[distributed][two-process]") {
  ckpt::test::TestDir dir("commit-tcp-dead");
  auto results = run_commit_ranks(dir, 4, {"ok", "ok", "die", "fail"}, 2000);
  const std::string reason =
      "abort rank 3 failed: checkpoint_epoch_1.rank3.pth: fsync failed: Input/output error; rank 2 did not report "
      "before the deadline\n1\n";
  CHECK(results[0] == reason);
  CHECK(results[1] == reason);
  CHECK(results[2] == "9\n");
  CHECK(results[3] == reason);
}

TEST_CASE("when rank 0 never decides, every other process gets no decision by its deadline",
          "[distributed][two-process]") {
  ckpt::test::TestDir dir("commit-tcp-silent");
  auto results = run_commit_ranks(dir, 2, {"silent", "ok"}, 1000);
  CHECK(results[1] == "no decision\n2\n");
}
#endif
