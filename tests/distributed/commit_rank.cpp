// ckpt_commit_rank: one rank of a commit round over c10d's TCPStore on 127.0.0.1, for
// the [distributed] process tests. Rank 0 hosts the store.
//
//   ckpt_commit_rank RANK WORLD PORT DEADLINE_MS [fail|die|silent]
//
// fail: reports a local failure; die: exits (status 9) before reporting, as a killed
// rank; silent: rank 0 collects but never publishes. Prints one line: "commit", "abort
// REASON" or "no decision", and exits 0 (commit), 1 (abort), 2 (no decision), 3 (error).
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "distributed/c10d_store.hpp"

using namespace ckpt::distributed;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s RANK WORLD PORT DEADLINE_MS [fail|die|silent]\n", argv[0]);
    return 3;
  }
  const int rank = std::atoi(argv[1]);
  const int world = std::atoi(argv[2]);
  const int port = std::atoi(argv[3]);
  const auto deadline_ms = std::chrono::milliseconds(std::atoi(argv[4]));
  const std::string mode = argc > 5 ? argv[5] : "";
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = rank == 0;
    options.numWorkers = world;
    options.waitWorkers = false;
    options.timeout = std::chrono::milliseconds(20000);
    auto base = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
    C10dKeyValueStore store(c10::make_intrusive<c10d::PrefixStore>("ckpt/test/1/", base));
    CommitRound round(store, "", rank, world);
    if (mode == "die") return 9;
    ShardReport report;
    report.file = "checkpoint_epoch_1.rank" + std::to_string(rank) + ".pth";
    report.size = 100;
    report.hash = "00";
    report.hash_algo = "xxh3-128";
    if (mode == "fail") {
      report.ok = false;
      report.error = report.file + ": fsync failed: Input/output error";
    }
    round.report(report);
    const auto deadline = CommitRound::Clock::now() + deadline_ms;
    std::optional<Decision> decision;
    if (rank == 0) {
      auto collected = round.collect(deadline);
      if (collected.aborted) {
        decision = collected.aborted;
      } else if (mode != "silent") {
        decision = Decision{true, {}};
        round.publish(*decision);
      } else {  // alive but stuck: keeps the store up past the others' deadline and grace
        std::this_thread::sleep_for(3 * deadline_ms + std::chrono::milliseconds(1000));
      }
      // Rank 0 hosts the store: it stays until every other rank has read the decision.
      base->add("done", 1);
      while (decision && base->add("done", 0) < world && CommitRound::Clock::now() < deadline + deadline_ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    } else {
      decision = round.await_decision(deadline + std::chrono::milliseconds(1000));
      base->add("done", 1);
    }
    if (!decision) {
      std::printf("no decision\n");
      return 2;
    }
    std::printf("%s\n", decision->commit ? "commit" : ("abort " + decision->reason).c_str());
    return decision->commit ? 0 : 1;
  } catch (const std::exception& e) {
    std::printf("error %s\n", e.what());
    return 3;
  }
}
