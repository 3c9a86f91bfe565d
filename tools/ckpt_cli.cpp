// ckpt: inspect, verify and look after checkpoint directories from the shell.
//
// Each command is a thin layer over the public, torch-free API (CheckpointReader for
// reading, CheckpointStore for changes, inspect_payload / diff_payloads for files).
// Exit codes (docs/cli.md): 0 success; 1 the answer is "no" (no checkpoint, verification
// found problems, files differ); 2 usage error; 3 error (I/O, damaged index or file,
// directory locked by a running writer). Errors are one line on stderr.
//
// Text from a payload or the index (keys, values, file names, event details, error
// messages quoting them) is untrusted: printed text goes through printable(), JSON through
// json_safe() (docs/cli.md, "Untrusted text").
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "ckpt/errors.hpp"
#include "ckpt/inspect.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "ckpt/version.hpp"
#include "format/printable.hpp"  // ckpt::core's, torch-free
#include "history_plot.hpp"

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
  if (r.epoch) j["epoch"] = *r.epoch;
  if (r.metric) j["metric"] = *r.metric;
  return j;
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
  ckpt::CheckpointReader reader(dir);
  auto rows = reader.checkpoints(all);
  if (as_json) {
    json out = json::array();
    for (const auto& r : rows) out.push_back(record_json(dir, r));
    print_json(out);
    return kOk;
  }
  std::vector<std::vector<std::string>> table{{"id", "kind", "epoch", "metric", "size", "age", "hash", "file"}};
  if (all) table[0].insert(table[0].begin() + 2, "status");
  for (const auto& r : rows) {
    std::vector<std::string> line{std::to_string(r.id), std::string(ckpt::to_string(r.kind)),
                                  r.epoch ? std::to_string(*r.epoch) : "-",
                                  r.metric ? fmt::format("{:.6g}", *r.metric) : "-", human_bytes(r.size),
                                  age(r.created_at), r.hash.substr(0, 12), r.file};
    if (all) line.insert(line.begin() + 2, r.status);
    table.push_back(std::move(line));
  }
  print_table(table);
  if (rows.empty()) std::cout << "(no checkpoints)\n";
  return kOk;
}

// Resume loads the most recently committed resumable checkpoint (docs/durability.md).
std::string why_latest(const ckpt::CheckpointReader& reader, const CheckpointRecord& latest) {
  std::size_t resumable = 0;
  std::vector<std::string> higher;  // epochs above the chosen one, committed before it
  for (const auto& r : reader.checkpoints()) {
    if (r.kind == CheckpointKind::best) continue;
    ++resumable;
    if (r.kind == CheckpointKind::epoch && latest.epoch && *r.epoch > *latest.epoch) higher.push_back(std::to_string(*r.epoch));
  }
  std::string what = latest.kind == CheckpointKind::interrupt
                         ? fmt::format("interrupt checkpoint ({})", latest.status == "consumed"
                                                                        ? "resumed from, nothing newer saved since"
                                                                        : "not resumed yet")
                         : fmt::format("epoch {}", *latest.epoch);
  std::string why = fmt::format("{}: the most recently committed of {} resumable checkpoint{} (saved {})", what,
                                resumable, resumable == 1 ? "" : "s", latest.created_at);
  if (!higher.empty()) {
    why += fmt::format("; higher epoch{} {} {} older, from a run this one was restarted over (superseded)",
                       higher.size() == 1 ? "" : "s", fmt::join(higher, ", "), higher.size() == 1 ? "is" : "are");
  }
  return why;
}

int cmd_latest_or_best(const std::string& dir, bool best, bool verbose, bool as_json) {
  ckpt::CheckpointReader reader(dir);
  auto record = best ? reader.best() : reader.latest();
  if (!record) {
    if (as_json) std::cout << "null\n";
    std::cerr << fmt::format("ckpt: no {} checkpoint in {}\n", best ? "best" : "resumable", p(dir));
    return kNo;
  }
  std::string why = best ? fmt::format("best model, metric {}, saved {}", record->metric ? fmt::format("{:.6g}", *record->metric) : "unknown",
                                       record->created_at)
                         : why_latest(reader, *record);
  if (as_json) {
    json out = record_json(dir, *record);
    out["why"] = why;
    print_json(out);
    return kOk;
  }
  std::cout << p((std::filesystem::path(dir) / record->file).string()) << "\n";
  if (verbose) std::cout << p(why) << "\n";
  return kOk;
}

