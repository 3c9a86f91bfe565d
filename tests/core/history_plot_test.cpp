// `ckpt history --plot` (tools/history_plot.hpp): round ticks, the grouping of metrics
// into panels, the marks, and the PNG and SVG it writes, read back.
#include <catch2/catch.hpp>

#include <cairo.h>

#include <cmath>
#include <memory>

#include "ckpt/errors.hpp"
#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"
#include "history_plot.hpp"
#include "support/store_support.hpp"
#include "support/test_dir.hpp"

using namespace ckpt;
using namespace ckpt::cli;
using namespace ckpt::test;

namespace {

bool is_round_step(double step) {
  const double mantissa = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  return std::abs(mantissa - 1) < 1e-9 || std::abs(mantissa - 2) < 1e-9 || std::abs(mantissa - 5) < 1e-9;
}

void check_ticks_cover(double lo, double hi, int max_ticks) {
  INFO("range " << lo << ".." << hi << ", at most " << max_ticks);
  Ticks ticks = nice_ticks(lo, hi, max_ticks);
  REQUIRE(ticks.values.size() >= 2);
  CHECK(static_cast<int>(ticks.values.size()) <= max_ticks);
  CHECK(is_round_step(ticks.step));
  const double eps = ticks.step * 1e-9;
  CHECK(ticks.values.front() <= lo + eps);
  CHECK(ticks.values.back() >= hi - eps);
  for (std::size_t i = 0; i < ticks.values.size(); ++i) {
    const double multiple = ticks.values[i] / ticks.step;
    CHECK(std::abs(multiple - std::round(multiple)) < 1e-6);
    if (i > 0) CHECK(std::abs(ticks.values[i] - ticks.values[i - 1] - ticks.step) < eps * 1e3);
  }
  // Not needlessly coarse: the next smaller round step would need more ticks.
  CHECK(ticks.values.front() > lo - ticks.step);
  CHECK(ticks.values.back() < hi + ticks.step);
}

std::vector<std::string> labels(const Ticks& ticks) {
  std::vector<std::string> out;
  for (double v : ticks.values) out.push_back(tick_label(v, ticks));
  return out;
}

CheckpointRecord epoch_row(std::int64_t id, std::int64_t epoch, std::int64_t commit_seq, std::optional<double> metric = {}) {
  CheckpointRecord row;
  row.id = id;
  row.kind = CheckpointKind::epoch;
  row.epoch = epoch;
  row.state_epoch = epoch;
  row.metric = metric;
  row.commit_seq = commit_seq;
  row.status = "committed";
  return row;
}

CheckpointEvent event(std::int64_t id, const std::string& name, std::int64_t checkpoint_id) {
  CheckpointEvent e;
  e.id = id;
  e.event = name;
  e.checkpoint_id = checkpoint_id;
  return e;
}

// A realistic run: 25 epochs, val_acc rising 0.5 -> 0.99, train_loss falling 2.3 -> 0.05,
// best_acc, lr with a step schedule; interrupted during epoch 12 (the state is of epoch
// 11) and resumed from that interrupt checkpoint.
HistoryPlotData realistic_run() {
  HistoryPlotData data;
  data.title = "ckpt history: checkpoints";
  std::int64_t id = 0, seq = 0, event_id = 0;
  double best = 0;
  for (std::int64_t epoch = 1; epoch <= 25; ++epoch) {
    const double t = (epoch - 1) / 24.0;
    const double val_acc = std::min(0.99, 0.985 - 0.485 * std::exp(-4 * t) + 0.03 * std::sin(epoch * 2.3) * (1 - t));
    const double train_loss = 0.05 + 2.25 * std::exp(-5 * t);
    const double lr = epoch <= 10 ? 1e-3 : epoch <= 20 ? 1e-4 : 1e-5;
    CheckpointRecord row = epoch_row(++id, epoch, ++seq, val_acc);
    data.rows.push_back(row);
    data.metrics.push_back({row.id, "epoch", static_cast<double>(epoch)});
    data.metrics.push_back({row.id, "val_acc", val_acc});
    data.metrics.push_back({row.id, "train_loss", train_loss});
    data.metrics.push_back({row.id, "best_acc", best});
    data.metrics.push_back({row.id, "lr", lr});
    data.events.push_back(event(++event_id, "saved", row.id));
    if (val_acc > best) {
      best = val_acc;
      CheckpointRecord best_row;
      best_row.id = ++id;
      best_row.kind = CheckpointKind::best;
      best_row.metric = val_acc;
      best_row.metric_source = "val_acc in the state";
      best_row.state_epoch = epoch;
      best_row.commit_seq = ++seq;
      best_row.status = "replaced";
      data.rows.push_back(best_row);
      data.events.push_back(event(++event_id, "new_best", best_row.id));
    }
    if (epoch == 11) {
      CheckpointRecord interrupt;
      interrupt.id = ++id;
      interrupt.kind = CheckpointKind::interrupt;
      interrupt.state_epoch = 11;
      interrupt.commit_seq = ++seq;
      interrupt.status = "deleted";
      data.rows.push_back(interrupt);
      data.events.push_back(event(++event_id, "interrupted", interrupt.id));
      data.events.push_back(event(++event_id, "resumed_from", interrupt.id));
    }
  }
  return data;
}

struct PngDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};

