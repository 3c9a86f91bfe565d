#include "distributed/commit_round.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <thread>

namespace ckpt::distributed {

namespace {

constexpr const char* kMagic = "ckpt-shard-report 1\n";
// A shard's block hashes are 16 bytes per MiB (1 MiB of them for a 64 GiB shard); a load's
// plan holds every rank's report.
constexpr std::size_t kMaxField = std::size_t{1} << 28;

// Fields as "<length>:<bytes>" so that any byte (a newline in an error, a file name) survives.
void put(std::string& out, const std::string& field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

std::string take(const std::string& in, std::size_t& at) {
  const auto colon = in.find(':', at);
  if (colon == std::string::npos || colon == at || colon - at > 9) {
    throw std::invalid_argument("shard report: a field has no length");
  }
  std::size_t length = 0;
  for (std::size_t i = at; i < colon; ++i) {
    if (in[i] < '0' || in[i] > '9') throw std::invalid_argument("shard report: a field's length is not a number");
    length = length * 10 + static_cast<std::size_t>(in[i] - '0');
  }
  if (length > kMaxField || colon + 1 + length > in.size()) {
    throw std::invalid_argument("shard report: a field runs past the end");
  }
  at = colon + 1 + length;
  return in.substr(colon + 1, length);
}

std::uint64_t number(const std::string& field, const char* what) {
  if (field.empty() || field.size() > 20) throw std::invalid_argument(fmt::format("shard report: bad {}", what));
  std::uint64_t value = 0;
  for (char c : field) {
    if (c < '0' || c > '9') throw std::invalid_argument(fmt::format("shard report: bad {}", what));
    const std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) throw std::invalid_argument(fmt::format("shard report: {} too large", what));
    value = value * 10 + digit;
  }
  return value;
}

}  // namespace

std::string encode_report(const ShardReport& r) {
  std::string out = kMagic;
  put(out, std::to_string(r.rank));
  put(out, r.ok ? "1" : "0");
  put(out, r.error);
  put(out, r.file);
  put(out, std::to_string(r.size));
  put(out, r.hash);
  put(out, r.hash_algo);
  put(out, r.placement);
  put(out, std::to_string(r.block_size));
  put(out, r.block_hashes);
  return out;
}

std::string encode_reports(const std::vector<ShardReport>& reports) {
  std::string out;
  put(out, std::to_string(reports.size()));
  for (const auto& report : reports) put(out, encode_report(report));
  return out;
}

std::vector<ShardReport> decode_reports(const std::string& text) {
  std::size_t at = 0;
  const std::uint64_t count = number(take(text, at), "count");
  if (count > 1'000'000) throw std::invalid_argument("shard reports: count out of range");
  std::vector<ShardReport> reports;
  for (std::uint64_t i = 0; i < count; ++i) reports.push_back(decode_report(take(text, at)));
  if (at != text.size()) throw std::invalid_argument("shard reports: bytes after the last report");
  return reports;
}

ShardReport decode_report(const std::string& text) {
  const std::string magic = kMagic;
  if (text.compare(0, magic.size(), magic) != 0) throw std::invalid_argument("shard report: not one (no header)");
  std::size_t at = magic.size();
  ShardReport r;
  const std::uint64_t rank = number(take(text, at), "rank");
  if (rank > 1'000'000) throw std::invalid_argument("shard report: rank out of range");
  r.rank = static_cast<int>(rank);
  const std::string ok = take(text, at);
  if (ok != "0" && ok != "1") throw std::invalid_argument("shard report: bad ok flag");
  r.ok = ok == "1";
  r.error = take(text, at);
  r.file = take(text, at);
  r.size = number(take(text, at), "size");
  r.hash = take(text, at);
  r.hash_algo = take(text, at);
  r.placement = take(text, at);
  r.block_size = number(take(text, at), "block size");
  r.block_hashes = take(text, at);
  if (at != text.size()) throw std::invalid_argument("shard report: bytes after the last field");
  return r;
}

CommitRound::CommitRound(KeyValueStore& store, std::string prefix, int rank, int world_size,
                         std::chrono::milliseconds poll)
    : store_(store), prefix_(std::move(prefix)), rank_(rank), world_size_(world_size), poll_(poll) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw std::invalid_argument(fmt::format("commit round: rank {} of world size {}", rank, world_size));
  }
}

void CommitRound::report(const ShardReport& report) {
  ShardReport mine = report;
  mine.rank = rank_;
  store_.set(report_key(rank_), encode_report(mine));
}

CommitRound::Collected CommitRound::collect(Clock::time_point deadline) {
  if (rank_ != 0) throw std::logic_error("commit round: only rank 0 collects");
  std::vector<std::optional<ShardReport>> got(static_cast<std::size_t>(world_size_));
  std::vector<std::string> failed;
  int missing = world_size_;
  for (;;) {
    for (int r = 0; r < world_size_; ++r) {
      auto& slot = got[static_cast<std::size_t>(r)];
      if (slot) continue;
      auto value = store_.try_get(report_key(r));
      if (!value) continue;
      ShardReport report;
      try {
        report = decode_report(*value);
      } catch (const std::invalid_argument& e) {
        report.ok = false;
        report.error = fmt::format("its report could not be read: {}", e.what());
      }
      if (report.rank != r && report.ok) {
        report.ok = false;
        report.error = fmt::format("its report names rank {}", report.rank);
      }
      report.rank = r;
      slot = std::move(report);
      --missing;
    }
    if (missing == 0 || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(poll_);
  }
  std::vector<std::string> why;
  std::vector<int> silent;
  Collected out;
  for (int r = 0; r < world_size_; ++r) {
    const auto& slot = got[static_cast<std::size_t>(r)];
    if (!slot) {
      silent.push_back(r);
    } else if (!slot->ok) {
      why.push_back(fmt::format("rank {} failed: {}", r, slot->error));
    } else {
      out.reports.push_back(*slot);
    }
  }
  if (!silent.empty()) {
    std::string ranks;
    for (int r : silent) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    why.push_back(fmt::format("rank{} {} did not report before the deadline", silent.size() == 1 ? "" : "s", ranks));
  }
  if (!why.empty()) {
    Decision abort{false, fmt::format("{}", fmt::join(why, "; "))};
    publish(abort);
    out.reports.clear();
    out.aborted = std::move(abort);
  }
  return out;
}

void CommitRound::publish(const Decision& decision) {
  if (rank_ != 0) throw std::logic_error("commit round: only rank 0 decides");
  store_.set(decision_key(), decision.commit ? std::string("commit") : "abort\n" + decision.reason);
}

std::vector<std::string> CommitRound::keys() const {
  std::vector<std::string> out;
  for (int r = 0; r < world_size_; ++r) out.push_back(report_key(r));
  out.push_back(decision_key());
  return out;
}

std::optional<Decision> CommitRound::await_decision(Clock::time_point deadline) {
  for (;;) {
    if (auto value = store_.try_get(decision_key())) {
      if (*value == "commit") return Decision{true, {}};
      if (value->rfind("abort\n", 0) == 0) return Decision{false, value->substr(6)};
      return Decision{false, "rank 0's decision could not be read"};
    }
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(poll_);
  }
}

}  // namespace ckpt::distributed