std::filesystem::path resolve_payload(const std::vector<std::string>& target) {
  if (target.size() == 1) return target[0];
  const std::string& dir = target[0];
  const std::string& kind = target[1];
  ckpt::CheckpointReader reader(dir);
  std::optional<CheckpointRecord> record;
  if (kind == "latest") record = reader.latest();
  if (kind == "best") record = reader.best();
  if (kind == "interrupt" || kind == "epoch") {
    for (const auto& r : reader.checkpoints()) {
      bool match = kind == "interrupt" ? r.kind == CheckpointKind::interrupt
                                       : r.kind == CheckpointKind::epoch && target.size() > 2 && std::to_string(*r.epoch) == target[2];
      if (match) record = r;
    }
  }
  if (!record) throw ckpt::InvalidArgument(fmt::format("{}: no {} checkpoint{}", dir, kind, target.size() > 2 ? " " + target[2] : ""));
  return std::filesystem::path(dir) / record->file;
}

std::string shape_text(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

int cmd_show(const std::vector<std::string>& target, bool stats, bool as_json) {
  std::filesystem::path file = resolve_payload(target);
  ckpt::PayloadInfo info = ckpt::inspect_payload(file, stats);
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
        j["value"] = e.value;
      }
      entries.push_back(j);
    }
    print_json({{"file", file.string()}, {"container", info.container}, {"version", info.version},
                {"file_size", info.file_size}, {"storage_bytes", info.storage_bytes}, {"entries", entries}});
    return kOk;
  }
  std::cout << fmt::format("{}: {} payload, format version {}, {}, tensor storage {}\n", p(file.string()), p(info.container),
                           info.version, human_bytes(info.file_size), human_bytes(info.storage_bytes));
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
    if (e.stats) {
      detail += fmt::format("  min {:.4g} max {:.4g} mean {:.4g}", e.stats->min, e.stats->max, e.stats->mean);
      if (e.stats->nan_count || e.stats->inf_count) detail += fmt::format("  NaN {} Inf {}", e.stats->nan_count, e.stats->inf_count);
    }
    table.push_back({e.path, "Tensor", detail});
  }
  print_table(table);
  return kOk;
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

