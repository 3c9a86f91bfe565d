// ckpt: inspect, verify and look after checkpoint directories from the shell.
//
// Each command is a thin layer over the public, torch-free API (CheckpointReader for
// reading, CheckpointStore for changes, inspect_payload / diff_payloads for files).
// Exit codes (docs/cli.md): 0 success; 1 the answer is "no" (no checkpoint, verification
// found problems, files differ, no entry matches --key); 2 usage error; 3 error (I/O,
// damaged index or file, directory locked by a running writer). Errors are one line on
// stderr, or with --json one object on stdout ({"error": {...}}).
//
// Text from a payload or the index (keys, values, file names, event details, error
// messages quoting them) is untrusted: printed text goes through printable(), JSON through
// json_safe() (docs/cli.md, "Untrusted text").
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <spdlog/spdlog.h>

#include "ckpt/errors.hpp"
#include "ckpt/inspect.hpp"
#include "ckpt/layout.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "ckpt/version.hpp"
#include "format/printable.hpp"  // ckpt::core's, torch-free
#include "store/file_names.hpp"   // ckpt::core's: the guide's file names, as the store parses them
#include "history_plot.hpp"
#include "watch.hpp"

namespace {

using nlohmann::json;
using ckpt::CheckpointKind;
using ckpt::CheckpointRecord;

constexpr int kOk = 0, kNo = 1, kUsage = 2, kError = 3;

// ---- untrusted text ----

// For text output: no control character, valid UTF-8 (see format/printable.hpp).
std::string p(std::string_view text) { return ckpt::format::printable(text); }

// Every string and key of `value` through json_safe(), so dump() cannot throw on bytes
// that are not UTF-8.
json json_safe(const json& value) {
  if (value.is_string()) return ckpt::format::json_safe(value.get_ref<const std::string&>());
  if (value.is_array()) {
    json out = json::array();
    for (const auto& item : value) out.push_back(json_safe(item));
    return out;
  }
  if (value.is_object()) {
    json out = json::object();
    for (const auto& [key, item] : value.items()) out[ckpt::format::json_safe(key)] = json_safe(item);
    return out;
  }
  return value;
}

// The one way JSON is printed. nlohmann escapes C0 controls; DEL and the C1 controls
// (U+0080..U+009F: a terminal may take U+009B for CSI) are valid JSON unescaped, so they
// are written as \u escapes here: the parsed text is the same, the output inert.
void print_json(const json& value) {
  const std::string text = json_safe(value).dump(2);
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const auto next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    if (byte == 0x7f) {
      out += "\\u007f";
    } else if (byte == 0xc2 && next >= 0x80 && next <= 0x9f) {  // always a lead byte in valid UTF-8
      out += fmt::format("\\u{:04x}", next);
      ++i;
    } else {
      out += text[i];
    }
  }
  std::cout << out << "\n";
}

// An error the tool raises itself, with details a script may want: under --json they are
// members of the error's object beside "error" (e.g. ckpt import's "would_not_load").
class DetailedError : public ckpt::Error {
 public:
  DetailedError(ckpt::ErrorCode code, const std::string& message, std::filesystem::path path, json details)
      : ckpt::Error(code, message, std::move(path)), details_(std::move(details)) {}
  const json& details() const noexcept { return details_; }

 private:
  json details_;
};

// ---- formatting ----

std::string human_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) value /= 1024, ++unit;
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

std::time_t parse_utc(const std::string& iso) {
  std::tm tm{};
  if (::strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) return 0;
  return ::timegm(&tm);
}

std::string age(const std::string& created_at) {
  std::time_t then = parse_utc(created_at);
  if (then == 0) return "?";
  auto seconds = std::time(nullptr) - then;
  if (seconds < 0) seconds = 0;
  if (seconds < 120) return fmt::format("{}s", seconds);
  if (seconds < 7200) return fmt::format("{}m", seconds / 60);
  if (seconds < 172800) return fmt::format("{}h", seconds / 3600);
  return fmt::format("{}d", seconds / 86400);
}

json record_json(const std::filesystem::path& dir, const CheckpointRecord& r) {
  json j{{"id", r.id},           {"kind", ckpt::to_string(r.kind)}, {"epoch", nullptr},
         {"metric", nullptr},    {"file", r.file},                  {"path", (dir / r.file).string()},
         {"size", r.size},       {"hash", r.hash},                  {"hash_algo", r.hash_algo},
         {"status", r.status},   {"created_at", r.created_at}};
  j["state_epoch"] = r.state_epoch ? json(*r.state_epoch) : json(nullptr);
  j["metric_source"] = r.metric_source;
  j["origin"] = r.origin;
  if (r.epoch) j["epoch"] = *r.epoch;
  j["step"] = r.step ? json(*r.step) : json(nullptr);
  if (r.metric) j["metric"] = *r.metric;
  return j;
}

// The epoch column of a table: an epoch row's epoch; for the best model and an interrupt
// checkpoint the epoch their state is of, when the index knows it.
std::string epoch_text(const CheckpointRecord& r) {
  if (r.epoch) return std::to_string(*r.epoch);
  if (r.state_epoch) return std::to_string(*r.state_epoch);
  return "-";
}

std::string step_text(const CheckpointRecord& r) { return r.step ? std::to_string(*r.step) : "-"; }

std::string metric_text(const std::optional<double>& metric) { return metric ? fmt::format("{:.6g}", *metric) : "-"; }

// A row the store did not write itself deserves a second look before a resume trusts it.
std::string origin_note(const CheckpointRecord& r) {
  if (r.origin == ckpt::origins::kAdopted) return "adopted from a file found without an index row: check it is this run's";
  if (r.origin == ckpt::origins::kExternal) {
    return "external: another program saved this file over a committed checkpoint: check it is this run's";
  }
  return {};
}

// Readers and writers alike: a directory that is not there is reported as such (not as
// "no index.sqlite"), and a writer never creates it.
void require_directory(const std::string& dir) {
  std::error_code error;
  const auto status = std::filesystem::status(dir, error);
  if (status.type() == std::filesystem::file_type::not_found) {
    throw ckpt::IoError(ckpt::ErrorCode::io, fmt::format("{}: no such directory", dir), dir, ENOENT);
  }
  if (error) throw ckpt::IoError(ckpt::ErrorCode::io, fmt::format("{}: {}", dir, error.message()), dir, error.value());
  if (!std::filesystem::is_directory(status)) {
    throw ckpt::IoError(ckpt::ErrorCode::io, fmt::format("{}: not a directory", dir), dir, ENOTDIR);
  }
}

// Code points of valid UTF-8 (what printable() returns): a column's width on a terminal,
// but for wide characters.
std::size_t text_width(const std::string& text) {
  return std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; });
}

