// Retention policies (ckpt/retention.hpp; docs/durability.md, "Retention"): each rule
// against hand-computed expectations, the plan an API call and `gc` agree on, restarts
// that take their history from the index, and a clock set back.
#include <catch2/catch.hpp>

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/retention.hpp"
#include "ckpt/store.hpp"
#include "index/index.hpp"
#include "store/retention_plan.hpp"  // the writer's carried interval walk
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::test;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

CheckpointRecord save_with(CheckpointStore& store, std::int64_t epoch, std::vector<std::pair<std::string, double>> metrics,
                           std::optional<std::int64_t> step = std::nullopt) {
  SaveRequest request;
  request.epoch = epoch;
  request.step = step;
  request.metrics = std::move(metrics);
  const std::string bytes = zip_payload(static_cast<int>(epoch * 1000 + step.value_or(0)));
  request.size_hint = bytes.size();
  return store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

std::set<std::int64_t> live_epochs(const CheckpointStore& store) {
  std::set<std::int64_t> epochs;
  for (const auto& row : store.live_checkpoints()) {
    if (row.kind == CheckpointKind::epoch && !row.step) epochs.insert(*row.epoch);
  }
  return epochs;
}

StoreOptions policy_options(int keep, const std::string& rules) {
  StoreOptions options;
  options.max_to_keep = keep;
  options.retention = parse_retention_rules(rules);
  return options;
}

// Sets a row's created_at as if its save had started at `at` (UTC text).
void set_created_at(const std::filesystem::path& dir, std::int64_t id, const std::string& at) {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READWRITE);
  db.setBusyTimeout(5000);
  SQLite::Statement update(db, "UPDATE checkpoints SET created_at = ? WHERE id = ?");
  update.bind(1, at);
  update.bind(2, static_cast<int64_t>(id));
  update.exec();
}

std::vector<std::pair<std::int64_t, std::string>> retention_table(const std::filesystem::path& dir) {
  SQLite::Database db((dir / "index.sqlite").string(), SQLite::OPEN_READONLY);
  SQLite::Statement query(db, "SELECT c.epoch, r.policy FROM retention r JOIN checkpoints c ON c.id = r.checkpoint_id "
                              "ORDER BY c.epoch, r.policy");
  std::vector<std::pair<std::int64_t, std::string>> rows;
  while (query.executeStep()) rows.emplace_back(query.getColumn(0).getInt64(), query.getColumn(1).getString());
  return rows;
}

}  // namespace

TEST_CASE("retention rules read back from their text, and numbers below 1 or rules that cannot delete are refused",
          "[retention]") {
  const std::string text = "top 3 by val_loss (min); top 1 by val acc (max); every 10 epochs; every 1000 steps; one per 3600 s";
  RetentionRules rules = parse_retention_rules(text);
  REQUIRE(rules.top.size() == 2);
  CHECK(rules.top[1].metric == "val acc");
  CHECK(rules.top[1].mode == MetricMode::max);
  CHECK(rules.every_epochs == 10);
  CHECK(rules.every_steps == 1000);
  CHECK(rules.one_per == std::chrono::seconds(3600));
  CHECK(to_string(rules) == text);
  CHECK(parse_retention_rules(to_string(rules)) == rules);
  CHECK(parse_retention_rules("").empty());
  CHECK(to_string(RetentionPolicy{5, rules}) == "newest 5; " + text);

  for (const char* bad : {"top three by x (min)", "top 3 by x (median)", "every ten epochs", "keep the good ones",
                          "every 2 epochs; every 3 epochs"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_retention_rules(bad), InvalidArgument);
  }
  auto refused = [](int keep, const std::string& rules) {
    try {
      validate(RetentionPolicy{keep, parse_retention_rules(rules)}, "/run");
    } catch (const InvalidArgument& error) {
      return std::string(error.what());
    }
    return std::string();
  };
  CHECK_THAT(refused(5, "every 0 epochs"), Catch::Contains("/run") && Catch::Contains("N must be >= 1"));
  CHECK_THAT(refused(5, "every 0 steps"), Catch::Contains("N must be >= 1"));
  CHECK_THAT(refused(5, "one per 0 s"), Catch::Contains("N must be >= 1"));
  CHECK_THAT(refused(5, "top 0 by val_loss (min)"), Catch::Contains("k must be >= 1"));
  CHECK_THAT(refused(5, "top 1 by  (min)"), Catch::Contains("metric name"));
  CHECK_THAT(refused(5, "top 1 by a (min); top 2 by a (min)"), Catch::Contains("given twice"));
  CHECK_THAT(refused(0, "every 10 epochs"), Catch::Contains("max_to_keep 0 keeps every checkpoint"));
  CHECK(refused(0, "").empty());  // 0 alone: keep all, the guide's meaning
  CHECK(refused(1, "top 1 by a (min); top 1 by a (max)").empty());

  TestDir dir("retention-refused");
  CHECK_THROWS_AS(CheckpointStore(dir.path(), policy_options(0, "every 10 epochs")), InvalidArgument);
}

