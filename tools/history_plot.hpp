// `ckpt history --plot`: a run's named metrics over epochs, as PNG or SVG.
//
// What is drawn. x is the epoch of the epoch checkpoints (every row ever committed, the
// history included; when several rows have one epoch, as after a restarted run, the most
// recently committed wins). Each named metric of those rows (every numeric top-level
// entry of the saved state: val_acc, train_loss, best_acc, lr, ...; `epoch` itself is the
// x axis and not drawn) is one series. A row without named metrics (an index written
// before they were recorded) contributes its `metric` column as the series "metric".
// Non-finite values (a diverged loss) are left out.
//
// One axis per quantity: stacked panels that share the epoch axis. Series are grouped by
// scale, greedily in the order the metrics first appear: a series joins the first panel
// where every series, itself included, still spans at least a third of the panel's range
// (so accuracy in 0.5..0.99 and best_acc in 0..0.98 share a panel; a loss in 0.05..2.3 or
// a learning rate in 1e-5..1e-3 gets its own); a series with one value joins the first
// panel whose axis contains that value. Any number of metrics works: each panel is as
// tall as its legend needs, and the image grows by one panel per group. A hostile index
// could name thousands of metrics, so at most kMaxSeries series are drawn; the title
// says how many were left out.
//
// Axes: ticks at multiples of 1, 2 or 5 x 10^k covering the data (the first tick at or
// below the minimum, the last at or above the maximum), integer ticks on the epoch axis,
// each y axis labelled with its metrics' names, the epoch axis with "epoch". A panel
// whose values are all positive and span two decades or more (a learning rate's
// schedule) is drawn on a log scale with a tick per decade, and says so on its axis. The
// legend is to the right of each panel, never over the data; colors restart in each
// panel, so lines are solid and distinct in every one. Above the panels an event strip
// has one lane each for new bests (a star, at the epoch the best state is of),
// interrupts (a down triangle at the interrupt state's epoch) and resumes (a right
// triangle at the epoch of the checkpoint resumed from), so an interrupt and the resume
// from it stay apart even on one epoch; dashed (interrupt) and dotted (resume) lines
// carry them through the panels, side by side when they coincide. A new best is also
// starred on the series whose value at that epoch is the best's metric. Epochs the index
// does not know are the last epoch saved before the event.
//
// Drawing: cairo (Debian's libcairo2-dev), one drawing code for both formats: its SVG
// surface for .svg and its image surface with cairo_surface_write_to_png for .png. It is
// mature, packaged everywhere, and needs nothing beyond what comes with it (fonts
// through fontconfig, PNG through libpng). Only this code links it; ckpt::core stays
// free of it. cairo's SVG draws text as glyph
// outlines, so the SVG also carries each string as transparent <text> at the same place
// (class "title", "axis-label", "tick", "legend", "lane", "note"): it can be searched,
// selected and read by a screen reader, and it renders the same.
//
// Untrusted text: metric names and the title come from payloads and the command line;
// they are drawn through format::printable (valid UTF-8, no control characters) and
// shortened with an ellipsis to the room they have.
//
// Thread safety: the functions are pure, except write_history_plot, which writes only
// the file it is given and, when done, releases cairo's and fontconfig's process-wide
// font caches (so that leak checkers see nothing at exit): REQUIRES: no other thread uses
// cairo or fontconfig meanwhile (true of the ckpt tool).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ckpt/reader.hpp"
#include "ckpt/store.hpp"

namespace ckpt::cli {

struct HistoryPlotData {
  std::vector<CheckpointRecord> rows;  // reader.checkpoints(true)
  std::vector<CheckpointEvent> events;
  std::vector<NamedMetric> metrics;
  std::string title;
};

// Writes the plot to `out`; the format follows its extension (.svg or .png).
// Throws ckpt::InvalidArgument for another extension, ckpt::IoError naming the file when it cannot be written.
// REQUIRES: no other thread uses cairo or fontconfig meanwhile (see Thread safety).
void write_history_plot(const HistoryPlotData& data, const std::filesystem::path& out);

// ---- the pieces, pure, for tests ----

// Round ticks covering [lo, hi]: values = first, first + step, ..., with step 1, 2 or 5 x
// 10^k (at least 1 when `integer`), the smallest such step for which at most `max_ticks`
// ticks cover the range; values.front() <= lo and values.back() >= hi. A single value
// (lo == hi) gets a range around it. REQUIRES: lo <= hi, both finite, max_ticks >= 2.
struct Ticks {
  double step = 1;
  std::vector<double> values;
};
Ticks nice_ticks(double lo, double hi, int max_ticks, bool integer = false);
// A panel is drawn on a log scale when all its values are positive and span at least
// two decades (max >= 100 min: a learning rate's schedule, a loss over a long run); its
// axis label says "(log scale)". Its ticks are powers of ten, every decade or every 2nd,
// 5th, 10th ... (`step`, in decades), covering [lo, hi]. REQUIRES: 0 < lo <= hi.
Ticks log_ticks(double lo, double hi, int max_ticks);
// "0.01", "1", "100" when every tick is within 1e-3..1e4, else "1e-5", "1e6".
std::string log_tick_label(double value, const Ticks& ticks);

// The label of one of `ticks`: as many decimals as the step needs ("0.85", "2", "-0.5");
// in scientific notation ("1.5e-05") on an axis whose largest tick is below 1e-3 or from
// 1e6 on.
std::string tick_label(double value, const Ticks& ticks);

struct PlotSeries {
  std::string name;
  std::vector<std::pair<std::int64_t, double>> points;  // (epoch, value), by epoch
};
struct PlotMark {
  std::int64_t epoch = 0;
  std::optional<std::size_t> series;  // new bests: the series starred, if one matches
  double value = 0;                   // new bests: the best's metric
};
struct HistoryModel {
  std::vector<PlotSeries> series;              // in the order the metrics first appear
  std::vector<std::vector<std::size_t>> panels;  // indexes into series, top panel first
  std::vector<PlotMark> new_bests, interrupts, resumes;
  std::size_t series_left_out = 0;             // beyond kMaxSeries
};
constexpr std::size_t kMaxSeries = 64;

// What write_history_plot draws, before any drawing.
HistoryModel history_model(const HistoryPlotData& data);
// The panels' grouping rule above, on series in their order.
std::vector<std::vector<std::size_t>> group_by_scale(const std::vector<PlotSeries>& series);

struct Rgb {
  double r = 0, g = 0, b = 0;  // 0..1
};
// The color of the n-th series of a panel (an 8-color palette without the marks' red and
// green; past 8 the colors repeat with a dash pattern). Each panel has its own legend, so
// colors restart in each: a panel's lines are solid and distinct as long as it can be.
Rgb series_color(std::size_t n);

struct PlotRect {
  double x = 0, y = 0, width = 0, height = 0;
};
struct PlotLayout {
  int width = 0, height = 0;  // pixels of the PNG; SVG user units
  PlotRect events;            // the event strip
  std::vector<PlotRect> panels;  // the data areas, as model.panels
};
PlotLayout history_layout(const HistoryModel& model);

}  // namespace ckpt::cli
