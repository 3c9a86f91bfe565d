// Retention: which periodic checkpoints (epoch and step checkpoints) rotation keeps.
//
// A policy is the newest N (StoreOptions::max_to_keep, the guide's rule) plus rules that
// keep more: the top k by a named metric, every Nth epoch or step, one per time interval.
// Each is a query over the index; a checkpoint is deleted only when no rule keeps it, and
// never while it is the newest, the resume point, or pinned.
// docs/durability.md ("Retention") is the contract: ties, NaN, missing metrics, clocks.
//
// The best model (best_model.pth) and the interrupt checkpoint are not subject to
// retention: each is one name that its next save replaces.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ckpt {

// Which end of a metric is better.
enum class MetricMode { min, max };
std::string_view to_string(MetricMode mode) noexcept;  // "min", "max"
// "min" or "max"; throws InvalidArgument naming the text otherwise.
MetricMode parse_metric_mode(std::string_view text);

// Keep the k checkpoints best by the named metric (the index's `metrics` table). Ranked
// best first; a NaN ranks below every number; among equal values the more recently
// committed ranks higher. A checkpoint without that metric is not judged: the rule keeps
// it (it cannot say it is worse).
struct TopKRule {
  std::string metric;  // non-empty; no ';', no leading or trailing space
  MetricMode mode = MetricMode::min;
  int k = 1;  // >= 1
};

// Rules that keep periodic checkpoints beyond the newest max_to_keep. Empty: none.
struct RetentionRules {
  std::vector<TopKRule> top;
  // Keep every epoch checkpoint (not step checkpoints) whose epoch is a multiple of N
  // (epoch 0 included), for good. >= 1; unset: no such rule.
  std::optional<std::int64_t> every_epochs;
  // Keep every step checkpoint whose step is a multiple of N, for good. >= 1.
  std::optional<std::int64_t> every_steps;
  // Keep one periodic checkpoint per interval of this length (TensorFlow's
  // keep_checkpoint_every_n_hours): walking every checkpoint ever committed in commit
  // order, the first is kept, and then each whose created_at is at least this long after
  // the last one kept. >= 1 s.
  std::optional<std::chrono::seconds> one_per;

  bool empty() const noexcept { return top.empty() && !every_epochs && !every_steps && !one_per; }
  bool operator==(const RetentionRules& other) const;
};

// The canonical text of the rules, as the index's `retention` setting and the reasons of
// the `retention` table spell them: "top 3 by val_loss (min); every 10 epochs;
// every 1000 steps; one per 3600 s" (empty for no rules). parse_retention_rules() reads it
// back (round trip), and throws InvalidArgument naming the part it cannot read.
std::string to_string(const RetentionRules& rules);
RetentionRules parse_retention_rules(std::string_view text);

// A whole policy: the newest max_to_keep (0 keeps every checkpoint) and the rules.
struct RetentionPolicy {
  int max_to_keep = 5;
  RetentionRules rules;
};
// "newest 5; top 3 by val_loss (min)", "all (max_to_keep 0)".
std::string to_string(const RetentionPolicy& policy);
// Throws InvalidArgument naming `where` (a directory) for max_to_keep < 0, a rule's
// number < 1, a bad metric name, the same rule twice, or max_to_keep 0 with rules (0
// keeps everything, so a rule could never delete: set max_to_keep 1 to keep the newest
// only, plus what the rules keep).
void validate(const RetentionPolicy& policy, std::string_view where);

}  // namespace ckpt
