// The commit round's store (distributed/commit_round.hpp) on a c10d::Store: the TCPStore
// the user's process group was made with (or any other c10d store). Only set, check and
// get: check is a plain request and reply, where Store::wait would leave a waiter on the
// server that answers a later request on the same connection (docs/notes/c10d_spike.md).
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "distributed/commit_round.hpp"

namespace ckpt::distributed {

class C10dKeyValueStore final : public KeyValueStore {
 public:
  explicit C10dKeyValueStore(c10::intrusive_ptr<c10d::Store> store) : store_(std::move(store)) {}
  void set(const std::string& key, const std::string& value) override;
  std::optional<std::string> try_get(const std::string& key) override;

 private:
  c10::intrusive_ptr<c10d::Store> store_;
};

}  // namespace ckpt::distributed