// How many pixels inside `area` are within `tolerance` (per channel, 0..255) of `color`.
int pixels_of(cairo_surface_t* image, const PlotRect& area, Rgb color, int tolerance = 6) {
  cairo_surface_flush(image);
  const unsigned char* data = cairo_image_surface_get_data(image);
  const int stride = cairo_image_surface_get_stride(image);
  const int want[3] = {static_cast<int>(std::lround(color.r * 255)), static_cast<int>(std::lround(color.g * 255)),
                       static_cast<int>(std::lround(color.b * 255))};
  int count = 0;
  for (int y = static_cast<int>(area.y) + 1; y < static_cast<int>(area.y + area.height) - 1; ++y) {
    for (int x = static_cast<int>(area.x) + 1; x < static_cast<int>(area.x + area.width) - 1; ++x) {
      const auto* px = reinterpret_cast<const std::uint32_t*>(data + y * stride) + x;  // ARGB32, native endian
      const int r = (*px >> 16) & 0xff, g = (*px >> 8) & 0xff, b = *px & 0xff;
      if (std::abs(r - want[0]) <= tolerance && std::abs(g - want[1]) <= tolerance && std::abs(b - want[2]) <= tolerance) ++count;
    }
  }
  return count;
}

// Whether the SVG's text layer has `text` as a string of class `cls`.
bool has_text(const std::string& svg, const std::string& cls, const std::string& text) {
  const std::string start = "<text class=\"" + cls + "\"", end = ">" + text + "</text>";
  for (std::size_t at = svg.find(start); at != std::string::npos; at = svg.find(start, at + 1)) {
    const std::size_t close = svg.find("</text>", at);
    if (close != std::string::npos && svg.compare(close + 7 - end.size(), end.size(), end) == 0) return true;
  }
  return false;
}

std::size_t series_named(const HistoryModel& model, const std::string& name) {
  for (std::size_t i = 0; i < model.series.size(); ++i) {
    if (model.series[i].name == name) return i;
  }
  FAIL("no series " << name);
  return 0;
}

// The marks of a run interrupted once: one interrupt and its resume at `resumed_epoch`,
// and one new best at `best_epoch` on the series `best_series`.
void check_one_interrupt_one_best(const HistoryModel& model, std::int64_t resumed_epoch, std::int64_t best_epoch,
                                  std::size_t best_series) {
  REQUIRE(model.interrupts.size() == 1);
  REQUIRE(model.resumes.size() == 1);
  CHECK(model.interrupts[0].epoch == resumed_epoch);
  CHECK(model.resumes[0].epoch == resumed_epoch);
  REQUIRE(model.new_bests.size() == 1);
  CHECK(model.new_bests[0].epoch == best_epoch);
  CHECK(model.new_bests[0].series == best_series);
}

}  // namespace