TEST_CASE("top k by a metric keeps the k best beside the newest N; NaN ranks last, a missing metric is not judged, "
          "ties keep the newer",
          "[retention]") {
  TestDir dir("retention-top");
  CheckpointStore store(dir.path(), policy_options(2, "top 2 by val_loss (min)"));
  // epoch: val_loss          1: 0.5  2: 0.3  3: NaN  4: (none)  5: 0.3  6: 0.9  7: 0.8  8: 0.7
  // Ranked: 5 (0.3, newer of the tie), 2 (0.3), 1 (0.5), 8, 7, 6, 3 (NaN last).
  // Kept: newest 2 = {8, 7}; top 2 = {5, 2}; 4 not judged. Deleted: 1 and 3 by epoch 5's
  // rotation (ranks 3 and 4 among the live 1, 2, 3, 5), 6 by epoch 8's (ranks 5 of 2, 5, 6, 7, 8).
  const std::vector<std::pair<std::int64_t, std::optional<double>>> runs = {
      {1, 0.5}, {2, 0.3}, {3, kNaN}, {4, std::nullopt}, {5, 0.3}, {6, 0.9}, {7, 0.8}, {8, 0.7}};
  for (const auto& [epoch, loss] : runs) {
    std::vector<std::pair<std::string, double>> metrics;
    if (loss) metrics.emplace_back("val_loss", *loss);
    metrics.emplace_back("train_loss", 1.0 / static_cast<double>(epoch));
    save_with(store, epoch, metrics);
  }
  CHECK(live_epochs(store) == std::set<std::int64_t>{2, 4, 5, 7, 8});

  const auto plan = store.retention_plan();
  REQUIRE(plan.size() == 5);
  CHECK(plan[0].record.epoch == 8);
  CHECK(plan[0].kept_by == std::vector<std::string>{"newest", "resume point", "newest 2"});
  CHECK(plan[2].record.epoch == 5);
  CHECK(plan[2].kept_by == std::vector<std::string>{"top 2 by val_loss (min)"});
  CHECK(plan[3].record.epoch == 4);
  CHECK(plan[3].kept_by == std::vector<std::string>{"top 2 by val_loss (min): not judged, no val_loss"});

  // What each rotation recorded and why (the events' detail) and what each kept (the table).
  std::map<std::int64_t, std::string> why_removed;
  for (const auto& event : CheckpointReader(dir.path()).events()) {
    if (event.event != "rotated_out") continue;
    for (const auto& row : CheckpointReader(dir.path()).checkpoints(true)) {
      if (event.checkpoint_id == row.id) why_removed[*row.epoch] = event.detail;
    }
  }
  CHECK(why_removed.size() == 3);
  CHECK(why_removed[3] ==
        "checkpoint_epoch_3.pth (epoch 3): beyond the newest 2; top 2 by val_loss (min): ranks 4 (val_loss NaN)");
  CHECK_THAT(why_removed[1], Catch::Contains("top 2 by val_loss (min): ranks 3 (val_loss 0.5)"));
  CHECK_THAT(why_removed[6], Catch::Contains("ranks 5 (val_loss 0.9)"));
  const auto table = retention_table(dir.path());
  CHECK(std::count(table.begin(), table.end(), std::make_pair(std::int64_t{2}, std::string("top 2 by val_loss (min)"))) == 1);
  CHECK(std::count(table.begin(), table.end(), std::make_pair(std::int64_t{8}, std::string("newest"))) == 1);
  CHECK(table.size() == 7);  // 8: newest, resume point, newest 2; 7: newest 2; 5, 2: top 2; 4: not judged

  // The best by the metric: the newer of the tie, never the NaN.
  CHECK(store.best_by("val_loss", MetricMode::min)->epoch == 5);
  CHECK(store.best_by("val_loss", MetricMode::max)->epoch == 7);  // 0.8: 0.9 (epoch 6) was rotated out
  CHECK(store.best_by("train_loss", MetricMode::min)->epoch == 8);
  CHECK_FALSE(store.best_by("no_such_metric", MetricMode::min));
  CHECK(CheckpointReader(dir.path()).best_by("val_loss", MetricMode::min)->epoch == 5);
}

