// One rank of a job on this machine over c10d, for the programs the process tests and the
// benchmark start as ranks (tests/distributed/dist_rank.cpp, bench/dist_bench.cpp; they
// need libgloo-dev's headers, which ckpt_commit_rank does without): rank 0 hosts a
// TCPStore on 127.0.0.1:PORT, every rank can join a Gloo process group over it, and at
// the end every rank says it is done, rank 0 (whose process the store lives in) last.
// Header-only: only those programs link c10d.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <thread>

namespace ckpt::test {

inline c10::intrusive_ptr<c10d::TCPStore> loopback_store(int rank, int world, int port,
                                                         std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(port);
  options.isServer = rank == 0;
  options.numWorkers = world;
  options.waitWorkers = false;
  options.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>("127.0.0.1", options);
}

inline c10::intrusive_ptr<c10d::ProcessGroupGloo> loopback_group(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                                  int world, std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
}

// Every rank counts itself under `key`; returns once all `world` have, or `limit` passed
// (false then). Throws what the store throws (its host died).
inline bool all_reached(c10d::Store& store, const std::string& key, int world, std::chrono::milliseconds limit) {
  store.add(key, 1);
  const auto until = std::chrono::steady_clock::now() + limit;
  while (store.add(key, 0) < world) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// The end of a rank's job: rank 0 keeps the store up until every rank is done with it
// (at most `limit`); the others only count themselves. Never throws.
inline void finish_job(c10d::Store& store, int rank, int world, std::chrono::milliseconds limit) {
  try {
    if (rank == 0) {
      all_reached(store, "done", world, limit);
    } else {
      store.add("done", 1);
    }
  } catch (const std::exception&) {  // the store's host died: nothing left to wait for
  }
}

}  // namespace ckpt::test