// Cells are raw text (from the file or the index); each is escaped here, and the widths
// are those of the escaped text.
void print_table(const std::vector<std::vector<std::string>>& raw_rows) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& raw : raw_rows) {
    rows.emplace_back();
    for (const auto& cell : raw) rows.back().push_back(p(cell));
  }
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], text_width(row[i]));
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - text_width(row[i]) + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

// ---- commands ----

int cmd_ls(const std::string& dir, bool all, bool as_json) {
  require_directory(dir);
  ckpt::CheckpointReader reader(dir);
  auto rows = reader.checkpoints(all);
  // Saves in flight (a trainer's asynchronous save, or any save past its step 3) have a
  // pending row: listed too, marked, so that a save being written is not mistaken for
  // one missing. A pending row a crash left behind looks the same until the next open.
  if (!all) {
    for (auto& r : reader.checkpoints(true)) {
      if (r.status == "pending") rows.push_back(std::move(r));
    }
  }
  if (as_json) {
    json out = json::array();
    for (const auto& r : rows) out.push_back(record_json(dir, r));
    print_json(out);
    return kOk;
  }
  std::vector<std::vector<std::string>> table{{"id", "kind", "epoch", "metric", "size", "age", "hash", "file"}};
  // The step column only for a directory that has step checkpoints (docs/cli.md).
  const bool steps = std::any_of(rows.begin(), rows.end(), [](const CheckpointRecord& r) { return r.step.has_value(); });
  if (steps) table[0].insert(table[0].begin() + 3, "step");
  if (all) table[0].insert(table[0].begin() + 2, "status");
  bool pending = false;
  for (const auto& r : rows) {
    const bool being_written = r.status == "pending";
    pending = pending || being_written;
    std::vector<std::string> line{std::to_string(r.id), std::string(ckpt::to_string(r.kind)), epoch_text(r),
                                  metric_text(r.metric), human_bytes(r.size),
                                  age(r.created_at), r.hash.substr(0, 12), r.file + (being_written ? " *" : "")};
    if (steps) line.insert(line.begin() + 3, step_text(r));
    if (all) line.insert(line.begin() + 2, r.status);
    table.push_back(std::move(line));
  }
  print_table(table);
  if (rows.empty()) std::cout << "(no checkpoints)\n";
  if (pending) {
    std::cout << "* pending: being written now (not yet a checkpoint a resume would load), or cut short by a "
                 "crash (the writer's next open resolves it)\n";
  }
  return kOk;
}

// Resume loads the most recently committed resumable checkpoint (docs/durability.md).
std::string why_latest(const ckpt::CheckpointReader& reader, const CheckpointRecord& latest) {
  std::size_t resumable = 0;
  std::vector<std::string> higher;  // epochs above the chosen one, committed before it
  for (const auto& r : reader.checkpoints()) {
    if (r.kind == CheckpointKind::best) continue;
    ++resumable;
    // Epoch checkpoints only: a step checkpoint's epoch is recorded, not a line of its own.
    if (r.kind == CheckpointKind::epoch && !r.step && r.epoch && !latest.step && latest.epoch && *r.epoch > *latest.epoch) {
      higher.push_back(std::to_string(*r.epoch));
    }
  }
  std::string what = latest.kind == CheckpointKind::interrupt
                         ? fmt::format("interrupt checkpoint ({})", latest.status == "consumed"
                                                                        ? "resumed from, nothing newer saved since"
                                                                        : "not resumed yet")
                         : latest.step ? fmt::format("step {}{}", *latest.step,
                                                     latest.epoch ? fmt::format(" (epoch {})", *latest.epoch) : "")
                                       : fmt::format("epoch {}", *latest.epoch);
  std::string why = fmt::format("{}: the most recently committed of {} resumable checkpoint{} (saved {})", what,
                                resumable, resumable == 1 ? "" : "s", latest.created_at);
  if (!higher.empty()) {
    why += fmt::format("; higher epoch{} {} {} older, from a run this one was restarted over (superseded)",
                       higher.size() == 1 ? "" : "s", fmt::join(higher, ", "), higher.size() == 1 ? "is" : "are");
  }
  if (auto note = origin_note(latest); !note.empty()) why += "; " + note;
  return why;
}

// Which epoch the best model's state is of, and where its metric came from.
std::string why_best(const CheckpointRecord& best) {
  std::string why = fmt::format("best model, {}, metric {}", best.state_epoch ? fmt::format("from epoch {}", *best.state_epoch) : "epoch unknown",
                                best.metric ? fmt::format("{:.6g}", *best.metric) : "unknown");
  if (best.metric && !best.metric_source.empty()) why += fmt::format(" ({})", best.metric_source);
  why += fmt::format(", saved {}", best.created_at);
  if (auto note = origin_note(best); !note.empty()) why += "; " + note;
  return why;
}

// What latest and best print for the row they found: its path (and with -v why), or
// under --json its row with `why` and `extra`'s fields.
int print_found(const std::string& dir, const CheckpointRecord& record, const std::string& why, bool verbose,
                bool as_json, const json& extra = json::object()) {
  if (as_json) {
    json out = record_json(dir, record);
    out["why"] = why;
    out.update(extra);
    print_json(out);
    return kOk;
  }
  std::cout << p((std::filesystem::path(dir) / record.file).string()) << "\n";
  if (verbose) std::cout << p(why) << "\n";
  return kOk;
}

int cmd_latest_or_best(const std::string& dir, bool best, bool verbose, bool as_json) {
  require_directory(dir);
  ckpt::CheckpointReader reader(dir);
  auto record = best ? reader.best() : reader.latest();
  if (!record) {
    if (as_json) std::cout << "null\n";
    std::cerr << fmt::format("ckpt: no {} checkpoint in {}\n", best ? "best" : "resumable", p(dir));
    return kNo;
  }
  return print_found(dir, *record, best ? why_best(*record) : why_latest(reader, *record), verbose, as_json);
}

// ckpt best --metric NAME --mode min|max: CheckpointReader::best_by.
int cmd_best_by(const std::string& dir, const std::optional<std::string>& metric, const std::optional<std::string>& mode,
                bool verbose, bool as_json) {
  if (!metric || !mode) throw ckpt::InvalidArgument("ckpt best: --metric and --mode go together");
  require_directory(dir);
  ckpt::CheckpointReader reader(dir);
  auto record = reader.best_by(*metric, ckpt::parse_metric_mode(*mode));
  if (!record) {
    if (as_json) std::cout << "null\n";
    std::cerr << fmt::format("ckpt: no epoch or step checkpoint in {} has a number for {}\n", p(dir), p(*metric));
    return kNo;
  }
  double value = 0;
  for (const auto& m : reader.metrics(record->id)) {
    if (m.name == *metric) value = m.value;
  }
  const std::string why = fmt::format("{} {}: the {} of the live epoch and step checkpoints (a NaN or a missing "
                                      "value is never best; of equal values, the most recently committed)",
                                      *metric, value, *mode == "min" ? "lowest" : "highest");
  return print_found(dir, *record, why, verbose, as_json, json{{"value", value}});
}

