// index_bench: resume and best lookup, opening a store, and saving, at 100,000 index rows.
//
// A directory that has trained for a long time accumulates index rows: every epoch save
// leaves one, and rotation only changes its status to 'deleted'. This program builds such
// an index and times what a trainer does with it: CheckpointStore::latest() (resume
// priority) and best() (each one SQL query), opening the store (the constructor, which
// takes the lock and runs recovery), and an epoch save (whose rotation is a query too).
// The same measurements on a fresh directory give the baseline they are compared with.
//
// How the 100,000 rows are made: the store creates the index; then the history (rows
// 'deleted' by rotation, 'replaced' best models, consumed-and-deleted interrupt
// checkpoints, with the events the store would have logged for each) is bulk-inserted
// with SQLiteCpp in one transaction, older epochs first; then the newest epochs and best
// models are saved for real through CheckpointStore (files, fsyncs, rotation), so the
// live rows and files are exactly what the store itself leaves. Inserting the history
// directly takes ~1 s instead of the ~100 s that 100,000 durable saves would.
//
// Saves and opens alternate between the two directories, so that drift in the disk's
// latency (a shared machine's, or writeback) reaches both alike.
//
// Torch-free: links ckpt::core only, so no payload encoding is involved; payloads are
// 4 KiB of bytes, the size of the save benchmark's state.
//
// Usage: index_bench [--dir PARENT] [--rows N] [--iterations N] [--opens N] [--saves N]
//                    [--json-out FILE] [--keep-dir]
#include <SQLiteCpp/SQLiteCpp.h>
#include <ckpt/store.hpp>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_support.hpp"

namespace {

constexpr int kMaxToKeep = 5;
constexpr std::size_t kPayloadBytes = 4096;
// Real best-model saves after the history: one committed, one 'replaced'.
constexpr int kRealBestSaves = 2;
constexpr int kWarmupCalls = 100;

struct Options : bench::RunDirOptions {
  std::int64_t rows = 100'000;
  int iterations = 10'000;
  int opens = 20;
  int saves = 200;
};

Options parse_options(int argc, char** argv) {
  Options options;
  bench::Args args(
      "usage: index_bench [--dir PARENT] [--rows N] [--iterations N] [--opens N] [--saves N] [--json-out FILE] "
      "[--keep-dir]");
  options.add_to(args).option("--rows", options.rows).option("--iterations", options.iterations);
  args.option("--opens", options.opens).option("--saves", options.saves).parse(argc, argv);
  if (options.saves < kMaxToKeep || options.rows < options.saves + kRealBestSaves || options.iterations < 1 ||
      options.opens < 1) {
    args.usage();
  }
  return options;
}

ckpt::StoreOptions store_options() {
  ckpt::StoreOptions options;
  options.max_to_keep = kMaxToKeep;
  return options;
}

const std::vector<char>& payload() {
  static const std::vector<char> bytes = [] {
    std::vector<char> filled(kPayloadBytes);
    for (std::size_t i = 0; i < filled.size(); ++i) filled[i] = static_cast<char>(i * 131 + 7);
    return filled;
  }();
  return bytes;
}

ckpt::CheckpointRecord save(ckpt::CheckpointStore& store, ckpt::CheckpointKind kind,
                            std::optional<std::int64_t> epoch, std::optional<double> metric) {
  return store.save(kind, epoch, metric, kPayloadBytes,
                    [](ckpt::ByteSink& sink) { sink.write(payload().data(), payload().size()); });
}

template <typename Query>
std::vector<double> time_query(int iterations, Query&& query) {
  // The first calls read the index pages from disk; a trainer's calls find them cached.
  for (int i = 0; i < kWarmupCalls; ++i) {
    if (!query()) throw std::runtime_error("query found nothing during warm-up");
  }
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    auto start = bench::Clock::now();
    auto found = query();
    samples.push_back(bench::elapsed_us(start));
    if (!found) throw std::runtime_error("query found nothing");
  }
  return samples;
}