TEST_CASE("ticks on awkward ranges are 1, 2 or 5 times a power of ten and cover the data", "[plot]") {
  check_ticks_cover(0.8732, 0.9981, 6);
  check_ticks_cover(0, 1, 6);
  check_ticks_cover(1e-5, 3e-5, 6);
  check_ticks_cover(-3.2, -0.4, 6);
  check_ticks_cover(-1.5, 2.5, 7);
  check_ticks_cover(0.05, 2.3, 6);
  check_ticks_cover(123456, 987654, 5);
  check_ticks_cover(1e-300, 7e-300, 6);
  check_ticks_cover(0.999001, 0.999002, 6);

  CHECK(labels(nice_ticks(0.8732, 0.9981, 6)) == std::vector<std::string>{"0.85", "0.90", "0.95", "1.00"});
  CHECK(labels(nice_ticks(0, 1, 6)) == std::vector<std::string>{"0", "0.2", "0.4", "0.6", "0.8", "1.0"});
  CHECK(labels(nice_ticks(1e-5, 3e-5, 6)) ==
        std::vector<std::string>{"1.0e-05", "1.5e-05", "2.0e-05", "2.5e-05", "3.0e-05"});
  CHECK(labels(nice_ticks(-3.2, -0.4, 6)) == std::vector<std::string>{"-4", "-3", "-2", "-1", "0"});
}

TEST_CASE("a log axis has a tick at each decade, or every 2nd, 5th, ... when there are many", "[plot]") {
  Ticks lr = log_ticks(1e-5, 1e-3, 6);
  CHECK(labels(lr).size() == 3);
  CHECK(lr.values.front() == Approx(1e-5));
  CHECK(lr.values.back() == Approx(1e-3));
  CHECK(log_tick_label(lr.values[1], lr) == "1e-4");
  Ticks loss = log_ticks(0.003, 2.3, 6);
  std::vector<std::string> loss_labels;
  for (double v : loss.values) loss_labels.push_back(log_tick_label(v, loss));
  CHECK(loss_labels == std::vector<std::string>{"0.001", "0.01", "0.1", "1", "10"});
  Ticks wide = log_ticks(1e-30, 1e10, 6);
  CHECK(wide.step == 10);
  CHECK(wide.values.size() <= 6);
  CHECK(wide.values.front() <= 1e-30);
  CHECK(wide.values.back() >= 1e10);
}

TEST_CASE("a single value gets round ticks around it, in the middle", "[plot]") {
  Ticks ticks = nice_ticks(0.93, 0.93, 6);
  REQUIRE(ticks.values.size() >= 3);
  CHECK(is_round_step(ticks.step));
  CHECK(ticks.values.front() < 0.93);
  CHECK(ticks.values.back() > 0.93);
  Ticks zero = nice_ticks(0, 0, 6);
  CHECK(zero.values.front() < 0);
  CHECK(zero.values.back() > 0);
  Ticks negative = nice_ticks(-42, -42, 6);
  CHECK(negative.values.front() < -42);
  CHECK(negative.values.back() > -42);
}

TEST_CASE("epoch ticks are integers", "[plot]") {
  Ticks run = nice_ticks(1, 25, 12, true);
  CHECK(run.step == 5);
  CHECK(labels(run) == std::vector<std::string>{"0", "5", "10", "15", "20", "25"});
  Ticks one = nice_ticks(3, 3, 12, true);
  CHECK(labels(one) == std::vector<std::string>{"2", "3", "4"});
  Ticks two = nice_ticks(1, 2, 12, true);
  CHECK(two.step == 1);
  Ticks long_run = nice_ticks(0, 347, 12, true);
  CHECK(long_run.step == 50);
  for (double v : long_run.values) CHECK(v == std::round(v));
}

TEST_CASE("metrics of similar scale share a panel, others get their own", "[plot]") {
  auto series = [](const std::string& name, std::vector<double> values) {
    PlotSeries s{name, {}};
    for (std::size_t i = 0; i < values.size(); ++i) s.points.emplace_back(static_cast<std::int64_t>(i + 1), values[i]);
    return s;
  };
  std::vector<PlotSeries> all{
      series("val_acc", {0.5, 0.8, 0.99}),   series("train_loss", {2.3, 0.6, 0.05}),
      series("best_acc", {0, 0.5, 0.98}),    series("lr", {1e-3, 1e-4, 1e-5}),
      series("val_loss", {1.9, 0.9, 0.4}),   series("batch", {0, 0, 0}),
      series("seed", {42, 42, 42}),
  };
  auto panels = group_by_scale(all);
  // batch (always 0) joins the accuracies: their axis, from best_acc's 0, holds it.
  CHECK(panels == std::vector<std::vector<std::size_t>>{{0, 2, 5}, {1, 4}, {3}, {6}});
}

