// One rank of the distributed benchmark (bench/run_distributed_benchmark.sh): a sharded
// save of a TOTAL_MIB float32 tensor split by rows over WORLD ranks, or a load of the
// checkpoint another job saved (resharded when its world size differs), against the
// single-process save and load of the same bytes through CheckpointManager.
//
//   dist_bench RANK WORLD PORT DIR save|async-save|load TOTAL_MIB
//   dist_bench 0 1 0 DIR single-save|single-load TOTAL_MIB
//
// Prints "<seconds>" of rank 0's call (the ranks start together: a store barrier), which
// covers every rank's write and fsync and the commit (save) or every rank's read and the
// load's agreement round (load). async-save prints "<seconds> <seconds>": the
// asynchronous call's return (its snapshot: what the training loop waits for), then
// wait()'s (the commit), of the job's second save (the first, untimed, faults in the
// snapshot's buffers, which the second reuses).
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "ckpt/distributed.hpp"
#include "ckpt/manager.hpp"
#include "support/loopback_job.hpp"

using namespace ckpt;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 7) return 3;
  const int rank = std::atoi(argv[1]);
  const int world = std::atoi(argv[2]);
  const int port = std::atoi(argv[3]);
  const std::string dir = argv[4];
  const std::string action = argv[5];
  const std::int64_t cols = 1024;
  const std::int64_t rows = std::atoll(argv[6]) * 1024 * 1024 / 4 / cols;
  const std::int64_t per = rows / world;
  auto seconds = [](Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); };
  if (action == "single-save" || action == "single-load") {
    CheckpointManager manager(dir);
    if (action == "single-save") {
      State state{{"epoch", std::int64_t{1}}, {"model", State{{"w", at::rand({rows, cols})}}}};
      const auto start = Clock::now();
      manager.save_epoch_checkpoint(state, 1);
      std::printf("%.4f\n", seconds(start));
    } else {
      const auto start = Clock::now();
      auto state = manager.load_latest_checkpoint();
      std::printf("%.4f\n", seconds(start));
      if (!state) return 2;
    }
    return 0;
  }
  auto store = test::loopback_store(rank, world, port, std::chrono::milliseconds(60000));
  auto pg = test::loopback_group(store, rank, world, std::chrono::milliseconds(60000));
  DistributedOptions options;
  options.timeout = std::chrono::milliseconds(120000);
  DistributedCheckpointManager manager(dir, pg, store, options);
  Placements placements;
  placements["model/w"] = TensorPlacement{{rows, cols}, {rank * per, 0}, {per, cols}};
  State state;
  if (action != "load") state = State{{"epoch", std::int64_t{1}}, {"model", State{{"w", at::rand({per, cols})}}}};
  const Placements saved{{"model/w", {{rows, cols}, {rank * per, 0}, {}}}};
  if (action == "async-save") {
    // A training loop's saves after its first: the snapshot's buffers are faulted in and
    // reused (the first save's copy also pays for the fresh pages).
    manager.save_epoch_checkpoint_async(state, 0, std::nullopt, saved);
    manager.wait();
  }
  test::all_reached(*store, "ready", world, std::chrono::milliseconds(60000));
  const auto start = Clock::now();
  if (action == "save") {
    manager.save_epoch_checkpoint(state, 1, std::nullopt, saved);
  } else if (action == "async-save") {
    manager.save_epoch_checkpoint_async(state, 1, std::nullopt, saved);
    const double call = seconds(start);
    manager.wait();
    if (rank == 0) std::printf("%.4f ", call);
  } else {
    auto loaded = manager.load_latest_checkpoint(placements);
    if (!loaded) return 2;
  }
  const double took = seconds(start);
  if (rank == 0) std::printf("%.4f\n", took);
  test::finish_job(*store, rank, world, std::chrono::milliseconds(60000));
  return 0;
}