TEST_CASE("every N epochs and every N steps keep theirs for good; the newest is always kept", "[retention]") {
  TestDir dir("retention-every");
  CheckpointStore store(dir.path(), policy_options(1, "every 3 epochs; every 100 steps"));
  for (std::int64_t epoch = 0; epoch <= 10; ++epoch) {
    save_with(store, epoch, {});
    save_with(store, epoch, {}, epoch * 50 + 25);  // steps 25, 75, ..., 525: no multiple of 100
    save_with(store, epoch, {}, epoch * 50 + 50);  // 50, 100, ..., 550: 100, 200, ... kept
  }
  CHECK(live_epochs(store) == std::set<std::int64_t>{0, 3, 6, 9});
  std::set<std::int64_t> steps;
  for (const auto& row : store.live_checkpoints()) {
    if (row.step) steps.insert(*row.step);
  }
  // 550 is the newest commit (kept as the newest, and a multiple of 50 only by chance).
  CHECK(steps == std::set<std::int64_t>{100, 200, 300, 400, 500, 550});
  const auto plan = store.retention_plan();
  REQUIRE_FALSE(plan.empty());
  CHECK(plan.front().record.step == 550);
  CHECK(plan.front().kept_by == std::vector<std::string>{"newest", "resume point", "newest 1"});

  // Applied once with another policy: only the newest stays; the stored policy is unchanged.
  auto removed = store.gc(RetentionPolicy{1, {}});
  CHECK(removed.size() == 9);
  for (const auto& decision : removed) {
    CHECK_FALSE(decision.kept());
    CHECK(decision.delete_reason == "beyond the newest 1");
  }
  CHECK(store.live_checkpoints().size() == 1);
  CHECK(CheckpointReader(dir.path()).retention().rules == parse_retention_rules("every 3 epochs; every 100 steps"));
}

TEST_CASE("one per interval reads created_at from the index: a restart keeps the same ones, and a clock set back "
          "deletes nothing older",
          "[retention]") {
  TestDir dir("retention-interval");
  const auto options = policy_options(1, "one per 3600 s");
  // Epoch: created at        1: 00:00  2: 00:30  3: 01:00  4: 01:20  5: 02:10
  // Walk: 1 kept (first); 2 (+30 min) no; 3 (+60 min from 1) kept; 4 no; 5 (+70 min from 3) kept.
  const std::vector<std::string> times = {"2026-01-01T00:00:00.000Z", "2026-01-01T00:30:00.000Z",
                                          "2026-01-01T01:00:00.000Z", "2026-01-01T01:20:00.000Z",
                                          "2026-01-01T02:10:00.000Z"};
  for (std::size_t i = 0; i < times.size(); ++i) {
    // A store per save: each open is a restart that has only the index to go by.
    CheckpointStore store(dir.path(), options);
    auto row = save_with(store, static_cast<std::int64_t>(i + 1), {});
    set_created_at(dir.path(), row.id, times[i]);
  }
  {
    CheckpointStore store(dir.path(), options);
    store.gc();
    CHECK(live_epochs(store) == std::set<std::int64_t>{1, 3, 5});
    // The clock is set back a day: the new save is not its interval's keeper, and it
    // takes nothing older with it. The previous newest (5) goes only if no rule keeps it:
    // 5 is a keeper of the walk, so it stays.
    auto back = save_with(store, 6, {});
    set_created_at(dir.path(), back.id, "2025-12-31T00:00:00.000Z");
    auto later = save_with(store, 7, {});
    set_created_at(dir.path(), later.id, "2025-12-31T00:10:00.000Z");
    store.gc();
    CHECK(live_epochs(store) == std::set<std::int64_t>{1, 3, 5, 7});  // 6: neither newest nor a keeper
    const auto plan = store.retention_plan();
    for (const auto& decision : plan) {
      if (decision.record.epoch == 7) CHECK(decision.kept_by == std::vector<std::string>{"newest", "resume point", "newest 1"});
    }
  }
  std::string six;
  for (const auto& event : CheckpointReader(dir.path()).events()) {
    if (event.event == "rotated_out" && event.detail.find("epoch 6") != std::string::npos) six = event.detail;
  }
  CHECK_THAT(six, Catch::Contains("before checkpoint") && Catch::Contains("a clock set back?"));
}