TEST_CASE("the model takes each epoch's most recent row, its named metrics, and the marks at their states' epochs", "[plot]") {
  HistoryPlotData data;
  // Epoch 3 saved twice (a restarted run): the later commit wins.
  data.rows = {epoch_row(1, 1, 1), epoch_row(2, 2, 2), epoch_row(3, 3, 3), epoch_row(5, 3, 6)};
  data.metrics = {{1, "epoch", 1}, {1, "val_acc", 0.5}, {1, "train_loss", 2.0}, {2, "val_acc", 0.6},
                  {2, "train_loss", NAN}, {3, "val_acc", 0.1}, {5, "val_acc", 0.7}, {5, "train_loss", 1.0}};
  CheckpointRecord interrupt;
  interrupt.id = 4;
  interrupt.kind = CheckpointKind::interrupt;
  interrupt.state_epoch = 2;
  interrupt.commit_seq = 4;
  CheckpointRecord best;
  best.id = 6;
  best.kind = CheckpointKind::best;
  best.metric = 0.7;
  best.state_epoch = 3;
  best.commit_seq = 7;
  data.rows.push_back(interrupt);
  data.rows.push_back(best);
  data.events = {event(1, "saved", 1), event(2, "saved", 2), event(3, "interrupted", 4), event(4, "resumed_from", 4),
                 event(5, "saved", 5), event(6, "new_best", 6)};

  HistoryModel model = history_model(data);
  REQUIRE(model.series.size() == 2);  // "epoch" is the x axis, not a series
  const std::size_t acc = series_named(model, "val_acc"), loss = series_named(model, "train_loss");
  using Points = std::vector<std::pair<std::int64_t, double>>;
  CHECK(model.series[acc].points == Points{{1, 0.5}, {2, 0.6}, {3, 0.7}});
  CHECK(model.series[loss].points == Points{{1, 2.0}, {3, 1.0}});  // the NaN left out
  check_one_interrupt_one_best(model, /*resumed_epoch=*/2, /*best_epoch=*/3, acc);
}

TEST_CASE("an index without named metrics plots the metric column as one series", "[plot]") {
  HistoryPlotData data;
  data.rows = {epoch_row(1, 1, 1, 0.4), epoch_row(2, 2, 2, 0.6), epoch_row(3, 3, 0, 0.9)};  // 3: never committed
  data.rows[0].state_epoch.reset();
  CheckpointRecord best;
  best.id = 4;
  best.kind = CheckpointKind::best;
  best.metric = 0.6;
  best.commit_seq = 3;
  data.rows.push_back(best);
  data.events = {event(1, "saved", 1), event(2, "saved", 2), event(3, "new_best", 4)};
  HistoryModel model = history_model(data);
  REQUIRE(model.series.size() == 1);
  CHECK(model.series[0].name == "metric");
  CHECK(model.series[0].points == std::vector<std::pair<std::int64_t, double>>{{1, 0.4}, {2, 0.6}});
  REQUIRE(model.new_bests.size() == 1);
  CHECK(model.new_bests[0].epoch == 2);  // no state epoch: the last epoch saved before it
  CHECK(model.new_bests[0].series == std::size_t{0});
}

TEST_CASE("a plot written as PNG has the layout's size and every series' color in its panel", "[plot]") {
  TestDir dir("plot");
  const HistoryPlotData data = realistic_run();
  const HistoryModel model = history_model(data);
  const PlotLayout layout = history_layout(model);
  REQUIRE(model.series.size() == 4);
  REQUIRE(model.panels.size() == 3);  // val_acc + best_acc, train_loss, lr
  write_history_plot(data, dir / "history.png");

  std::unique_ptr<cairo_surface_t, PngDeleter> image(cairo_image_surface_create_from_png((dir / "history.png").c_str()));
  REQUIRE(cairo_surface_status(image.get()) == CAIRO_STATUS_SUCCESS);
  CHECK(cairo_image_surface_get_width(image.get()) == layout.width);
  CHECK(cairo_image_surface_get_height(image.get()) == layout.height);
  for (std::size_t p = 0; p < model.panels.size(); ++p) {
    for (std::size_t n = 0; n < model.panels[p].size(); ++n) {
      INFO("series " << model.series[model.panels[p][n]].name << " in panel " << p);
      CHECK(pixels_of(image.get(), layout.panels[p], series_color(n)) > 20);
    }
    // Each panel has only its own series: no second color where there is one series.
    if (model.panels[p].size() == 1) CHECK(pixels_of(image.get(), layout.panels[p], series_color(1)) == 0);
  }
  // The interrupt and the resume from it fall on one epoch; both show in the strip.
  CHECK(pixels_of(image.get(), layout.events, {0xd6 / 255.0, 0x27 / 255.0, 0x28 / 255.0}) > 10);
  CHECK(pixels_of(image.get(), layout.events, {0x2c / 255.0, 0xa0 / 255.0, 0x2c / 255.0}) > 10);
}

