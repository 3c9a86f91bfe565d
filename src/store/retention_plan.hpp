// Retention's plan: what each rule of a policy keeps, computed from the index's queries
// (index/index.hpp: rotation_order, held_pins, periodic_metric, periodic_commit_times).
// Shared by the writer's rotation (save_protocol.cpp, checkpoint_store.cpp) and the
// reader's plan (checkpoint_reader.cpp). Reads only; the caller applies it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ckpt/store.hpp"
#include "index/index.hpp"

namespace ckpt::store {

// The `one per S s` rule's walk over the whole committed history, carried from one pass
// to the next by the writer so that each pass reads only the commits since the last
// (without it every save would read the whole history). Commits never change once made,
// so carrying it changes no decision; it starts over when the interval changes, and when
// the last commit it walked is not in the index as it was (the transaction that made it
// rolled back, or the index was rebuilt).
struct IntervalWalk {
  struct Walked {
    bool keeper = false;
    std::string why_not;
  };
  std::int64_t interval_ms = -1;          // -1: nothing walked yet
  std::optional<index::Index::CommitTime> through;  // the last commit walked
  std::optional<std::pair<std::int64_t, std::int64_t>> last_keeper;  // id, created_at ms
  std::unordered_map<std::int64_t, Walked> walked;  // by id: live rows only, after a pass
};

// One decision per committed periodic checkpoint, most recently committed first. With
// `walk`, the interval rule goes on from it (and updates it); without, it walks the
// whole history. REQUIRES: validate(policy) passed.
std::vector<RetentionDecision> plan_retention(index::Index& index, const RetentionPolicy& policy,
                                              IntervalWalk* walk = nullptr);

// The `retention` table's rows for a plan: (checkpoint id, policy) for each reason each
// kept checkpoint has.
std::vector<std::pair<std::int64_t, std::string>> retention_rows(const std::vector<RetentionDecision>& plan);

}  // namespace ckpt::store
