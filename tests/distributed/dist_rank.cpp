// ckpt_dist_rank: one rank of a job using DistributedCheckpointManager over a real
// process group (Gloo on 127.0.0.1, rank 0 hosting the TCPStore), for the [distributed]
// process tests (tests/core/distributed_test.cpp).
//
//   ckpt_dist_rank RANK WORLD PORT DIR sharded|replicated ACTION [KILL_RANK KILL_STEP]
//
// ACTION:
//   save N    saves epochs 1..N (and the best model after epoch 1); prints "saved".
//             With KILL_RANK and KILL_STEP ("shard_written", "reports_collected"), that
//             rank raises SIGKILL at that step of epoch N's save; the others print
//             "error <ms> <message>" (the time from the call to the error) and exit 1.
//             KILL_STEP "overlap" (any KILL_RANK): every rank places its rows of W at row 0.
//   async N   as save, with the asynchronous saves (Snapshot::copy), every tensor of the
//             state overwritten right after each call (the snapshot must hold the values);
//             wait() after the last. A failure is printed by the call that raised it.
//             KILL_STEP "bad": KILL_RANK's placements of epoch 2 do not fit its state;
//             "bad-wait": the same, rank 0 also calls wait() right after epoch 2's call,
//             and every rank goes on after a failure (printed) to save the next epochs.
//   fail-load (sharded, a new directory) an asynchronous save of epoch 1 that fails (rank
//             1's placements do not fit), rank 0 alone calling wait() ("wait: <error>"),
//             then every rank loading: "load: <error>" or "nothing".
//   load      load_latest_checkpoint: sharded, asks for this rank's slices at WORLD
//             (resharding when the checkpoint was saved at another world size); checks
//             every value; prints "loaded epoch E from rank R's shard".
//   full      (world 1, no process group) load_full_state; checks every value.
//
// The state of epoch e: {"epoch": e, "saved_by": rank, "model": {"w": rows of W_e, "v":
// columns of V_e}}, with W_e = arange(8*6)+1000e as [8, 6] (split by rows) and V_e =
// arange(6*10)-1000e as [6, 10] float64 (split by columns, unevenly for 4 ranks). In
// replicated mode every rank holds both whole.
// CKPT_TEST_INDEX_JOURNAL=rollback opens rank 0's index with a rollback journal;
// CKPT_TEST_COUNT_KEYS=1 has rank 0 print "keys <n>", the keys in the c10d store once
// every rank is done.
// Exit: 0 ok, 1 a ckpt error (printed), 2 a wrong value, 3 anything else.
#include <ATen/ATen.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ckpt/distributed.hpp"
#include "distributed/test_hooks.hpp"
#include "support/loopback_job.hpp"

using namespace ckpt;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::int64_t kRows = 8, kCols = 6, kVRows = 6, kVCols = 10;

at::Tensor w_of(std::int64_t epoch) {
  return (at::arange(kRows * kCols, at::kFloat) + 1000.0 * static_cast<double>(epoch)).reshape({kRows, kCols});
}
at::Tensor v_of(std::int64_t epoch) {
  return (at::arange(kVRows * kVCols, at::kDouble) - 1000.0 * static_cast<double>(epoch)).reshape({kVRows, kVCols});
}

// Rank r's rows of W and columns of V at world size `world` (ceil splits: uneven for V at 4).
std::pair<std::int64_t, std::int64_t> span(std::int64_t total, int rank, int world) {
  const std::int64_t per = (total + world - 1) / world;
  const std::int64_t begin = std::min(total, per * rank);
  return {begin, std::min(total, begin + per) - begin};
}

Placements slices(int rank, int world, bool with_sizes) {
  auto [row, rows] = span(kRows, rank, world);
  auto [col, cols] = span(kVCols, rank, world);
  Placements p;
  p["model/w"] = TensorPlacement{{kRows, kCols}, {row, 0}, with_sizes ? std::vector<std::int64_t>{rows, kCols} : std::vector<std::int64_t>{}};
  p["model/v"] = TensorPlacement{{kVRows, kVCols}, {0, col}, with_sizes ? std::vector<std::int64_t>{kVRows, cols} : std::vector<std::int64_t>{}};
  return p;
}

