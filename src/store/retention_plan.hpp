// Retention's plan: what each rule of a policy keeps, computed from the index's queries
// (index/index.hpp: rotation_order, held_pins, periodic_metric, periodic_commit_times).
// Shared by the writer's rotation (save_protocol.cpp, checkpoint_store.cpp) and the
// reader's plan (checkpoint_reader.cpp). Reads only; the caller applies it.
#pragma once

#include <vector>

#include "ckpt/store.hpp"
#include "index/index.hpp"

namespace ckpt::store {

// One decision per committed periodic checkpoint, most recently committed first.
// REQUIRES: validate(policy) passed.
std::vector<RetentionDecision> plan_retention(index::Index& index, const RetentionPolicy& policy);

// The `retention` table's rows for a plan: (checkpoint id, policy) for each reason each
// kept checkpoint has.
std::vector<std::pair<std::int64_t, std::string>> retention_rows(const std::vector<RetentionDecision>& plan);

}  // namespace ckpt::store