TEST_CASE("the interval walk the writer carries between passes decides as a walk over the whole history, and "
          "starts over when the last commit it walked is not as it was",
          "[retention]") {
  TestDir dir("retention-walk");
  const auto options = policy_options(2, "one per 3600 s");
  const auto policy = RetentionPolicy{2, parse_retention_rules("one per 3600 s")};
  auto save_at = [&](std::int64_t first, const std::vector<std::string>& times) {
    CheckpointStore store(dir.path(), options);
    std::vector<std::int64_t> ids;
    for (std::size_t i = 0; i < times.size(); ++i) ids.push_back(save_with(store, first + std::int64_t(i), {}).id);
    return ids;
  };
  auto decisions = [](const std::vector<RetentionDecision>& plan) {
    std::map<std::int64_t, std::pair<std::vector<std::string>, std::string>> out;
    for (const auto& d : plan) out[d.record.id] = {d.kept_by, d.delete_reason};
    return out;
  };
  auto index_path = dir / "index.sqlite";
  // Epochs 1-6 at 00:00 00:40 01:10 01:30 02:20 02:50: keepers 1 (first), 3 (+70 min), 5 (+70 min).
  const std::vector<std::string> first = {"2026-01-01T00:00:00.000Z", "2026-01-01T00:40:00.000Z",
                                          "2026-01-01T01:10:00.000Z", "2026-01-01T01:30:00.000Z",
                                          "2026-01-01T02:20:00.000Z", "2026-01-01T02:50:00.000Z"};
  auto ids = save_at(1, first);
  for (std::size_t i = 0; i < ids.size(); ++i) set_created_at(dir.path(), ids[i], first[i]);
  store::IntervalWalk walk;
  {
    index::Index index(index_path, index::Index::Mode::read_write);
    auto carried = store::plan_retention(index, policy, &walk);
    CHECK(decisions(carried) == decisions(store::plan_retention(index, policy)));
    REQUIRE(walk.through);
    CHECK(walk.through->id == ids.back());
  }
  // Two more commits, then a pass that goes on from epoch 6: 7 (03:25, +65 min from 5) is a keeper, 8 is not.
  const std::vector<std::string> second = {"2026-01-01T03:25:00.000Z", "2026-01-01T03:30:00.000Z"};
  auto more = save_at(7, second);
  for (std::size_t i = 0; i < more.size(); ++i) set_created_at(dir.path(), more[i], second[i]);
  {
    index::Index index(index_path, index::Index::Mode::read_write);
    auto carried = store::plan_retention(index, policy, &walk);
    auto fresh = store::plan_retention(index, policy);
    CHECK(decisions(carried) == decisions(fresh));
    for (const auto& d : fresh) {
      if (d.record.epoch == 7) CHECK(d.kept_by == std::vector<std::string>{"newest 2", "one per 3600 s"});
    }
    CHECK(walk.through->id == more.back());
  }
  // The last commit walked is not as it was (as after a transaction that rolled back and a
  // new save in its place): 8 now comes 70 minutes after 7, a keeper. The carried walk
  // must notice and walk again, not keep 8's old decision.
  set_created_at(dir.path(), more.back(), "2026-01-01T04:35:00.000Z");
  {
    index::Index index(index_path, index::Index::Mode::read_write);
    auto carried = store::plan_retention(index, policy, &walk);
    auto fresh = store::plan_retention(index, policy);
    CHECK(decisions(carried) == decisions(fresh));
    for (const auto& d : carried) {
      if (d.record.epoch == 8) CHECK(d.kept_by == std::vector<std::string>{"newest", "resume point", "newest 2", "one per 3600 s"});
    }
  }
}

TEST_CASE("a pinned checkpoint is kept by its pin, named in the plan, and deleted by the first gc after release",
          "[retention]") {
  TestDir dir("retention-pin");
  {
    CheckpointStore store(dir.path(), policy_options(1, "top 1 by val_loss (min)"));
    save_with(store, 1, {{"val_loss", 0.9}});
    CheckpointReader reader(dir.path());
    auto pin = reader.pin(store.live_checkpoints().front().id, std::chrono::minutes(5), "evaluator 1");
    save_with(store, 2, {{"val_loss", 0.1}});
    save_with(store, 3, {{"val_loss", 0.5}});
    CHECK(live_epochs(store) == std::set<std::int64_t>{1, 2, 3});  // 1: pinned only
    const auto plan = reader.retention_plan();
    REQUIRE(plan.size() == 3);
    REQUIRE(plan[2].kept_by.size() == 1);
    CHECK_THAT(plan[2].kept_by[0], Catch::StartsWith("pinned by evaluator 1 until "));
    pin.release();
    CHECK(store.gc().size() == 1);
    CHECK(live_epochs(store) == std::set<std::int64_t>{2, 3});
  }
}