int cmd_history(const std::string& dir, const std::string& plot, bool as_json) {
  ckpt::CheckpointReader reader(dir);
  auto events = reader.events();
  auto rows = reader.checkpoints(true);
  if (!plot.empty()) {
    std::string svg = ckpt::cli::history_svg(rows, events, fmt::format("ckpt history: {}", dir));
    std::ofstream out(plot);
    out << svg;
    if (!out) throw ckpt::IoError(ckpt::ErrorCode::io, fmt::format("{}: cannot write the plot", plot), plot);
    if (!as_json) std::cerr << fmt::format("wrote {}\n", p(plot));
  }
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

int cmd_verify(const std::string& dir, bool as_json) {
  ckpt::CheckpointReader reader(dir);
  const bool bar = !as_json && ::isatty(STDERR_FILENO);
  auto results = reader.verify([&](std::uint64_t done, std::uint64_t total) {
    if (!bar || total == 0) return;
    int width = 40, filled = static_cast<int>(width * done / total);
    std::cerr << fmt::format("\rverifying [{}{}] {:3}% {}", std::string(filled, '#'), std::string(width - filled, ' '),
                             100 * done / total, human_bytes(done));
  });
  if (bar) std::cerr << "\n";
  int bad = 0;
  json out = json::array();
  for (const auto& r : results) {
    if (!r.ok) ++bad;
    if (as_json) {
      json j = record_json(dir, r.record);
      j["ok"] = r.ok;
      j["problem"] = r.problem;
      out.push_back(j);
    } else if (!r.ok) {
      std::cout << fmt::format("MISMATCH  {}  {}\n", p((std::filesystem::path(dir) / r.record.file).string()), p(r.problem));
    }
  }
  if (as_json) {
    print_json(out);
  } else {
    std::cout << fmt::format("{} checkpoint{} verified, {} ok, {} mismatched\n", results.size(), results.size() == 1 ? "" : "s",
                             results.size() - bad, bad);
  }
  return bad == 0 ? kOk : kNo;
}

// Writers open the store with the retention the directory already uses, so a tool never
// changes it by accident (the guide's default, 5, for a directory without an index).
// --allow-network-fs: what StoreOptions::allow_network_file_system allows, for every writer.
bool g_allow_network_fs = false;

ckpt::StoreOptions writer_options(const std::string& dir) {
  ckpt::StoreOptions options;
  options.allow_network_file_system = g_allow_network_fs;
  if (std::filesystem::exists(std::filesystem::path(dir) / "index.sqlite")) {
    if (auto keep = ckpt::CheckpointReader(dir).max_to_keep()) options.max_to_keep = *keep;
  }
  return options;
}

int cmd_gc(const std::string& dir, std::optional<int> keep, bool as_json) {
  ckpt::CheckpointStore store(dir, writer_options(dir));
  auto removed = store.gc(keep);
  if (as_json) {
    json out = json::array();
    for (const auto& r : removed) out.push_back(record_json(dir, r));
    print_json(out);
  } else {
    for (const auto& r : removed) std::cout << "removed " << p((std::filesystem::path(dir) / r.file).string()) << "\n";
    std::cout << fmt::format("{} checkpoint{} removed, keeping the newest {}\n", removed.size(), removed.size() == 1 ? "" : "s",
                             keep.value_or(store.max_to_keep()));
  }
  return kOk;
}

int cmd_rm(const std::string& dir, std::int64_t id, bool as_json) {
  ckpt::CheckpointStore store(dir, writer_options(dir));
  auto removed = store.remove(id);
  if (as_json) {
    print_json(record_json(dir, removed));
  } else {
    std::cout << "removed " << p((std::filesystem::path(dir) / removed.file).string()) << "\n";
  }
  return kOk;
}

// The guide's Python CheckpointManager keeps the best metric as "best_acc" and each
// epoch's as "val_acc" (its examples' keys); those become the index's metric.
std::optional<double> guide_metric(const std::filesystem::path& file, CheckpointKind kind) {
  std::vector<std::string> keys{"val_acc"};
  if (kind == CheckpointKind::best) keys.insert(keys.begin(), "best_acc");
  auto entries = ckpt::inspect_payload(file).entries;
  for (const auto& key : keys) {
    for (const auto& entry : entries) {
      if (entry.path == key && (entry.type == "float" || entry.type == "int")) return std::stod(entry.value);
    }
  }
  return std::nullopt;
}

int cmd_import(const std::string& dir, bool as_json) {
  if (!std::filesystem::is_directory(dir)) throw ckpt::InvalidArgument(fmt::format("{}: not a directory", dir), dir);
  ckpt::StoreOptions options = writer_options(dir);
  options.metric_of_adopted = guide_metric;
  ckpt::CheckpointStore store(dir, options);
  const auto& report = store.last_recovery();
  if (as_json) {
    print_json({{"adopted", report.adopted}, {"quarantined", report.quarantined},
                {"temp_files_removed", report.temp_files_removed}, {"checkpoints", store.live_checkpoints().size()}});
  } else {
    std::cout << fmt::format("{}: adopted {}, quarantined {}, removed {} temp file{}; {} checkpoints indexed\n", p(dir),
                             report.adopted, report.quarantined, report.temp_files_removed,
                             report.temp_files_removed == 1 ? "" : "s", store.live_checkpoints().size());
  }
  return kOk;
}

// What state the index is in, for repair.
enum class IndexHealth { ok, missing, damaged, too_new };

IndexHealth index_health(const std::string& dir, std::string& detail) {
  if (!std::filesystem::exists(std::filesystem::path(dir) / "index.sqlite")) return IndexHealth::missing;
  try {
    ckpt::CheckpointReader reader(dir);
    detail = reader.integrity_check();
    if (detail != "ok") return IndexHealth::damaged;
    reader.checkpoints(true);  // a damaged page can also surface only when read
    reader.events();
    return IndexHealth::ok;
  } catch (const ckpt::IndexError& error) {
    detail = error.what();
    return error.code() == ckpt::ErrorCode::schema_too_new ? IndexHealth::too_new : IndexHealth::damaged;
  }
}

// Moves index.sqlite and its WAL files aside (never deletes them); returns the new name.
std::string move_index_aside(const std::string& dir) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  const std::filesystem::path base = std::filesystem::path(dir) / "index.sqlite";
  const std::string aside = base.string() + ".old-" + stamp;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::path from = base.string() + suffix;
    if (std::filesystem::exists(from)) std::filesystem::rename(from, aside + suffix);
  }
  return aside;
}

