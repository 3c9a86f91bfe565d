// Retention policies as text and as rules checked before use (ckpt/retention.hpp). The
// text is the one home of each rule's spelling: the index's `retention` setting, the
// `retention` table's reasons and `ckpt gc --rules` all read and write it here.
#include "ckpt/retention.hpp"

#include <fmt/format.h>

#include <charconv>
#include <set>

#include "ckpt/errors.hpp"

namespace ckpt {

namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// A whole decimal number of `part`, else InvalidArgument naming the part.
std::int64_t number_in(std::string_view digits, std::string_view part) {
  std::int64_t value = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || error != std::errc() || end != digits.data() + digits.size()) {
    throw InvalidArgument(fmt::format("retention rule '{}': '{}' is not a whole number", part, digits));
  }
  return value;
}

std::string top_text(const TopKRule& rule) {
  return fmt::format("top {} by {} ({})", rule.k, rule.metric, to_string(rule.mode));
}

// A metric name the text can carry: "; " separates rules, " (" the mode.
std::string metric_name_problem(std::string_view name) {
  if (name.empty()) return "an empty metric name";
  if (name != trim(name)) return fmt::format("metric name '{}' has leading or trailing space", name);
  if (name.find(';') != std::string_view::npos) return fmt::format("metric name '{}' contains ';'", name);
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20) return fmt::format("metric name '{}' contains a control character", name);
  }
  return {};
}

}  // namespace

std::string_view to_string(MetricMode mode) noexcept { return mode == MetricMode::min ? "min" : "max"; }

MetricMode parse_metric_mode(std::string_view text) {
  if (text == "min") return MetricMode::min;
  if (text == "max") return MetricMode::max;
  throw InvalidArgument(fmt::format("metric mode '{}': expected min or max", text));
}

bool RetentionRules::operator==(const RetentionRules& other) const { return to_string(*this) == to_string(other); }

std::string to_string(const RetentionRules& rules) {
  std::vector<std::string> parts;
  for (const auto& rule : rules.top) parts.push_back(top_text(rule));
  if (rules.every_epochs) parts.push_back(fmt::format("every {} epochs", *rules.every_epochs));
  if (rules.every_steps) parts.push_back(fmt::format("every {} steps", *rules.every_steps));
  if (rules.one_per) parts.push_back(fmt::format("one per {} s", rules.one_per->count()));
  return fmt::format("{}", fmt::join(parts, "; "));
}

RetentionRules parse_retention_rules(std::string_view text) {
  RetentionRules rules;
  auto once = [](auto& slot, std::int64_t value, std::string_view part) {
    if (slot) throw InvalidArgument(fmt::format("retention rule '{}': that rule is given twice", part));
    slot = value;
  };
  while (!trim(text).empty()) {
    const std::size_t end = text.find(';');
    const std::string_view part = trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (starts_with(part, "top ")) {
      // top K by NAME (MODE): the name is everything between " by " and the last " (".
      const std::size_t by = part.find(" by ");
      const std::size_t open = part.rfind(" (");
      if (by == std::string_view::npos || open == std::string_view::npos || open < by + 4 || !ends_with(part, ")")) {
        throw InvalidArgument(fmt::format("retention rule '{}': expected 'top K by METRIC (min|max)'", part));
      }
      TopKRule rule;
      const std::int64_t k = number_in(part.substr(4, by - 4), part);
      if (k > 1'000'000'000) throw InvalidArgument(fmt::format("retention rule '{}': k is too large", part));
      rule.k = static_cast<int>(k);
      rule.metric = std::string(part.substr(by + 4, open - by - 4));
      rule.mode = parse_metric_mode(part.substr(open + 2, part.size() - open - 3));
      rules.top.push_back(std::move(rule));
    } else if (starts_with(part, "every ") && ends_with(part, " epochs")) {
      once(rules.every_epochs, number_in(part.substr(6, part.size() - 6 - 7), part), part);
    } else if (starts_with(part, "every ") && ends_with(part, " steps")) {
      once(rules.every_steps, number_in(part.substr(6, part.size() - 6 - 6), part), part);
    } else if (starts_with(part, "one per ") && ends_with(part, " s")) {
      std::optional<std::int64_t> seconds;
      if (rules.one_per) seconds = rules.one_per->count();
      once(seconds, number_in(part.substr(8, part.size() - 8 - 2), part), part);
      rules.one_per = std::chrono::seconds(*seconds);
    } else {
      throw InvalidArgument(fmt::format("retention rule '{}': expected 'top K by METRIC (min|max)', "
                                        "'every N epochs', 'every N steps' or 'one per N s'",
                                        part));
    }
  }
  return rules;
}

std::string to_string(const RetentionPolicy& policy) {
  std::string newest = policy.max_to_keep == 0 ? "all (max_to_keep 0)" : fmt::format("newest {}", policy.max_to_keep);
  if (policy.rules.empty()) return newest;
  return fmt::format("{}; {}", newest, to_string(policy.rules));
}

void validate(const RetentionPolicy& policy, std::string_view where) {
  auto refuse = [&](const std::string& why) { throw InvalidArgument(fmt::format("{}: {}", where, why), std::string(where)); };
  if (policy.max_to_keep < 0) refuse(fmt::format("max_to_keep must be >= 0 (0 keeps all), got {}", policy.max_to_keep));
  const RetentionRules& rules = policy.rules;
  std::set<std::string> seen;
  for (const auto& rule : rules.top) {
    if (auto problem = metric_name_problem(rule.metric); !problem.empty()) refuse(fmt::format("top-k rule: {}", problem));
    if (rule.k < 1) refuse(fmt::format("'{}': k must be >= 1", top_text(rule)));
    if (!seen.insert(rule.metric + '\0' + std::string(to_string(rule.mode))).second) {
      refuse(fmt::format("'top ... by {} ({})' is given twice", rule.metric, to_string(rule.mode)));
    }
  }
  if (rules.every_epochs && *rules.every_epochs < 1) refuse(fmt::format("every N epochs: N must be >= 1, got {}", *rules.every_epochs));
  if (rules.every_steps && *rules.every_steps < 1) refuse(fmt::format("every N steps: N must be >= 1, got {}", *rules.every_steps));
  if (rules.one_per && rules.one_per->count() < 1) refuse(fmt::format("one per N s: N must be >= 1, got {}", rules.one_per->count()));
  if (policy.max_to_keep == 0 && !rules.empty()) {
    refuse(fmt::format("max_to_keep 0 keeps every checkpoint, so the rules '{}' could never delete one; set "
                       "max_to_keep to 1 to keep the newest and what the rules keep",
                       to_string(rules)));
  }
}

}  // namespace ckpt