State state_of(std::int64_t epoch, int rank, int world, bool sharded) {
  at::Tensor w = w_of(epoch), v = v_of(epoch);
  if (sharded) {
    auto [row, rows] = span(kRows, rank, world);
    auto [col, cols] = span(kVCols, rank, world);
    w = w.narrow(0, row, rows).clone();
    v = v.narrow(1, col, cols);  // a non-contiguous view: the manager makes it contiguous
  }
  State model{{"w", w}, {"v", v}};
  return State{{"epoch", epoch}, {"saved_by", static_cast<std::int64_t>(rank)}, {"val_acc", 0.1 * epoch},
               {"model", model}};
}

// 0 when `state` holds epoch E's values for this rank's slices (or whole), else 2.
int check(const State& state, int rank, int world, bool sharded, std::int64_t& epoch) {
  epoch = state.get<std::int64_t>("epoch");
  State model = state.get<State>("model");
  at::Tensor w = w_of(epoch), v = v_of(epoch);
  if (sharded) {
    auto [row, rows] = span(kRows, rank, world);
    auto [col, cols] = span(kVCols, rank, world);
    w = w.narrow(0, row, rows);
    v = v.narrow(1, col, cols);
  }
  if (!at::equal(model.get<at::Tensor>("w"), w) || !at::equal(model.get<at::Tensor>("v"), v)) {
    std::printf("wrong values for rank %d\n", rank);
    return 2;
  }
  return 0;
}

