// One multi-rank checkpoint's two-phase commit, over the key-value store the ranks share
// (issue 16; c10d's TCPStore in the distributed component, anything with set/get/check
// here). Torch-free, so the protocol is tested without processes or sockets.
//
// Every rank writes and syncs its shard, then report()s it: one key per rank under the
// round's prefix. Rank 0 collect()s the reports until every rank's is there or the
// deadline passes, then publishes the decision: commit (after its index transaction
// succeeded) or abort, with the reason naming the ranks that failed or did not report.
// The other ranks await_decision() until the deadline plus a grace. Nothing here uses
// the process group's collectives: a dead or stalled rank cannot be named from a
// collective (Gloo reports a socket, not a rank), a collective that times out leaves the
// group unusable, and Store::wait() leaves a waiter on the server that corrupts the
// connection's next request (the spike's measurements), so every wait is a poll of
// `check`, bounded by our own deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ckpt::distributed {

// The part of a store (c10d::Store) the protocol uses. Thread-compatible; each rank has
// its own client.
class KeyValueStore {
 public:
  virtual ~KeyValueStore() = default;
  virtual void set(const std::string& key, const std::string& value) = 0;
  // The value when the key exists, else nullopt; never blocks waiting for it.
  virtual std::optional<std::string> try_get(const std::string& key) = 0;
};

// What one rank says about its shard. A rank that failed locally reports ok = false and
// why, so rank 0 can name it at once instead of at the deadline.
struct ShardReport {
  int rank = 0;
  bool ok = true;
  std::string error;  // when !ok
  std::string file;   // the shard's file name in the checkpoint directory
  std::uint64_t size = 0;
  std::string hash;
  std::string hash_algo;
  std::string placement;  // the shard's tensors' placement, as the index records it (opaque here)
  std::uint64_t block_size = 0;
  std::string block_hashes;  // ShardRecord::block_hashes
};

// Text form of a report, and back. decode_report throws std::invalid_argument on
// anything it did not write (a hostile or truncated value never costs more than reading it).
std::string encode_report(const ShardReport& report);
ShardReport decode_report(const std::string& text);
// Several reports in one value (a load's plan: the committed shards rank 0 publishes).
std::string encode_reports(const std::vector<ShardReport>& reports);
std::vector<ShardReport> decode_reports(const std::string& text);

struct Decision {
  bool commit = false;
  std::string reason;  // why not, naming the ranks; empty on commit
};

class CommitRound {
 public:
  using Clock = std::chrono::steady_clock;
  // `prefix` names this save uniquely in the store (e.g. "ckpt/<run>/<seq>/": every rank
  // counts its saves, so all agree on it without talking).
  CommitRound(KeyValueStore& store, std::string prefix, int rank, int world_size,
              std::chrono::milliseconds poll = std::chrono::milliseconds(20));

  // Every rank, once per round.
  void report(const ShardReport& report);

  // Rank 0: waits for every rank's report until `deadline`. All reported ok: returns them,
  // by rank, and the caller commits and then publish()es. Otherwise it publishes the abort
  // itself and returns the decision (commit false, reason naming each rank that failed,
  // with its error, and each that did not report).
  struct Collected {
    std::vector<ShardReport> reports;
    std::optional<Decision> aborted;
  };
  Collected collect(Clock::time_point deadline);
  // Rank 0: the decision every rank waits for.
  void publish(const Decision& decision);

  // Every key this round sets (the reports and the decision), for deleting it once every
  // rank is done with it.
  std::vector<std::string> keys() const;

  // Ranks other than 0: the decision, or nullopt when none is published by `deadline`
  // (rank 0 died or stalled: the caller's error says so).
  std::optional<Decision> await_decision(Clock::time_point deadline);

 private:
  std::string report_key(int rank) const { return prefix_ + "rank/" + std::to_string(rank); }
  std::string decision_key() const { return prefix_ + "decision"; }

  KeyValueStore& store_;
  std::string prefix_;
  int rank_;
  int world_size_;
  std::chrono::milliseconds poll_;
};

}  // namespace ckpt::distributed