TEST_CASE("a plot written as SVG names the metrics on the axes and in the legend, and labels the marks", "[plot]") {
  TestDir dir("plot");
  write_history_plot(realistic_run(), dir / "history.svg");
  const std::string svg = read_bytes(dir / "history.svg");
  CHECK_THAT(svg, Catch::StartsWith("<?xml") && Catch::Contains("</svg>"));
  CHECK_THAT(svg, Catch::Contains("<title>ckpt history: checkpoints</title>"));
  for (const char* label : {"val_acc, best_acc", "train_loss", "lr (log scale)", "epoch"}) {
    CHECK(has_text(svg, "axis-label", label));
  }
  for (const char* name : {"val_acc", "best_acc", "train_loss", "lr"}) CHECK(has_text(svg, "legend", name));
  for (const char* lane : {"new best", "interrupted", "resumed"}) CHECK(has_text(svg, "lane", lane));
  CHECK(!has_text(svg, "legend", "epoch"));
  for (const char* tick : {"1e-5", "1e-4", "1e-3", "0.5", "2.0", "25"}) CHECK(has_text(svg, "tick", tick));
}

TEST_CASE("names from a payload are drawn printable and escaped in the SVG", "[plot]") {
  TestDir dir("plot");
  HistoryPlotData data;
  data.title = "run <1> & \x1b[2J";
  data.rows = {epoch_row(1, 1, 1), epoch_row(2, 2, 2)};
  data.metrics = {{1, "a<b>&\"c\"\xff", 1}, {2, "a<b>&\"c\"\xff", 2}};
  write_history_plot(data, dir / "odd.svg");
  write_history_plot(data, dir / "odd.png");
  const std::string svg = read_bytes(dir / "odd.svg");
  CHECK_THAT(svg, Catch::Contains("a&lt;b&gt;&amp;&quot;c&quot;\\xff") && Catch::Contains("run &lt;1&gt; &amp; \\x1b[2J"));
  CHECK_THAT(svg, !Catch::Contains("\x1b"));
}

TEST_CASE("an empty history still writes a plot that says so", "[plot]") {
  TestDir dir("plot");
  HistoryPlotData data;
  data.title = "empty";
  write_history_plot(data, dir / "empty.svg");
  CHECK_THAT(read_bytes(dir / "empty.svg"), Catch::Contains("no epoch checkpoint with a metric yet"));
  write_history_plot(data, dir / "empty.png");
  CHECK(read_bytes(dir / "empty.png").substr(1, 3) == "PNG");
}

TEST_CASE("a plot to an unknown extension or an unwritable path fails naming the file", "[plot]") {
  TestDir dir("plot");
  const HistoryPlotData data = realistic_run();
  for (const char* name : {"history.pdf", "history", "history.svg.txt"}) {
    try {
      write_history_plot(data, dir / name);
      FAIL("no error for " << name);
    } catch (const InvalidArgument& e) {
      CHECK_THAT(e.what(), Catch::Contains(name) && Catch::Contains(".svg or .png"));
    }
    CHECK(!std::filesystem::exists(dir / name));
  }
  const auto unwritable = dir / "no such dir" / "history.png";
  try {
    write_history_plot(data, unwritable);
    FAIL("no error");
  } catch (const IoError& e) {
    CHECK_THAT(e.what(), Catch::Contains(unwritable.string()) && Catch::Contains("No such file or directory"));
    CHECK(e.path() == unwritable);
  }
  CHECK_THROWS_AS(write_history_plot(data, dir.path()), InvalidArgument);  // a directory, no extension
  std::filesystem::create_directory(dir / "taken.svg");
  CHECK_THROWS_AS(write_history_plot(data, dir / "taken.svg"), IoError);
}