// The constructor alone is timed: it takes the lock, opens the index and runs recovery.
// Closing (which checkpoints the WAL) happens after the sample is taken.
double time_open(const std::filesystem::path& dir) {
  auto start = bench::Clock::now();
  ckpt::CheckpointStore store(dir, store_options());
  double us = bench::elapsed_us(start);
  if (store.last_recovery().anything_done()) {
    throw std::runtime_error(dir.string() + ": recovery had work to do; the directory is not clean");
  }
  return us;
}

struct History {
  std::int64_t rows = 0;
  std::int64_t events = 0;
  std::int64_t next_epoch = 0;  // the first epoch the real saves use
  double insert_seconds = 0;
};

// The rows a long training history leaves behind, in the order a training run makes
// them: per epoch a 'deleted' epoch row (saved, rotated out, unlinked); a new best model
// every 25 epochs, which replaces the previous one; and every 5,000 epochs an interrupt
// checkpoint that a resumed run consumed and the next save deleted. Each row comes with
// the events the store logs for it, so the database has its real size and shape.
History insert_history(const std::filesystem::path& index_path, std::int64_t rows) {
  auto start = bench::Clock::now();
  SQLite::Database db(index_path.string(), SQLite::OPEN_READWRITE);
  db.exec("PRAGMA foreign_keys=ON");
  SQLite::Transaction transaction(db);
  SQLite::Statement insert_row(db,
                               "INSERT INTO checkpoints (kind, epoch, metric, file, size, hash, hash_algo, status, "
                               "commit_seq) VALUES (?, ?, ?, ?, ?, ?, 'xxh3-128', ?, ?)");
  SQLite::Statement insert_event(db, "INSERT INTO events (event, checkpoint_id, detail) VALUES (?, ?, ?)");

  History history;
  auto add_row = [&](const char* kind, std::optional<std::int64_t> epoch, std::optional<double> metric,
                     const std::string& file, const char* status, std::initializer_list<const char*> events) {
    insert_row.reset();
    insert_row.clearBindings();
    insert_row.bind(1, kind);
    if (epoch) insert_row.bind(2, static_cast<int64_t>(*epoch));
    if (metric) insert_row.bind(3, *metric);
    insert_row.bind(4, file);
    insert_row.bind(5, static_cast<int64_t>(kPayloadBytes));
    insert_row.bind(6, fmt::format("{:016x}{:016x}", history.rows * 2654435761u, history.rows + 1));
    insert_row.bind(7, status);
    insert_row.bind(8, static_cast<int64_t>(history.rows + 1));  // committed in this order
    insert_row.exec();
    const std::int64_t id = db.getLastInsertRowid();
    for (const char* event : events) {
      insert_event.reset();
      insert_event.bind(1, event);
      insert_event.bind(2, static_cast<int64_t>(id));
      insert_event.bind(3, file);
      insert_event.exec();
      ++history.events;
    }
    ++history.rows;
  };

  double best_metric = 0;
  for (std::int64_t epoch = 0; history.rows < rows; ++epoch) {
    add_row("epoch", epoch, std::nullopt, fmt::format("checkpoint_epoch_{}.pth", epoch), "deleted",
            {"saved", "rotated_out", "deleted"});
    if (history.rows < rows && epoch % 25 == 24) {
      best_metric += 0.001;
      add_row("best", std::nullopt, best_metric, "best_model.pth", "replaced", {"saved", "new_best", "replaced"});
    }
    if (history.rows < rows && epoch % 5000 == 4999) {
      add_row("interrupt", std::nullopt, std::nullopt, "interrupt_checkpoint.pth", "deleted",
              {"saved", "interrupted", "resumed_from", "consumed_obsolete", "deleted"});
    }
    history.next_epoch = epoch + 1;
  }
  transaction.commit();
  history.insert_seconds = bench::elapsed_us(start) / 1e6;
  return history;
}

