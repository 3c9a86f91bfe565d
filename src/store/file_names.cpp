#include "store/file_names.hpp"

#include <charconv>
#include <fmt/format.h>

namespace ckpt::names {

namespace {
bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// N of `<prefix>N.pth`, N canonical decimal (no sign, no leading zeros) within int64.
std::optional<std::int64_t> numbered(std::string_view name, std::string_view prefix) {
  if (!starts_with(name, prefix) || !ends_with(name, kPayloadSuffix)) return std::nullopt;
  std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - kPayloadSuffix.size());
  if (digits.empty() || (digits.size() > 1 && digits[0] == '0')) return std::nullopt;
  std::int64_t number = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  if (error != std::errc() || end != digits.data() + digits.size() || number < 0) return std::nullopt;
  return number;
}
}  // namespace

std::string epoch_file(std::int64_t epoch) { return fmt::format("{}{}{}", kEpochPrefix, epoch, kPayloadSuffix); }

std::string step_file(std::int64_t step) { return fmt::format("{}{}{}", kStepPrefix, step, kPayloadSuffix); }

std::string checkpoint_file(CheckpointKind kind, std::optional<std::int64_t> epoch, std::optional<std::int64_t> step) {
  switch (kind) {
    case CheckpointKind::best: return std::string(kBestModel);
    case CheckpointKind::interrupt: return std::string(kInterrupt);
    case CheckpointKind::epoch: return step ? step_file(*step) : epoch_file(epoch.value());
  }
  return {};
}

std::string temp_file(std::string_view final_name, long pid, std::uint64_t sequence) {
  return fmt::format("{}.{}-{}{}", final_name, pid, sequence, kTempSuffix);
}

std::optional<ParsedCheckpointName> parse_checkpoint_file(std::string_view name) {
  if (name == kBestModel) return ParsedCheckpointName{CheckpointKind::best, std::nullopt, std::nullopt};
  if (name == kInterrupt) return ParsedCheckpointName{CheckpointKind::interrupt, std::nullopt, std::nullopt};
  if (auto epoch = numbered(name, kEpochPrefix)) return ParsedCheckpointName{CheckpointKind::epoch, epoch, std::nullopt};
  if (auto step = numbered(name, kStepPrefix)) return ParsedCheckpointName{CheckpointKind::epoch, std::nullopt, step};
  return std::nullopt;
}

std::string shard_file(std::string_view manifest, int rank, int world_size, std::string_view token) {
  std::string_view stem = manifest.substr(0, manifest.size() - kPayloadSuffix.size());
  return fmt::format("{}{}{}-of-{}.{}{}", stem, kShardInfix, rank, world_size, token, kPayloadSuffix);
}

std::optional<ParsedShardName> parse_shard_file(std::string_view name) {
  if (!ends_with(name, kPayloadSuffix)) return std::nullopt;
  const auto infix = name.find(kShardInfix);
  if (infix == std::string_view::npos) return std::nullopt;
  ParsedShardName parsed;
  parsed.manifest = std::string(name.substr(0, infix)) + std::string(kPayloadSuffix);
  if (!parse_checkpoint_file(parsed.manifest)) return std::nullopt;
  std::string_view rest = name.substr(infix + kShardInfix.size(), name.size() - infix - kShardInfix.size() -
                                                                      kPayloadSuffix.size());
  // <rank>-of-<world>.<token>
  auto number = [](std::string_view digits, int& out) {
    if (digits.empty() || (digits.size() > 1 && digits[0] == '0')) return false;
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
    return error == std::errc() && end == digits.data() + digits.size() && out >= 0;
  };
  const auto of = rest.find("-of-");
  const auto dot = rest.find('.');
  if (of == std::string_view::npos || dot == std::string_view::npos || dot < of) return std::nullopt;
  if (!number(rest.substr(0, of), parsed.rank) || !number(rest.substr(of + 4, dot - of - 4), parsed.world_size) ||
      parsed.rank >= parsed.world_size) {
    return std::nullopt;
  }
  std::string_view token = rest.substr(dot + 1);
  if (token.empty() || token.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz-") != std::string_view::npos) {
    return std::nullopt;
  }
  parsed.token = std::string(token);
  return parsed;
}

bool is_temp_file(std::string_view name) {
  if (!ends_with(name, kTempSuffix)) return false;
  return starts_with(name, kBestModel) || starts_with(name, kInterrupt) || starts_with(name, kEpochPrefix) ||
         starts_with(name, kStepPrefix);
}

bool is_own_temp_file(std::string_view name) {
  if (!is_temp_file(name)) return false;
  // <final>.<pid>-<sequence>.tmp, <final> ending in ".pth"
  std::string_view stem = name.substr(0, name.size() - kTempSuffix.size());
  const auto dot = stem.rfind('.');
  if (dot == std::string_view::npos || !ends_with(stem.substr(0, dot), kPayloadSuffix)) return false;
  std::string_view tag = stem.substr(dot + 1);
  const auto dash = tag.find('-');
  auto all_digits = [](std::string_view digits) {
    return !digits.empty() && digits.find_first_not_of("0123456789") == std::string_view::npos;
  };
  return dash != std::string_view::npos && all_digits(tag.substr(0, dash)) && all_digits(tag.substr(dash + 1));
}

}  // namespace ckpt::names