TEST_CASE("ckpt history --plot writes PNG and SVG by the extension and refuses another one", "[plot][cli]") {
  TestDir dir("plot_cli");
  {
    CheckpointStore store(dir / "checkpoints", StoreOptions{3});
    for (int epoch = 1; epoch <= 4; ++epoch) {
      save_bytes(store, CheckpointKind::epoch, epoch, zip_payload(epoch), 0.5 + epoch * 0.1);
    }
  }
  const std::string checkpoints = shell_quote((dir / "checkpoints").string());
  auto png = run_command(std::string(CKPT_CLI) + " history " + checkpoints + " --plot " + shell_quote((dir / "h.png").string()) + " 2>&1");
  CHECK(png.exit_code == 0);
  CHECK(read_bytes(dir / "h.png").substr(1, 3) == "PNG");
  auto svg = run_command(std::string(CKPT_CLI) + " history " + checkpoints + " --plot " + shell_quote((dir / "h.svg").string()) + " 2>&1");
  CHECK(svg.exit_code == 0);
  CHECK_THAT(read_bytes(dir / "h.svg"), Catch::Contains("class=\"legend\"") && Catch::Contains(">metric<"));
  auto pdf = run_command(std::string(CKPT_CLI) + " history " + checkpoints + " --plot " + shell_quote((dir / "h.pdf").string()) + " 2>&1");
  CHECK(pdf.exit_code == 2);
  CHECK_THAT(pdf.output, Catch::Contains("h.pdf") && Catch::Contains(".svg or .png"));
}

TEST_CASE("ckpt history --plot draws the named metrics a store recorded, with the interrupt and the resume from it", "[plot][cli]") {
  TestDir dir("plot_cli");
  const auto checkpoints = dir / "checkpoints";
  auto save = [](CheckpointStore& store, CheckpointKind kind, std::int64_t state_epoch, double acc, double loss) {
    SaveRequest request;
    request.kind = kind;
    if (kind == CheckpointKind::epoch) request.epoch = state_epoch;
    request.metric = acc;
    request.metric_source = "val_acc in the state";
    request.state_epoch = state_epoch;
    request.metrics = {{"epoch", static_cast<double>(state_epoch)}, {"val_acc", acc}, {"train_loss", loss}};
    const std::string bytes = zip_payload(static_cast<int>(state_epoch * 10 + static_cast<int>(kind)));
    return store.save(request, [&](ByteSink& sink) { sink.write(bytes.data(), bytes.size()); });
  };
  {
    CheckpointStore store(checkpoints, StoreOptions{3});
    for (int epoch = 1; epoch <= 3; ++epoch) {
      save(store, CheckpointKind::epoch, epoch, 0.5 + 0.1 * epoch, 2.0 / epoch);
      if (epoch == 2) save(store, CheckpointKind::best, epoch, 0.7, 1.0);
    }
    save(store, CheckpointKind::interrupt, 3, 0.8, 0.66);  // interrupted during epoch 4
  }
  {
    CheckpointStore store(checkpoints, StoreOptions{3});
    REQUIRE(store.load_latest());  // resumed from the interrupt checkpoint
    for (int epoch = 4; epoch <= 6; ++epoch) save(store, CheckpointKind::epoch, epoch, 0.5 + 0.07 * epoch, 2.0 / epoch);
  }

  CheckpointReader reader(checkpoints);
  const HistoryModel model = history_model({reader.checkpoints(true), reader.events(), reader.metrics(), "run"});
  REQUIRE(model.series.size() == 2);
  CHECK(model.series[series_named(model, "val_acc")].points.size() == 6);  // rotated-out epochs included
  check_one_interrupt_one_best(model, /*resumed_epoch=*/3, /*best_epoch=*/2, series_named(model, "val_acc"));

  const auto svg_path = dir / "history.svg";
  auto run = run_command(std::string(CKPT_CLI) + " history " + shell_quote(checkpoints.string()) + " --plot " +
                         shell_quote(svg_path.string()) + " 2>&1");
  CHECK(run.exit_code == 0);
  const std::string svg = read_bytes(svg_path);
  for (const char* name : {"val_acc", "train_loss"}) CHECK(has_text(svg, "legend", name));
  CHECK(!has_text(svg, "legend", "metric"));
  CHECK(has_text(svg, "lane", "interrupted"));
  CHECK(has_text(svg, "lane", "resumed"));
}
