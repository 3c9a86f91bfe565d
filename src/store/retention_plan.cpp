// Retention's plan (retention_plan.hpp). Each rule is one pass over rotation's rows that
// adds a reason to keep, or a reason not to, to each; a row with no reason to keep goes.
// The decisions of docs/durability.md ("Retention") are made here: NaN ranks last and a
// missing metric is not judged (top k), ties go to the newer commit, the interval walk
// reads created_at from the index and covers every checkpoint ever committed, so a new
// commit never changes what an older one was decided.
#include "store/retention_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <unordered_map>

namespace ckpt::store {

namespace {

struct Row {
  RetentionDecision decision;
  bool superseded = false;
  std::vector<std::string> why_not;  // one per rule that does not keep it
};

std::string top_text(const TopKRule& rule) {
  RetentionRules one;
  one.top.push_back(rule);
  return to_string(one);
}

std::string value_text(const std::optional<double>& value) { return value ? fmt::format("{}", *value) : "NaN"; }

void apply_top(std::vector<Row>& rows, const TopKRule& rule, index::Index& index) {
  const std::string name = top_text(rule);
  std::unordered_map<std::int64_t, std::optional<double>> values;
  for (auto& [id, value] : index.periodic_metric(rule.metric)) values.emplace(id, value);
  std::vector<Row*> judged;
  for (auto& row : rows) {
    if (values.count(row.decision.record.id)) {
      judged.push_back(&row);
    } else {
      row.decision.kept_by.push_back(fmt::format("{}: not judged, no {}", name, rule.metric));
    }
  }
  const bool minimize = rule.mode == MetricMode::min;
  // Best first: numbers before NaN, then by value, then the more recent commit.
  std::stable_sort(judged.begin(), judged.end(), [&](const Row* a, const Row* b) {
    const auto& va = values.at(a->decision.record.id);
    const auto& vb = values.at(b->decision.record.id);
    if (va.has_value() != vb.has_value()) return va.has_value();
    if (va && *va != *vb) return minimize ? *va < *vb : *va > *vb;
    return a->decision.record.commit_seq > b->decision.record.commit_seq;
  });
  for (std::size_t rank = 0; rank < judged.size(); ++rank) {
    Row& row = *judged[rank];
    if (static_cast<int>(rank) < rule.k) {
      row.decision.kept_by.push_back(name);
    } else {
      row.why_not.push_back(fmt::format("{}: ranks {} ({} {})", name, rank + 1, rule.metric,
                                        value_text(values.at(row.decision.record.id))));
    }
  }
}

void apply_every(std::vector<Row>& rows, const RetentionRules& rules) {
  for (auto& row : rows) {
    const CheckpointRecord& r = row.decision.record;
    if (rules.every_epochs) {
      const std::string name = fmt::format("every {} epochs", *rules.every_epochs);
      if (r.step) {
        row.why_not.push_back(fmt::format("{}: a step checkpoint", name));
      } else if (r.epoch && *r.epoch % *rules.every_epochs == 0) {
        row.decision.kept_by.push_back(name);
      } else {
        row.why_not.push_back(fmt::format("{}: epoch {} is not a multiple", name, r.epoch.value_or(-1)));
      }
    }
    if (rules.every_steps) {
      const std::string name = fmt::format("every {} steps", *rules.every_steps);
      if (!r.step) {
        row.why_not.push_back(fmt::format("{}: not a step checkpoint", name));
      } else if (*r.step % *rules.every_steps == 0) {
        row.decision.kept_by.push_back(name);
      } else {
        row.why_not.push_back(fmt::format("{}: step {} is not a multiple", name, *r.step));
      }
    }
  }
}

// The interval walk over the whole history: a checkpoint is its interval's keeper when
// it is the first, or created at least `one_per` after the last keeper. Rows rotated out
// or retired stay in the walk, so a keeper once is a keeper for good, and a checkpoint
// created before the last keeper (a clock set back) keeps nothing and deletes nothing
// older.
void apply_one_per(std::vector<Row>& rows, std::chrono::seconds one_per, index::Index& index, IntervalWalk& walk) {
  const std::string name = fmt::format("one per {} s", one_per.count());
  const std::int64_t interval_ms = one_per.count() * 1000;
  // Go on from the last commit walked when it is still there as it was; else start over.
  std::vector<index::Index::CommitTime> times;
  bool go_on = false;
  if (walk.interval_ms == interval_ms && walk.through) {
    times = index.periodic_commit_times(walk.through->commit_seq);
    go_on = !times.empty() && times.front().commit_seq == walk.through->commit_seq &&
            times.front().id == walk.through->id && times.front().created_ms == walk.through->created_ms;
    if (go_on) times.erase(times.begin());
  }
  if (!go_on) {
    walk = IntervalWalk{};
    walk.interval_ms = interval_ms;
    times = index.periodic_commit_times();
  }
  auto& last = walk.last_keeper;
  for (const auto& time : times) {
    IntervalWalk::Walked& w = walk.walked[time.id];
    const auto& ms = time.created_ms;
    if (!ms) {
      w.why_not = fmt::format("{}: its created_at is not a time", name);
    } else if (!last || *ms >= last->second + interval_ms) {
      w.keeper = true;
      last = std::make_pair(time.id, *ms);
    } else if (*ms < last->second) {
      w.why_not = fmt::format("{}: created {:.3f} s before checkpoint {}, the last one kept (a clock set back?)", name,
                              (last->second - *ms) / 1000.0, last->first);
    } else {
      w.why_not = fmt::format("{}: created {:.3f} s after checkpoint {}, the last one kept", name,
                              (*ms - last->second) / 1000.0, last->first);
    }
    walk.through = time;
  }
  std::unordered_map<std::int64_t, IntervalWalk::Walked> live;
  for (auto& row : rows) {
    auto found = walk.walked.find(row.decision.record.id);
    if (found == walk.walked.end()) continue;  // committed after the walk's read: not possible in one transaction
    if (found->second.keeper) {
      row.decision.kept_by.push_back(name);
    } else {
      row.why_not.push_back(found->second.why_not);
    }
    live.insert(*found);
  }
  // A row no longer live never is again: what the next pass needs is the live rows' part.
  walk.walked = std::move(live);
}

}  // namespace

std::vector<RetentionDecision> plan_retention(index::Index& index, const RetentionPolicy& policy, IntervalWalk* walk) {
  std::vector<Row> rows;
  for (auto& ranked : index.rotation_order()) {
    Row row;
    row.decision.record = std::move(ranked.record);
    row.superseded = ranked.superseded;
    rows.push_back(std::move(row));
  }
  if (rows.empty()) return {};

  // What is never deleted. (The best model is its own file, best_model.pth, which
  // retention never deletes; an epoch file it shares bytes with rotates as any other:
  // the hard link keeps the bytes.)
  const auto newest = std::max_element(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.decision.record.commit_seq < b.decision.record.commit_seq;
  });
  newest->decision.kept_by.push_back("newest");
  const auto resume = index.resume_candidate();
  std::multimap<std::int64_t, index::Index::HeldPin> pins;
  for (auto& pin : index.held_pins()) pins.emplace(pin.checkpoint_id, std::move(pin));
  for (auto& row : rows) {
    const CheckpointRecord& r = row.decision.record;
    if (resume && resume->id == r.id) row.decision.kept_by.push_back("resume point");
    auto [from, to] = pins.equal_range(r.id);
    for (auto pin = from; pin != to; ++pin) {
      row.decision.kept_by.push_back(fmt::format("pinned by {} until {}", pin->second.holder, pin->second.expires_at));
    }
  }