// A payload named on the command line: the file, and its index row when named through
// the directory.
struct ResolvedPayload {
  std::filesystem::path file;
  std::optional<CheckpointRecord> record;
};

ResolvedPayload resolve_payload(const std::vector<std::string>& target) {
  if (target.size() == 1) {
    if (std::filesystem::is_directory(target[0])) {
      throw ckpt::InvalidArgument(
          fmt::format("{}: a directory: name a file, or DIR latest|best|interrupt, or DIR epoch|step N", target[0]),
          target[0]);
    }
    return {target[0], std::nullopt};
  }
  const std::string& dir = target[0];
  const std::string& kind = target[1];
  require_directory(dir);
  ckpt::CheckpointReader reader(dir);
  std::optional<CheckpointRecord> record;
  if (kind == "latest") record = reader.latest();
  if (kind == "best") record = reader.best();
  if (kind == "interrupt" || kind == "epoch" || kind == "step") {
    // "epoch N" is checkpoint_epoch_N.pth; "step N" is checkpoint_step_N.pth.
    for (const auto& r : reader.checkpoints()) {
      const auto& number = kind == "step" ? r.step : r.epoch;
      bool match = kind == "interrupt" ? r.kind == CheckpointKind::interrupt
                                       : r.kind == CheckpointKind::epoch && (kind == "step") == r.step.has_value() &&
                                             number && target.size() > 2 && std::to_string(*number) == target[2];
      if (match) record = r;
    }
  }
  if (!record) {
    throw ckpt::InvalidArgument(fmt::format("{}: no {} checkpoint{}", dir, kind, target.size() > 2 ? " " + target[2] : ""), dir);
  }
  return {std::filesystem::path(dir) / record->file, record};
}

std::string shape_text(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// A scalar entry's value as JSON: int, float and bool as numbers and booleans, None as
// null; a NaN or infinite float as null (JSON has no such number; "value_text" keeps
// Python's repr); every other type (str, bytes, torch.dtype, global, ...) as its text.
void add_scalar_json(json& j, const ckpt::PayloadEntry& e) {
  const std::string& text = e.value;
  if (e.type == "None") {
    j["value"] = nullptr;
  } else if (e.type == "bool") {
    j["value"] = text == "True";
  } else if (e.type == "int") {
    try {
      if (!text.empty() && text[0] == '-') j["value"] = static_cast<std::int64_t>(std::stoll(text));
      else j["value"] = static_cast<std::uint64_t>(std::stoull(text));
    } catch (const std::exception&) {
      j["value"] = text;  // not a 64-bit number: the inspector's text as it is
    }
  } else if (e.type == "float") {
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || *end != '\0') {
      j["value"] = text;
    } else if (std::isfinite(value)) {
      j["value"] = value;
    } else {
      j["value"] = nullptr;
      j["value_text"] = text;  // nan, inf, -inf
    }
  } else {
    j["value"] = text;
  }
}

// --key: shell globs (fnmatch(3), `*` matching dots too) on the dotted paths; an entry
// is shown when any pattern matches.
bool selected(const std::string& path, const std::vector<std::string>& keys) {
  if (keys.empty()) return true;
  return std::any_of(keys.begin(), keys.end(), [&](const std::string& key) { return ::fnmatch(key.c_str(), path.c_str(), 0) == 0; });
}

// min/max/mean cover the finite elements; NaN and Inf are counted, always shown.
std::string stats_text(const ckpt::TensorStats& stats) {
  std::string text = std::isnan(stats.min) && std::isnan(stats.max)
                         ? std::string("min - max - mean - (no finite element)")
                         : fmt::format("min {:.4g} max {:.4g} mean {:.4g}", stats.min, stats.max, stats.mean);
  return text + fmt::format("  NaN {} Inf {}", stats.nan_count, stats.inf_count);
}

int cmd_show(const std::vector<std::string>& target, bool stats, const std::vector<std::string>& keys, bool as_json) {
  const ResolvedPayload resolved = resolve_payload(target);
  const std::filesystem::path& file = resolved.file;
  // The row's step (the index's, when the target was named through the directory).
  const std::optional<std::int64_t> step = resolved.record ? resolved.record->step : std::nullopt;
  ckpt::PayloadInfo info = ckpt::inspect_payload(file, stats);
  if (!keys.empty()) {
    auto& entries = info.entries;
    entries.erase(std::remove_if(entries.begin(), entries.end(), [&](const ckpt::PayloadEntry& e) { return !selected(e.path, keys); }),
                  entries.end());
  }
  const bool none_selected = !keys.empty() && info.entries.empty();
  if (none_selected) {
    std::cerr << fmt::format("ckpt: {}: no entry matches --key {}\n", p(file.string()), p(fmt::format("{}", fmt::join(keys, " --key "))));
  }
  if (as_json) {
    json entries = json::array();
    for (const auto& e : info.entries) {
      json j{{"path", e.path}, {"type", e.type}};
      if (e.type == "Tensor") {
        j.update({{"dtype", e.dtype}, {"layout", e.layout}, {"shape", e.shape}, {"stride", e.stride},
                  {"storage_offset", e.storage_offset}, {"storage", e.storage}, {"bytes", e.bytes},
                  {"requires_grad", e.requires_grad}});
        if (e.layout == "sparse_coo") j["nnz"] = e.nnz;
        if (e.stats) {
          j["stats"] = {{"min", e.stats->min}, {"max", e.stats->max}, {"mean", e.stats->mean},
                        {"nan", e.stats->nan_count}, {"inf", e.stats->inf_count}};
        }
        if (!e.stats_note.empty()) j["stats_note"] = e.stats_note;
      } else {
        add_scalar_json(j, e);
      }
      entries.push_back(j);
    }
    print_json({{"file", file.string()}, {"step", step ? json(*step) : json(nullptr)}, {"container", info.container},
                {"version", info.version}, {"file_size", info.file_size}, {"storage_bytes", info.storage_bytes},
                {"entries", entries}});
    return none_selected ? kNo : kOk;
  }
  std::cout << fmt::format("{}: {} payload, format version {}, {}, tensor storage {}{}\n", p(file.string()),
                           p(info.container), info.version, human_bytes(info.file_size), human_bytes(info.storage_bytes),
                           step ? fmt::format(", step {}", *step) : "");
  std::vector<std::vector<std::string>> table;
  for (const auto& entry : info.entries) {
    ckpt::PayloadEntry e = entry;
    if (e.path.empty()) e.path = "(root)";  // torch.save(tensor): the root is the value itself
    if (e.type != "Tensor") {
      table.push_back({e.path, e.type, e.value});
      continue;
    }
    std::string detail = fmt::format("{} {}  {}", e.dtype, shape_text(e.shape), human_bytes(e.bytes));
    if (e.layout == "meta") detail += "  meta (no data)";
    if (e.layout == "sparse_coo") detail += fmt::format("  sparse COO, {} specified", e.nnz);
    if (!e.stats_note.empty()) detail += "  stats " + e.stats_note;
    if (e.stats) detail += "  " + stats_text(*e.stats);
    table.push_back({e.path, "Tensor", detail});
  }
  print_table(table);
  return none_selected ? kNo : kOk;
}

