// Test-only: a hook called with the name of each step of a distributed save
// ("shard_written" on every rank after its shard is durable and before it reports;
// "reports_collected" on rank 0 after every report arrived, before the index commit), so a
// process test can kill a rank exactly there. Never set in production.
#pragma once

#include <functional>
#include <string_view>

namespace ckpt::distributed {

void set_step_hook(std::function<void(std::string_view)> hook);
void step(std::string_view name);

}  // namespace ckpt::distributed