// What a training step does to the state right after an asynchronous save returns.
void overwrite(const State& state) {
  State model = state.get<State>("model");
  model.get<at::Tensor>("w").fill_(-1);
  model.get<at::Tensor>("v").fill_(-1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s RANK WORLD PORT DIR sharded|replicated ACTION [N] [KILL_RANK KILL_STEP]\n", argv[0]);
    return 3;
  }
  const int rank = std::atoi(argv[1]);
  const int world = std::atoi(argv[2]);
  const int port = std::atoi(argv[3]);
  const std::string dir = argv[4];
  const bool sharded = std::string(argv[5]) == "sharded";
  const std::string action = argv[6];
  int next = 7;
  const bool async = action == "async";
  const int epochs = (action == "save" || async) && argc > next ? std::atoi(argv[next++]) : 0;
  const int kill_rank = argc > next + 1 ? std::atoi(argv[next]) : -1;
  const std::string kill_step = argc > next + 1 ? argv[next + 1] : "";
  try {
    if (action == "full") {
      auto state = load_full_state(dir);
      if (!state) {
        std::printf("nothing\n");
        return 0;
      }
      std::int64_t epoch = 0;
      const int bad = check(*state, 0, 1, false, epoch);
      if (bad) return bad;
      std::printf("full epoch %lld\n", static_cast<long long>(epoch));
      return 0;
    }
    auto store = test::loopback_store(rank, world, port, std::chrono::milliseconds(20000));
    auto pg = test::loopback_group(store, rank, world, std::chrono::milliseconds(20000));

    DistributedOptions options;
    options.mode = sharded ? DistributedMode::sharded : DistributedMode::replicated;
    options.timeout = std::chrono::milliseconds(3000);
    options.grace = std::chrono::milliseconds(2000);
    options.max_to_keep = 3;
    // CKPT_TEST_INDEX_JOURNAL=rollback: rank 0's index in the mode network file systems get.
    if (const char* journal = std::getenv("CKPT_TEST_INDEX_JOURNAL"); journal && std::string(journal) == "rollback") {
      options.store.index_journal = IndexJournal::rollback;
    }
    DistributedCheckpointManager manager(dir, pg, store, options);
    int status = 0;
    auto failed = [&](const ckpt::Error& error, Clock::time_point start) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
      std::printf("error %lld %s\n", static_cast<long long>(ms), error.what());
      status = 1;
    };
    if (action == "save" || async) {
      for (int epoch = 1; epoch <= epochs; ++epoch) {
        if (epoch == epochs && rank == kill_rank && kill_step.rfind("bad", 0) != 0 && kill_step != "overlap") {
          if (async) manager.wait();  // the kill falls in epoch N's save, not in one still in flight
          distributed::set_step_hook([&](std::string_view step) {
            if (step == kill_step) ::raise(SIGKILL);
          });
        }
        const State state = state_of(epoch, rank, world, sharded);
        Placements placements = sharded ? slices(rank, world, false) : Placements{};
        // KILL_STEP "overlap": every rank claims the first rows of W, a bug in the caller.
        if (kill_step == "overlap" && epoch == epochs) placements["model/w"].offsets = {0, 0};
        const bool go_on = kill_step == "bad-wait";
        if ((kill_step == "bad" || go_on) && epoch == 2 && rank == kill_rank) placements["model/w"].global_shape = {1, 1};
        const auto start = Clock::now();
        if (async) {
          try {
            manager.save_epoch_checkpoint_async(state, epoch, std::nullopt, placements);
            overwrite(state);
            if (epoch == 1) {
              const State best = state_of(epoch, rank, world, sharded);
              manager.save_best_model_async(best, 0.1, placements);
              overwrite(best);
            }
            if (go_on && epoch == 2 && rank == 0) manager.wait();
          } catch (const ckpt::Error& error) {
            failed(error, start);
            if (!go_on) break;
            status = 0;
          }
          continue;
        }
        try {
          auto record = manager.save_epoch_checkpoint(state, epoch, std::nullopt, placements);
          if (record.file != "checkpoint_epoch_" + std::to_string(epoch) + ".pth") {
            std::printf("wrong record %s\n", record.file.c_str());
            return 2;
          }
          if (epoch == 1) manager.save_best_model(state, 0.1, placements);
        } catch (const ckpt::Error& error) {  // rank 0 throws what refused the commit itself
          failed(error, start);
          break;
        }
      }
      if (async && status == 0) {
        const auto start = Clock::now();
        try {
          manager.wait();
        } catch (const ckpt::Error& error) {
          failed(error, start);
        }
      }
      if (status == 0) std::printf("saved\n");
    } else if (action == "fail-load") {
      Placements placements = slices(rank, world, false);
      if (rank == 1) placements["model/w"].global_shape = {1, 1};
      manager.save_epoch_checkpoint_async(state_of(1, rank, world, true), 1, std::nullopt, placements);
      if (rank == 0) {
        try {
          manager.wait();
        } catch (const ckpt::Error& error) {
          std::printf("wait: %s\n", error.what());
        }
      }
      try {
        std::printf("%s\n", manager.load_latest_checkpoint() ? "loaded" : "nothing");
      } catch (const ckpt::Error& error) {
        std::printf("load: %s\n", error.what());
        status = 1;
      }
    } else if (action == "load") {
      auto state = manager.load_latest_checkpoint(sharded ? slices(rank, world, true) : Placements{});
      if (!state) {
        std::printf("nothing\n");
      } else {
        std::int64_t epoch = 0;
        status = check(*state, rank, world, sharded, epoch);
        if (status == 0) {
          std::printf("loaded epoch %lld from rank %lld's shard\n", static_cast<long long>(epoch),
                      static_cast<long long>(state->get<std::int64_t>("saved_by")));
        }
      }
    }
    // The status is already decided (a store whose host died fails here, unheard).
    test::finish_job(*store, rank, world, std::chrono::seconds(10));
    if (const char* count = std::getenv("CKPT_TEST_COUNT_KEYS"); count && rank == 0) {
      std::printf("keys %lld\n", static_cast<long long>(store->getNumKeys()));
    }
    return status;
  } catch (const ckpt::Error& error) {
    std::printf("error %s\n", error.what());
    return 1;
  } catch (const std::exception& error) {
    std::printf("exception %s\n", error.what());
    return 3;
  }
}