int cmd_diff(const std::string& a, const std::string& b, bool as_json) {
  auto differences = ckpt::diff_payloads(a, b);
  if (as_json) {
    json out = json::array();
    for (const auto& d : differences) out.push_back({{"path", d.path}, {"kind", d.kind}, {"detail", d.detail}, {"max_abs_diff", d.max_abs_diff}});
    print_json(out);
  } else if (differences.empty()) {
    std::cout << "no differences\n";
  } else {
    std::vector<std::vector<std::string>> table{{"path", "difference", "detail"}};
    for (const auto& d : differences) table.push_back({d.path, d.kind, d.detail});
    print_table(table);
  }
  return differences.empty() ? kOk : kNo;
}

// --last N: the N most recent events, oldest first (the plot draws the whole history).
int cmd_history(const std::string& dir, const std::string& plot, std::optional<std::size_t> last, bool as_json) {
  require_directory(dir);
  ckpt::CheckpointReader reader(dir);
  auto events = reader.events();
  auto rows = reader.checkpoints(true);
  if (!plot.empty()) {
    ckpt::cli::write_history_plot({rows, events, reader.metrics(), fmt::format("ckpt history: {}", dir)}, plot);
    if (!as_json) std::cerr << fmt::format("wrote {}\n", p(plot));
  }
  if (last && events.size() > *last) events.erase(events.begin(), events.end() - static_cast<std::ptrdiff_t>(*last));
  if (as_json) {
    json out = json::array();
    for (const auto& e : events) {
      out.push_back({{"id", e.id}, {"at", e.at}, {"event", e.event},
                     {"checkpoint_id", e.checkpoint_id ? json(*e.checkpoint_id) : json(nullptr)}, {"detail", e.detail}});
    }
    print_json(out);
    return kOk;
  }
  if (plot.empty()) {
    std::vector<std::vector<std::string>> table{{"at", "event", "detail"}};
    for (const auto& e : events) table.push_back({e.at, e.event, e.detail});
    print_table(table);
  }
  return kOk;
}

// For each live checkpoint file, the other live names of the same file (hard links, as a
// save of bytes a checkpoint already held makes them: docs/durability.md, "Shared
// files"): rows recorded with the same size and hash whose files are one inode. Damage
// to one is damage to all of them; deleting one keeps the others.
std::map<std::string, std::vector<std::string>> shared_files(const std::filesystem::path& dir,
                                                             const std::vector<CheckpointRecord>& rows) {
  std::map<std::string, std::vector<std::string>> shared;
  auto identity = [&](const std::string& file) -> std::optional<std::pair<dev_t, ino_t>> {
    struct stat st{};
    if (::stat((dir / file).c_str(), &st) != 0) return std::nullopt;
    return std::make_pair(st.st_dev, st.st_ino);
  };
  for (const auto& a : rows) {
    for (const auto& b : rows) {
      if (a.file == b.file || a.size != b.size || a.hash != b.hash || a.hash_algo != b.hash_algo) continue;
      auto ia = identity(a.file), ib = identity(b.file);
      if (ia && ia == ib) shared[a.file].push_back(b.file);
    }
  }
  return shared;
}

std::string shares_text(const std::string& file, const std::vector<std::string>& others) {
  return fmt::format("{} shares its bytes with {} (one file, hard links)", file, fmt::join(others, ", "));
}

// A file can fail in two ways: its bytes are not what the index committed (missing,
// size, hash: MISMATCH), or they are, but the restricted reader would refuse them
// (the library's problem "would not load: <why>": WOULD NOT LOAD).
int cmd_verify(const std::string& dir, bool as_json) {
  require_directory(dir);
  ckpt::CheckpointReader reader(dir);
  const bool bar = !as_json && ::isatty(STDERR_FILENO);
  auto results = reader.verify([&](std::uint64_t done, std::uint64_t total) {
    if (!bar || total == 0) return;
    int width = 40, filled = static_cast<int>(width * done / total);
    std::cerr << fmt::format("\rverifying [{}{}] {:3}% {}", std::string(filled, '#'), std::string(width - filled, ' '),
                             100 * done / total, human_bytes(done));
  });
  if (bar) std::cerr << "\n";
  constexpr std::string_view kWouldNotLoad = "would not load: ";
  std::size_t mismatched = 0, unloadable = 0;
  json out = json::array();
  std::vector<CheckpointRecord> rows;
  for (const auto& r : results) rows.push_back(r.record);
  const auto shared = shared_files(dir, rows);
  for (const auto& r : results) {
    const bool loads = r.problem.rfind(kWouldNotLoad, 0) != 0;
    if (!r.ok) ++(loads ? mismatched : unloadable);
    const auto sharing = shared.find(r.record.file);
    if (as_json) {
      json j = record_json(dir, r.record);
      j["ok"] = r.ok;
      j["problem"] = r.problem;
      j["shares_file_with"] = sharing == shared.end() ? json::array() : json(sharing->second);
      out.push_back(j);
    } else if (!r.ok) {
      const std::string path = (std::filesystem::path(dir) / r.record.file).string();
      if (loads) std::cout << fmt::format("MISMATCH  {}  {}\n", p(path), p(r.problem));
      else std::cout << fmt::format("WOULD NOT LOAD  {}  {}\n", p(path), p(r.problem.substr(kWouldNotLoad.size())));
    }
  }
  if (!as_json) {
    // Once per group: the first name (in the results' order) speaks for it.
    std::set<std::string> told;
    for (const auto& r : results) {
      const auto sharing = shared.find(r.record.file);
      if (sharing == shared.end() || told.count(r.record.file)) continue;
      told.insert(sharing->second.begin(), sharing->second.end());
      std::cout << fmt::format("SHARED  {}\n", p(shares_text(r.record.file, sharing->second)));
    }
  }
  if (as_json) {
    print_json(out);
  } else {
    std::cout << fmt::format("{} checkpoint{} verified, {} ok, {} mismatched, {} would not load\n", results.size(),
                             results.size() == 1 ? "" : "s", results.size() - mismatched - unloadable, mismatched, unloadable);
  }
  return mismatched + unloadable == 0 ? kOk : kNo;
}