int cmd_repair(const std::string& dir, bool apply, bool force, bool as_json) {
  std::string detail;
  IndexHealth health = index_health(dir, detail);
  if (health == IndexHealth::too_new && !force) {
    throw ckpt::IndexError(ckpt::ErrorCode::schema_too_new, detail + " (ckpt repair --force rebuilds it from the files, keeping the old index aside)");
  }
  json out{{"dir", dir}, {"applied", apply}};
  if (health != IndexHealth::ok) {
    // Rebuild: the files are the truth; every complete checkpoint file is adopted.
    std::string why = health == IndexHealth::missing ? "no index" : "index unusable: " + detail.substr(0, detail.find('\n'));
    out["index"] = why;
    out["plan"] = {{{"action", "rebuild index"}, {"reason", why}}};
    if (!apply) {
      if (as_json) print_json(out);
      else std::cout << fmt::format("plan for {}:\n  rebuild the index from the checkpoint files ({}){}\nrun with --apply to carry it out\n",
                                    p(dir), p(why), health == IndexHealth::missing ? "" : "; the old index is kept aside");
      return kNo;
    }
    if (health != IndexHealth::missing) out["old_index"] = move_index_aside(dir);
    ckpt::StoreOptions options;
    options.allow_network_file_system = g_allow_network_fs;
    options.metric_of_adopted = guide_metric;
    ckpt::CheckpointStore store(dir, options);
    const auto& report = store.last_recovery();
    out["adopted"] = report.adopted;
    out["quarantined"] = report.quarantined;
    if (as_json) print_json(out);
    else std::cout << fmt::format("rebuilt the index of {}: adopted {}, quarantined {}{}\n", p(dir), report.adopted, report.quarantined,
                                  out.contains("old_index") ? fmt::format("; old index kept as {}", p(out["old_index"].get<std::string>())) : "");
    return kOk;
  }

  ckpt::StoreOptions options = writer_options(dir);
  options.metric_of_adopted = guide_metric;
  auto plan = ckpt::CheckpointStore::plan_repair(dir, /*verify_hashes=*/true, options);
  json actions = json::array();
  for (const auto& action : plan) {
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
void print_error(const std::exception& error) {
  std::string_view message = error.what();
  std::cerr << "ckpt: " << ckpt::format::printable_message(message.substr(0, message.find('\n'))) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  // The library logs through spdlog; the tool reports in its own words.
  spdlog::set_level(spdlog::level::err);
  CLI::App app{"ckpt: inspect, verify and look after ckpt checkpoint directories"};
  app.set_version_flag("--version", std::string(ckpt::version()));
  app.require_subcommand(1);
  app.footer("Exit codes: 0 success; 1 the answer is no (no checkpoint, verification or repair found problems,\n"
             "payloads differ); 2 usage error; 3 error (I/O, damaged index or file, directory locked by a writer).\n"
             "Reference: docs/cli.md");
  bool as_json = false;
  app.add_flag("--json", as_json, "machine-readable output (JSON on stdout)");
  app.add_flag("--allow-network-fs", g_allow_network_fs,
               "let gc, rm, repair and import write on a network file system (one host at a time; no reader "
               "beside them: docs/durability.md)");

  std::string dir, file_a, file_b, plot;
  std::vector<std::string> target;
  bool all = false, verbose = false, stats = false;
  std::optional<int> keep;
  std::int64_t id = 0;

  auto* ls = app.add_subcommand("ls", "list the committed checkpoints (kind, epoch, metric, size, age, hash, file)");
  ls->add_option("DIR", dir, "checkpoint directory")->required();
  ls->add_flag("--all", all, "include history: replaced, deleted, consumed, quarantined rows");
  auto* latest = app.add_subcommand("latest", "print the file a resume would load; exit 1 if there is none");
  latest->add_option("DIR", dir, "checkpoint directory")->required();
  latest->add_flag("-v,--verbose", verbose, "say why this one");
  auto* best = app.add_subcommand("best", "print the best model's file; exit 1 if there is none");
  best->add_option("DIR", dir, "checkpoint directory")->required();
  best->add_flag("-v,--verbose", verbose, "say which metric");
  auto* show = app.add_subcommand("show", "show a payload's structure: keys, tensor dtypes, shapes and sizes (no tensor data read)");
  show->add_option("TARGET", target, "FILE, or DIR latest|best|interrupt, or DIR epoch N")->required()->expected(1, 3);
  show->add_flag("--stats", stats, "add min, max, mean, NaN and Inf counts (reads tensor data)");
  auto* diff = app.add_subcommand("diff", "which keys and tensors differ between two payloads, and by how much; exit 1 if any");
  diff->add_option("A", file_a, "first payload")->required();
  diff->add_option("B", file_b, "second payload")->required();
  auto* history = app.add_subcommand("history", "the directory's event log");
  history->add_option("DIR", dir, "checkpoint directory")->required();
  history->add_option("--plot", plot, "draw the metric over epochs with best, interrupt and resume marked, as SVG");
  auto* verify = app.add_subcommand("verify", "rehash every committed file against the index; exit 1 on any mismatch");
  verify->add_option("DIR", dir, "checkpoint directory")->required();
  auto* gc = app.add_subcommand("gc", "apply the retention stored in the index now (delete epochs beyond it)");
  gc->add_option("DIR", dir, "checkpoint directory")->required();
  gc->add_option("--keep", keep, "keep this many epochs instead (0 keeps all)");
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
  for (auto* command : {ls, latest, best, show, diff, history, verify, gc, rm, repair, import}) {
    command->add_flag("--json", as_json, "machine-readable output (JSON on stdout)");
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
    std::cerr << "ckpt: " << ckpt::format::printable_message(e.what()) << " (see ckpt --help)\n";
    return kUsage;
  }

  try {
    if (*ls) return cmd_ls(dir, all, as_json);
    if (*latest) return cmd_latest_or_best(dir, false, verbose, as_json);
    if (*best) return cmd_latest_or_best(dir, true, verbose, as_json);
    if (*show) return cmd_show(target, stats, as_json);
    if (*diff) return cmd_diff(file_a, file_b, as_json);
    if (*history) return cmd_history(dir, plot, as_json);
    if (*verify) return cmd_verify(dir, as_json);
    if (*gc) return cmd_gc(dir, keep, as_json);
    if (*rm) return cmd_rm(dir, id, as_json);
    if (*repair) return cmd_repair(dir, apply, force, as_json);
    if (*import) return cmd_import(dir, as_json);
  } catch (const ckpt::InvalidArgument& e) {
    print_error(e);
    return kUsage;
  } catch (const std::exception& e) {
    print_error(e);
    return kError;
  }
  return kUsage;
}