struct Phase {
  std::string name;
  std::int64_t rows = 0;
  std::int64_t events = 0;
  std::vector<double> open_us;
  std::vector<double> latest_us;
  std::vector<double> best_us;
  std::vector<double> save_us;
  std::vector<std::string> plans;  // EXPLAIN QUERY PLAN of the lookups' three queries
};

std::int64_t count(const std::filesystem::path& index_path, const char* table) {
  SQLite::Database db(index_path.string(), SQLite::OPEN_READONLY);
  return db.execAndGet(fmt::format("SELECT COUNT(*) FROM {}", table)).getInt64();
}

// Evidence that each lookup is an index range scan rather than a table scan. The SQL is
// a copy of Index::resume_candidate() (one probe per resumable status and kind; the
// committed-epoch probe shown), Index::best(), Index::rotation_order() (what rotation and
// the retention plan walk) and the next commit_seq of Index::mark_committed() in
// src/index/index.cpp.
std::vector<std::string> query_plans(const std::filesystem::path& index_path) {
  const char* queries[] = {
      "SELECT * FROM checkpoints WHERE status = 'committed' AND kind = 'epoch' AND commit_seq < 9223372036854775807 "
      "ORDER BY commit_seq DESC LIMIT 1",
      "SELECT * FROM checkpoints WHERE status = 'committed' AND kind = 'best' ORDER BY commit_seq DESC LIMIT 1",
      "SELECT * FROM checkpoints WHERE status = 'committed' AND kind = 'epoch' ORDER BY commit_seq DESC",
      "SELECT COALESCE((SELECT commit_seq FROM checkpoints WHERE commit_seq IS NOT NULL ORDER BY commit_seq DESC "
      "LIMIT 1), 0) + 1",
  };
  SQLite::Database db(index_path.string(), SQLite::OPEN_READONLY);
  std::vector<std::string> plans;
  for (const char* sql : queries) {
    SQLite::Statement explain(db, std::string("EXPLAIN QUERY PLAN ") + sql);
    std::string plan;
    while (explain.executeStep()) plan += (plan.empty() ? "" : "; ") + explain.getColumn(3).getString();
    plans.push_back(plan);
  }
  return plans;
}

// One directory under test: its store, what it was given, and what was measured on it.
struct Subject {
  Phase phase;
  std::filesystem::path dir;
  std::unique_ptr<ckpt::CheckpointStore> store;
  std::int64_t next_epoch = 0;
  double last_best = 0;
};

// Lookups are CPU work on a cached index: timed one directory after the other. Before
// that, checks that the index answers with what was saved.
void time_lookups(Subject& subject, const Options& options) {
  ckpt::CheckpointStore& store = *subject.store;
  auto latest = store.latest();
  auto best = store.best();
  if (!latest || latest->epoch != subject.next_epoch - 1 || !best || best->metric != subject.last_best ||
      store.live_checkpoints().size() != kMaxToKeep + 1) {
    throw std::runtime_error(subject.dir.string() + ": the index does not hold what was saved");
  }
  subject.phase.latest_us = time_query(options.iterations, [&] { return store.latest(); });
  subject.phase.best_us = time_query(options.iterations, [&] { return store.best(); });
  subject.phase.plans = query_plans(store.index_path());
}

bench::Result phase_json(const Phase& phase) {
  bench::Result out;
  out.add("name", phase.name).add("rows", phase.rows).add("events", phase.events);
  out.add_samples("open_us", phase.open_us).add_samples("latest_us", phase.latest_us);
  out.add_samples("best_us", phase.best_us).add_samples("save_us", phase.save_us);
  return out.add_strings("plans", phase.plans);
}