// Writers open the store with the retention the directory already uses, so a tool never
// changes it by accident (the guide's default, 5, for a directory without an index).
// --allow-network-fs: what StoreOptions::allow_network_file_system allows, for every writer.
bool g_allow_network_fs = false;

ckpt::StoreOptions writer_options(const std::string& dir) {
  ckpt::StoreOptions options;
  options.allow_network_file_system = g_allow_network_fs;
  if (std::filesystem::exists(std::filesystem::path(dir) / ckpt::layout::kIndex)) {
    const ckpt::CheckpointReader reader(dir);
    if (auto keep = reader.max_to_keep()) options.max_to_keep = *keep;
    options.retention = reader.retention().rules;
  }
  return options;
}

// The policy a gc applies: the stored one, with --keep for its newest N and --rules for
// its rules (this run only).
ckpt::RetentionPolicy gc_policy(const ckpt::CheckpointReader& reader, std::optional<int> keep,
                                const std::optional<std::string>& rules) {
  ckpt::RetentionPolicy policy = reader.retention();
  if (keep) policy.max_to_keep = *keep;
  if (rules) policy.rules = ckpt::parse_retention_rules(*rules);
  return policy;
}

json decision_json(const std::string& dir, const ckpt::RetentionDecision& decision) {
  json out = record_json(dir, decision.record);
  out["action"] = decision.kept() ? "keep" : "remove";
  out["kept_by"] = decision.kept_by;
  out["reason"] = decision.kept() ? fmt::format("{}", fmt::join(decision.kept_by, "; ")) : decision.delete_reason;
  return out;
}

// --dry-run: a reader's plan (no lock, nothing written): every periodic checkpoint with
// what keeps it or why it goes. A real run prints what it removed, and why.
int cmd_gc(const std::string& dir, std::optional<int> keep, const std::optional<std::string>& rules, bool dry_run,
           bool as_json) {
  require_directory(dir);
  std::vector<ckpt::RetentionDecision> plan;
  ckpt::RetentionPolicy policy;
  std::vector<ckpt::RetentionDecision> removed;
  if (dry_run) {
    ckpt::CheckpointReader reader(dir);
    policy = gc_policy(reader, keep, rules);
    plan = reader.retention_plan(policy);
    for (const auto& decision : plan) {
      if (!decision.kept()) removed.push_back(decision);
    }
  } else {
    policy = gc_policy(ckpt::CheckpointReader(dir), keep, rules);
    ckpt::CheckpointStore store(dir, writer_options(dir));
    removed = store.gc(policy);
  }
  if (as_json) {
    json out = json::array();
    for (const auto& decision : dry_run ? plan : removed) out.push_back(decision_json(dir, decision));
    print_json(out);
    return kOk;
  }
  auto path_of = [&](const CheckpointRecord& r) { return p((std::filesystem::path(dir) / r.file).string()); };
  if (dry_run) {
    for (const auto& d : plan) {
      std::cout << fmt::format("{} {}: {}\n", d.kept() ? "keep  " : "remove", path_of(d.record),
                               d.kept() ? p(fmt::format("{}", fmt::join(d.kept_by, "; "))) : p(d.delete_reason));
    }
  } else {
    for (const auto& d : removed) std::cout << fmt::format("removed {}: {}\n", path_of(d.record), p(d.delete_reason));
  }
  std::cout << fmt::format("{} checkpoint{} {} (retention: {}){}\n", removed.size(), removed.size() == 1 ? "" : "s",
                           dry_run ? "would be removed" : "removed", p(to_string(policy)),
                           dry_run ? "; nothing changed (--dry-run)" : "");
  return kOk;
}

int cmd_rm(const std::string& dir, std::int64_t id, bool as_json) {
  require_directory(dir);
  ckpt::CheckpointStore store(dir, writer_options(dir));
  auto removed = store.remove(id);
  if (as_json) {
    print_json(record_json(dir, removed));
  } else {
    std::cout << "removed " << p((std::filesystem::path(dir) / removed.file).string()) << "\n";
  }
  return kOk;
}

// ---- import ----

// One checkpoint-named file of a directory to import, and whether the restricted reader
// (the one load_file uses, through inspect_payload) reads it.
struct ImportFile {
  std::string file;
  ckpt::names::ParsedCheckpointName name;
  std::string problem;  // empty when it would load
};

// The guide's three names (best_model.pth, checkpoint_epoch_N.pth,
// interrupt_checkpoint.pth), best first, then epochs in order, then the interrupt.
std::vector<ImportFile> read_checkpoint_files(const std::filesystem::path& dir) {
  std::vector<ImportFile> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    auto parsed = ckpt::names::parse_checkpoint_file(name);
    if (!parsed) continue;
    ImportFile file{name, *parsed, {}};
    try {
      ckpt::inspect_payload(entry.path());
    } catch (const ckpt::Error& error) {
      std::string_view why = error.what();
      const std::string prefix = entry.path().string() + ": ";
      if (why.substr(0, prefix.size()) == prefix) why.remove_prefix(prefix.size());  // the file is named beside it
      file.problem = std::string(why);
    }
    files.push_back(std::move(file));
  }
  auto order = [](const ImportFile& f) {
    return std::make_pair(f.name.kind == CheckpointKind::best ? 0 : f.name.kind == CheckpointKind::epoch ? 1 : 2, f.name.epoch.value_or(0));
  };
  std::sort(files.begin(), files.end(), [&](const ImportFile& a, const ImportFile& b) { return order(a) < order(b); });
  return files;
}

struct Retention {
  int keep = 5;
  std::string why;
};

// --keep wins; then the retention an existing index records (unless !ask_index: a rebuild,
// whose old index is unusable); else it is inferred from the
// epoch files, as the guide's rotation leaves them (the newest max_to_keep epochs):
// when the lowest epoch is above 1 (a run starts at epoch 0 or 1), earlier ones were
// rotated out, so the run kept as many as there are; otherwise nothing shows a limit
// and the guide's default applies, or more when there are more files (nothing is lost).
Retention import_retention(const std::string& dir, std::optional<int> keep, const std::vector<ImportFile>& files,
                           bool ask_index = true) {
  if (keep) return {*keep, "--keep"};
  if (ask_index && std::filesystem::exists(std::filesystem::path(dir) / ckpt::layout::kIndex)) {
    if (auto stored = ckpt::CheckpointReader(dir).max_to_keep()) return {*stored, "the retention the index records"};
  }
  const int guide_default = ckpt::StoreOptions{}.max_to_keep;
  std::vector<std::int64_t> epochs;
  for (const auto& f : files) {
    if (f.name.kind == CheckpointKind::epoch) epochs.push_back(*f.name.epoch);
  }
  if (epochs.empty()) return {guide_default, fmt::format("no epoch files: the guide's default, {}", guide_default)};
  const int count = static_cast<int>(epochs.size());
  const std::string files_text = fmt::format("{} epoch file{} ({}..{})", count, count == 1 ? "" : "s", epochs.front(), epochs.back());
  if (epochs.front() > 1) return {count, files_text + ": the epochs before them were rotated out, so the run kept " + std::to_string(count)};
  if (count > guide_default) return {count, files_text + ": no sign of rotation, and more than the guide's default"};
  return {guide_default, files_text + fmt::format(": no sign of rotation: the guide's default, {}", guide_default)};
}