  // The rules.
  for (std::size_t position = 0; position < rows.size(); ++position) {
    Row& row = rows[position];
    if (policy.max_to_keep == 0) {
      row.decision.kept_by.push_back(to_string(RetentionPolicy{0, {}}));
    } else if (static_cast<int>(position) < policy.max_to_keep) {
      row.decision.kept_by.push_back(fmt::format("newest {}", policy.max_to_keep));
    } else {
      row.why_not.push_back(row.superseded
                                ? fmt::format("beyond the newest {} (superseded: a restarted run's)", policy.max_to_keep)
                                : fmt::format("beyond the newest {}", policy.max_to_keep));
    }
  }
  for (const auto& rule : policy.rules.top) apply_top(rows, rule, index);
  apply_every(rows, policy.rules);
  if (policy.rules.one_per) {
    IntervalWalk fresh;
    apply_one_per(rows, *policy.rules.one_per, index, walk ? *walk : fresh);
  }

  std::vector<RetentionDecision> plan;
  for (auto& row : rows) {
    if (!row.decision.kept()) row.decision.delete_reason = fmt::format("{}", fmt::join(row.why_not, "; "));
    plan.push_back(std::move(row.decision));
  }
  std::sort(plan.begin(), plan.end(),
            [](const RetentionDecision& a, const RetentionDecision& b) { return a.record.commit_seq > b.record.commit_seq; });
  return plan;
}

std::vector<std::pair<std::int64_t, std::string>> retention_rows(const std::vector<RetentionDecision>& plan) {
  std::vector<std::pair<std::int64_t, std::string>> rows;
  for (const auto& decision : plan) {
    for (const auto& reason : decision.kept_by) rows.emplace_back(decision.record.id, reason);
  }
  return rows;
}

}  // namespace ckpt::store