void print_phase(const Phase& phase) {
  std::printf("%s: %lld checkpoint rows, %lld events\n", phase.name.c_str(), static_cast<long long>(phase.rows),
              static_cast<long long>(phase.events));
  std::printf("  open    %s\n", bench::describe(bench::summarize(phase.open_us)).c_str());
  std::printf("  latest  %s\n", bench::describe(bench::summarize(phase.latest_us)).c_str());
  std::printf("  best    %s\n", bench::describe(bench::summarize(phase.best_us)).c_str());
  std::printf("  save    %s\n", bench::describe(bench::summarize(phase.save_us)).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  spdlog::set_level(spdlog::level::off);  // the store logs every save; not what is measured

  try {
    // Baseline: a fresh directory that will hold only the real saves.
    Subject fresh;
    fresh.phase.name = "fresh";
    fresh.dir = bench::make_fresh_dir(options.parent, "index-fresh");
    // The long history: the store creates the schema, then the history goes in directly.
    Subject large;
    large.phase.name = "large";
    large.dir = bench::make_fresh_dir(options.parent, "index-large");
    { ckpt::CheckpointStore create_schema(large.dir, store_options()); }
    History history = insert_history(large.dir / "index.sqlite", options.rows - options.saves - kRealBestSaves);
    large.next_epoch = history.next_epoch;
    // The history just wrote ~40 MB; flushing it now keeps its writeback out of the saves.
    ::sync();

    // The live checkpoints are saved for real through the store, in both directories in
    // turn. Opening the large directory here runs recovery over its full history.
    std::vector<Subject*> subjects = {&fresh, &large};
    for (Subject* subject : subjects) {
      subject->store = std::make_unique<ckpt::CheckpointStore>(subject->dir, store_options());
    }
    for (int i = 0; i < kRealBestSaves; ++i) {
      for (Subject* subject : subjects) {
        subject->last_best = 1.0 + i;
        save(*subject->store, ckpt::CheckpointKind::best, std::nullopt, subject->last_best);
      }
    }
    for (int i = 0; i < options.saves; ++i) {
      for (Subject* subject : subjects) {
        auto start = bench::Clock::now();
        save(*subject->store, ckpt::CheckpointKind::epoch, subject->next_epoch++, std::nullopt);
        subject->phase.save_us.push_back(bench::elapsed_us(start));
      }
    }
    for (Subject* subject : subjects) {
      time_lookups(*subject, options);
      subject->store.reset();
    }
    // Opening creates and deletes the WAL files and writes the lock file, so it feels the
    // disk too: alternate as well.
    for (int i = 0; i < options.opens; ++i) {
      for (Subject* subject : subjects) subject->phase.open_us.push_back(time_open(subject->dir));
    }
    for (Subject* subject : subjects) {
      subject->phase.rows = count(subject->dir / "index.sqlite", "checkpoints");
      subject->phase.events = count(subject->dir / "index.sqlite", "events");
    }
    const Phase& large_phase = large.phase;
    const std::filesystem::path& large_dir = large.dir;
    if (large_phase.rows != options.rows) {
      throw std::runtime_error(fmt::format("{}: expected {} rows, built {}", large_dir.string(), options.rows,
                                           large_phase.rows));
    }

    std::printf("index_bench (SQLite %s): history of %lld rows inserted in %.2f s\n", sqlite3_libversion(),
                static_cast<long long>(history.rows), history.insert_seconds);
    print_phase(fresh.phase);
    print_phase(large_phase);
    for (const auto& plan : large_phase.plans) std::printf("  plan: %s\n", plan.c_str());

    bench::Result result;
    result.add("sqlite", sqlite3_libversion()).add("max_to_keep", kMaxToKeep).add("payload_bytes", kPayloadBytes);
    result.add("iterations", options.iterations).add("history_rows", history.rows);
    result.add("history_events", history.events).add("history_insert_seconds", history.insert_seconds);
    result.add_raw("phases", "[" + phase_json(fresh.phase).object() + ", " + phase_json(large_phase).object() + "]");
    result.write(options.json_out);
    if (!options.keep_dir) {
      std::filesystem::remove_all(fresh.dir);
      std::filesystem::remove_all(large.dir);
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "index_bench: %s\n", error.what());
    return 1;
  }
  return 0;
}