int cmd_import(const std::string& dir, std::optional<int> keep, bool allow_unloadable, bool as_json) {
  require_directory(dir);
  // Everything is read before anything is changed: a refusal leaves no index, no file touched.
  const std::vector<ImportFile> files = read_checkpoint_files(dir);
  json unloadable = json::array();
  for (const auto& f : files) {
    if (f.problem.empty()) continue;
    unloadable.push_back({{"file", f.file}, {"reason", f.problem}});
    if (!as_json) std::cout << fmt::format("would not load  {}  {}\n", p(f.file), p(f.problem));
  }
  if (!unloadable.empty() && !allow_unloadable) {
    throw DetailedError(ckpt::ErrorCode::format,
                        fmt::format("{}: {} of {} checkpoint files would not load (the restricted reader refuses them); "
                                    "nothing imported (--allow-unloadable imports the others and leaves these as they are)",
                                    dir, unloadable.size(), files.size()),
                        dir, {{"would_not_load", unloadable}});
  }
  const Retention retention = import_retention(dir, keep, files);
  if (!as_json) std::cout << fmt::format("retention: keep {} ({})\n", retention.keep == 0 ? "all" : std::to_string(retention.keep), p(retention.why));

  std::set<std::int64_t> known;  // rows from before this run
  if (std::filesystem::exists(std::filesystem::path(dir) / ckpt::layout::kIndex)) {
    for (const auto& r : ckpt::CheckpointReader(dir).checkpoints(true)) known.insert(r.id);
  }
  ckpt::StoreOptions options = writer_options(dir);
  options.max_to_keep = retention.keep;
  ckpt::CheckpointStore store(dir, options);
  const auto& report = store.last_recovery();
  std::vector<CheckpointRecord> adopted;
  for (const auto& r : store.live_checkpoints()) {
    if (!known.count(r.id)) adopted.push_back(r);
  }
  const std::size_t indexed = store.live_checkpoints().size();
  // Recovery leaves another writer's temp file younger than 10 s alone: a save in progress?
  json young_temp_files = json::array();
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && ckpt::names::is_temp_file(name)) young_temp_files.push_back(name);
  }
  if (as_json) {
    json rows = json::array();
    for (const auto& r : adopted) rows.push_back(record_json(dir, r));
    print_json({{"adopted", report.adopted}, {"external_saves", report.external_saves}, {"quarantined", report.quarantined},
                {"left_unloadable", report.left_unloadable}, {"temp_files_removed", report.temp_files_removed},
                {"temp_files_left", young_temp_files}, {"checkpoints", indexed}, {"keep", retention.keep},
                {"keep_reason", retention.why}, {"adopted_files", rows}, {"would_not_load", unloadable}});
    return kOk;
  }
  if (!adopted.empty()) {
    std::vector<std::vector<std::string>> table{{"adopted", "kind", "epoch", "metric", "metric source"}};
    for (const auto& r : adopted) {
      table.push_back({r.file, std::string(ckpt::to_string(r.kind)), epoch_text(r), metric_text(r.metric),
                       r.metric ? r.metric_source : "-"});
    }
    print_table(table);
  }
  for (const auto& name : young_temp_files) {
    std::cout << fmt::format("left {}: another program's temp file, written less than 10 s ago (a save in progress?)\n",
                             p(name.get<std::string>()));
  }
  std::string also;
  if (report.external_saves) also += fmt::format(", {} external save{}", report.external_saves, report.external_saves == 1 ? "" : "s");
  if (report.left_unloadable) also += fmt::format(", left {} that would not load", report.left_unloadable);
  std::cout << fmt::format("{}: adopted {}{}, quarantined {}, removed {} temp file{}; {} checkpoints indexed\n", p(dir),
                           report.adopted, also, report.quarantined, report.temp_files_removed,
                           report.temp_files_removed == 1 ? "" : "s", indexed);
  return kOk;
}

int cmd_repair(const std::string& dir, bool apply, bool force, bool as_json) {
  require_directory(dir);  // a rebuild would create it
  using State = ckpt::IndexHealth::State;
  const ckpt::IndexHealth health = ckpt::CheckpointStore::check_index(dir);
  const std::string& detail = health.detail;
  if (health.state == State::too_new && !force) {
    throw ckpt::IndexError(ckpt::ErrorCode::schema_too_new, detail + " (ckpt repair --force rebuilds it from the files, keeping the old index aside)");
  }
  json out{{"dir", dir}, {"applied", apply}};
  if (health.state != State::ok) {
    // Rebuild: the files are the truth; every complete checkpoint file is adopted.
    std::string why = health.state == State::missing ? "no index" : "index unusable: " + detail.substr(0, detail.find('\n'));
    out["index"] = why;
    out["plan"] = {{{"action", "rebuild index"}, {"reason", why}}};
    if (!apply) {
      if (as_json) print_json(out);
      else std::cout << fmt::format("plan for {}:\n  rebuild the index from the checkpoint files ({}){}\nrun with --apply to carry it out\n",
                                    p(dir), p(why), health.state == State::missing ? "" : "; the old index is kept aside");
      return kNo;
    }
    ckpt::StoreOptions options;
    options.allow_network_file_system = g_allow_network_fs;
    // The retention the old index recorded is gone with it: inferred as import infers it.
    const Retention retention = import_retention(dir, std::nullopt, read_checkpoint_files(dir), /*ask_index=*/false);
    options.max_to_keep = retention.keep;
    out["max_to_keep"] = retention.keep;
    const ckpt::IndexRebuild rebuilt = ckpt::CheckpointStore::rebuild_index(dir, options, /*replace_newer=*/force);
    if (!rebuilt.old_index.empty()) out["old_index"] = rebuilt.old_index.string();
    out["adopted"] = rebuilt.recovery.adopted;
    out["quarantined"] = rebuilt.recovery.quarantined;
    if (as_json) print_json(out);
    else std::cout << fmt::format("rebuilt the index of {}: adopted {}, quarantined {}{}; retention: keep {} ({})\n", p(dir),
                                  rebuilt.recovery.adopted, rebuilt.recovery.quarantined,
                                  out.contains("old_index") ? fmt::format("; old index kept as {}", p(out["old_index"].get<std::string>())) : "",
                                  retention.keep == 0 ? "all" : std::to_string(retention.keep), p(retention.why));
    return kOk;
  }

  ckpt::StoreOptions options = writer_options(dir);
  auto plan = ckpt::CheckpointStore::plan_repair(dir, /*verify_hashes=*/true, options);
  const auto shared = shared_files(dir, ckpt::CheckpointReader(dir).checkpoints());
  json actions = json::array();
  for (auto& action : plan) {
    // What is done to one name of a shared file concerns the others: say so.
    if (auto sharing = shared.find(action.file); sharing != shared.end()) {
      action.reason += "; " + shares_text(action.file, sharing->second);
    }
    actions.push_back({{"action", std::string(ckpt::to_string(action.type))}, {"file", action.file},
                       {"checkpoint_id", action.checkpoint_id ? json(*action.checkpoint_id) : json(nullptr)},
                       {"reason", action.reason}});
  }
  out["plan"] = actions;
  if (!apply) {
    if (as_json) {
      print_json(out);
    } else if (plan.empty()) {
      std::cout << fmt::format("{}: nothing to repair\n", p(dir));
    } else {
      std::cout << fmt::format("plan for {}:\n", p(dir));
      for (const auto& action : plan) {
        std::cout << fmt::format("  {:<17} {:<28} {}\n", ckpt::to_string(action.type), p(action.file), p(action.reason));
      }
      std::cout << "run with --apply to carry it out\n";
    }
    return plan.empty() ? kOk : kNo;
  }
  ckpt::CheckpointStore store(dir, options);  // opening performs the recovery part
  store.repair();                             // and this the rehash of every file
  if (as_json) {
    print_json(out);
  } else {
    std::cout << fmt::format("repaired {}: {} action{} carried out\n", p(dir), plan.size(), plan.size() == 1 ? "" : "s");
  }
  return kOk;
}

// The one place errors are printed: messages quote names from files and the index, so
// they are escaped (printable_message: a name the library already escaped is not escaped
// twice); one line (the first: a multi-line detail, such as SQLite's integrity report, is
// cut there).
//
// With --json the error is instead one object on stdout, so a script that parses stdout
// always gets one JSON document: {"error": {"message", "file", "code", "exit"[, "os_error"]}}
// (the whole message; "file" null when no file is involved; "code" the ErrorCode's name,
// or "usage" for a command line CLI11 refused), plus a DetailedError's members.
void print_error(const std::exception& error, int exit_code, bool as_json, std::string_view code = {}) {
  std::string_view message = error.what();
  if (!as_json) {
    std::cerr << "ckpt: " << ckpt::format::printable_message(message.substr(0, message.find('\n')))
              << (code == "usage" ? " (see ckpt --help)" : "") << "\n";
    return;
  }
  json out = json::object();
  json object{{"message", std::string(message)}, {"file", nullptr}, {"code", code.empty() ? "error" : std::string(code)}, {"exit", exit_code}};
  if (const auto* e = dynamic_cast<const ckpt::Error*>(&error)) {
    object["code"] = ckpt::to_string(e->code());
    if (!e->path().empty()) object["file"] = e->path().string();
    if (e->os_error() != 0) object["os_error"] = e->os_error();
    if (const auto* detailed = dynamic_cast<const DetailedError*>(e)) out = detailed->details();
  } else if (const auto* e = dynamic_cast<const std::filesystem::filesystem_error*>(&error)) {
    object["code"] = "io";
    if (!e->path1().empty()) object["file"] = e->path1().string();
    if (e->code().value() != 0) object["os_error"] = e->code().value();
  }
  out["error"] = object;
  print_json(out);
}

// Whether --json was given, for errors found while parsing (CLI11 may stop before it has
// seen the flag). Arguments after "--" are operands.
bool json_requested(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") return false;
    if (arg == "--json") return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  // The library logs through spdlog; the tool reports in its own words, and shows only
  // the library's errors unless SPDLOG_LEVEL asks for more (SPDLOG_LEVEL=debug ckpt repair ...).
  if (std::getenv("SPDLOG_LEVEL") == nullptr) spdlog::set_level(spdlog::level::err);
  CLI::App app{"ckpt: inspect, verify and look after ckpt checkpoint directories"};
  app.set_version_flag("--version", std::string(ckpt::version()));
  app.require_subcommand(1);
  app.footer("Exit codes: 0 success; 1 the answer is no (no checkpoint, verification or repair found problems,\n"
             "payloads differ, no entry matches --key); 2 usage error; 3 error (I/O, damaged index or file, directory locked by a writer).\n"
             "Reference: docs/cli.md");
  bool as_json = false;
  app.add_flag("--json", as_json, "machine-readable output (JSON on stdout, errors too)");
  app.add_flag("--allow-network-fs", g_allow_network_fs,
               "let gc, rm, repair and import write on a network file system (one host at a time; no reader "
               "beside them: docs/durability.md)");

  std::string dir, file_a, file_b, plot;
  std::vector<std::string> target, keys;
  bool all = false, verbose = false, stats = false, dry_run = false, allow_unloadable = false;
  std::optional<int> keep;
  std::optional<std::string> rules, metric, mode;
  std::optional<std::size_t> last;
  std::int64_t id = 0;

  auto* ls = app.add_subcommand("ls", "list the committed checkpoints (kind, epoch, metric, size, age, hash, file)");
  ls->add_option("DIR", dir, "checkpoint directory")->required();
  ls->add_flag("--all", all, "include history: replaced, deleted, consumed, quarantined rows");
  auto* latest = app.add_subcommand("latest", "print the file a resume would load; exit 1 if there is none");
  latest->add_option("DIR", dir, "checkpoint directory")->required();
  latest->add_flag("-v,--verbose", verbose, "say why this one");
  auto* best = app.add_subcommand("best", "print the best model's file; exit 1 if there is none");
  best->add_option("DIR", dir, "checkpoint directory")->required();
  best->add_flag("-v,--verbose", verbose, "say which epoch it is of and where its metric came from");
  best->add_option("--metric", metric, "instead: the epoch or step checkpoint best by this named metric (with --mode)");
  best->add_option("--mode", mode, "min or max: which end of --metric is best")->check(CLI::IsMember({"min", "max"}));
  auto* show = app.add_subcommand("show", "show a payload's structure: keys, tensor dtypes, shapes and sizes (no tensor data read)");
  show->add_option("TARGET", target, "FILE, or DIR latest|best|interrupt, or DIR epoch|step N")->required()->expected(1, 3);
  show->add_flag("--stats", stats, "add NaN and Inf counts, and min, max, mean of the finite elements (reads tensor data)");
  show->add_option("--key", keys, "only the entries whose dotted path matches this glob (* matches dots too); repeatable")
      ->allow_extra_args(false);
  auto* diff = app.add_subcommand("diff", "which keys and tensors differ between two payloads, and by how much; exit 1 if any");
  diff->add_option("A", file_a, "first payload")->required();
  diff->add_option("B", file_b, "second payload")->required();
  auto* history = app.add_subcommand("history", "the directory's event log");
  history->add_option("DIR", dir, "checkpoint directory")->required();
  history->add_option("--last", last, "only the N most recent events")->check(CLI::PositiveNumber);
  history->add_option("--plot", plot, "draw the metrics over epochs with bests, interrupts and resumes marked, as SVG or PNG (by the extension: .svg, .png)");
  auto* verify = app.add_subcommand("verify", "rehash every committed file against the index and check it would load; exit 1 if any does not");
  verify->add_option("DIR", dir, "checkpoint directory")->required();
  auto* gc = app.add_subcommand("gc", "apply the retention stored in the index now (delete epochs beyond it)");
  gc->add_option("DIR", dir, "checkpoint directory")->required();
  gc->add_option("--keep", keep, "keep this many newest instead (0 keeps all)");
  gc->add_option("--rules", rules, "these retention rules instead, e.g. 'top 3 by val_loss (min); every 10 epochs' "
                                   "(docs/cli.md; '' for none)");
  gc->add_flag("--dry-run", dry_run, "list each checkpoint with what keeps it or why it goes; change nothing (no lock taken)");
  auto* rm = app.add_subcommand("rm", "remove one checkpoint (by the id `ckpt ls` shows) with its row");
  rm->add_option("DIR", dir, "checkpoint directory")->required();
  rm->add_option("ID", id, "checkpoint id")->required();
  bool apply = false, force = false;
  auto* repair = app.add_subcommand("repair", "reconcile index and directory; shows the plan unless --apply (exit 1 if there is one)");
  repair->add_option("DIR", dir, "checkpoint directory")->required();
  repair->add_flag("--apply", apply, "carry the plan out (and record it in the history)");
  repair->add_flag("--force", force, "rebuild even an index written by a newer ckpt (kept aside)");
  auto* import = app.add_subcommand("import", "adopt in place a directory written by the Python CheckpointManager");
  import->add_option("DIR", dir, "directory with best_model.pth, checkpoint_epoch_N.pth, ...")->required();
  import->add_option("--keep", keep, "the retention to record (0 keeps all); default: inferred from the epoch files")
      ->check(CLI::NonNegativeNumber);
  import->add_flag("--allow-unloadable", allow_unloadable, "import the files that load even if others would not (those are reported and left as they are, without a row)");
  ckpt::cli::WatchOptions watch_options;
  std::string watch_kind;
  double pin_ttl_s = 60, idle_exit_s = -1;
  int poll_ms = 1000;
  std::int64_t watch_max = 0;
  auto* watch = app.add_subcommand("watch", "run a command once for each newly committed checkpoint, resumable (docs/cli.md, watch)");
  watch->add_option("DIR", watch_options.dir, "checkpoint directory")->required();
  watch->add_option("--exec", watch_options.command, "the command, run by /bin/sh -c with CKPT_* in its environment")->required();
  watch->add_option("--name", watch_options.name, "the cursor's name (default: default)");
  watch->add_option("--kind", watch_kind, "only this kind: epoch, best or interrupt")->check(CLI::IsMember({"epoch", "best", "interrupt"}));
  // Bounded, so that no conversion to a clock's nanoseconds can overflow (1e9 s: 31 years).
  watch->add_option("--pin-ttl", pin_ttl_s, "seconds the running checkpoint's pin lasts, renewed at half (default 60)")->check(CLI::Range(0.001, 1e9));
  watch->add_option("--poll-ms", poll_ms, "how long one wait for a commit lasts (default 1000)")->check(CLI::Range(1, 3600000));
  watch->add_option("--idle-exit", idle_exit_s, "exit 0 after this many seconds with no new checkpoint")->check(CLI::Range(0.0, 1e9));
  watch->add_option("--max", watch_max, "exit 0 after running the command this many times")->check(CLI::PositiveNumber);
  watch->add_flag("--from-now", watch_options.from_now, "a new NAME starts after the newest commit instead of the first");
  for (auto* command : {ls, latest, best, show, diff, history, verify, gc, rm, repair, import}) {
    command->add_flag("--json", as_json, "machine-readable output (JSON on stdout, errors too)");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    print_error(e, kUsage, json_requested(argc, argv), "usage");
    return kUsage;
  }

  try {
    if (*ls) return cmd_ls(dir, all, as_json);
    if (*latest) return cmd_latest_or_best(dir, false, verbose, as_json);
    if (*best && (metric || mode)) return cmd_best_by(dir, metric, mode, verbose, as_json);
    if (*best) return cmd_latest_or_best(dir, true, verbose, as_json);
    if (*show) return cmd_show(target, stats, keys, as_json);
    if (*diff) return cmd_diff(file_a, file_b, as_json);
    if (*history) return cmd_history(dir, plot, last, as_json);
    if (*verify) return cmd_verify(dir, as_json);
    if (*gc) return cmd_gc(dir, keep, rules, dry_run, as_json);
    if (*rm) return cmd_rm(dir, id, as_json);
    if (*repair) return cmd_repair(dir, apply, force, as_json);
    if (*watch) {
      for (auto kind : {CheckpointKind::epoch, CheckpointKind::best, CheckpointKind::interrupt}) {
        if (watch_kind == to_string(kind)) watch_options.kind = kind;
      }
      // CLI::Range lets NaN through (every comparison with it is false).
      if (!std::isfinite(pin_ttl_s)) throw ckpt::InvalidArgument(fmt::format("--pin-ttl {}: not a number of seconds", pin_ttl_s));
      if (!std::isfinite(idle_exit_s)) throw ckpt::InvalidArgument(fmt::format("--idle-exit {}: not a number of seconds", idle_exit_s));
      watch_options.pin_ttl = std::chrono::milliseconds(std::max<std::int64_t>(1, std::llround(pin_ttl_s * 1000)));
      if (watch_options.name.empty()) throw ckpt::InvalidArgument("--name: must not be empty");
      watch_options.poll = std::chrono::milliseconds(poll_ms);
      if (idle_exit_s >= 0) watch_options.idle_exit = std::chrono::milliseconds(std::llround(idle_exit_s * 1000));
      if (watch_max > 0) watch_options.max = watch_max;
      require_directory(watch_options.dir);
      return ckpt::cli::run_watch(watch_options);
    }
    if (*import) return cmd_import(dir, keep, allow_unloadable, as_json);
  } catch (const ckpt::InvalidArgument& e) {
    print_error(e, kUsage, as_json);
    return kUsage;
  } catch (const std::exception& e) {
    print_error(e, kError, as_json);
    return kError;
  }
  return kUsage;
}
