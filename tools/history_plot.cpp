#include "history_plot.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>

namespace ckpt::cli {

namespace {

constexpr double kWidth = 800, kHeight = 420, kLeft = 70, kRight = 30, kTop = 50, kBottom = 60;

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

}  // namespace

std::string history_svg(const std::vector<CheckpointRecord>& rows, const std::vector<CheckpointEvent>& events,
                        const std::string& title) {
  // The metric of each epoch (the last save of an epoch wins), and where interrupts and
  // resumes happened, placed at the epoch most recently saved before them.
  std::map<std::int64_t, double> metric_by_epoch;
  std::map<std::int64_t, const CheckpointRecord*> by_id;
  for (const auto& row : rows) {
    by_id[row.id] = &row;
    if (row.kind == CheckpointKind::epoch && row.metric && row.status != "pending" && row.status != "aborted") {
      metric_by_epoch[*row.epoch] = *row.metric;
    }
  }
  std::vector<std::pair<double, double>> bests;  // (epoch, metric)
  std::vector<double> interrupts, resumes;
  double last_epoch = metric_by_epoch.empty() ? 0 : static_cast<double>(metric_by_epoch.begin()->first);
  for (const auto& event : events) {
    const CheckpointRecord* row = event.checkpoint_id && by_id.count(*event.checkpoint_id) ? by_id[*event.checkpoint_id] : nullptr;
    if (event.event == "saved" && row && row->kind == CheckpointKind::epoch) last_epoch = static_cast<double>(*row->epoch);
    if (event.event == "new_best" && row && row->metric) bests.emplace_back(last_epoch, *row->metric);
    if (event.event == "interrupted") interrupts.push_back(last_epoch + 0.5);
    if (event.event == "resumed_from") resumes.push_back(row && row->epoch ? static_cast<double>(*row->epoch) : last_epoch + 0.5);
  }

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"28\" font-size=\"16\">{3}</text>\n",
      kWidth, kHeight, kLeft, escape(title));
  if (metric_by_epoch.empty()) {
    svg += fmt::format("<text x=\"{}\" y=\"{}\">no epoch checkpoint with a metric yet</text>\n</svg>\n", kLeft, kHeight / 2);
    return svg;
  }
  double x_min = static_cast<double>(metric_by_epoch.begin()->first), x_max = static_cast<double>(metric_by_epoch.rbegin()->first);
  double y_min = INFINITY, y_max = -INFINITY;
  for (const auto& [epoch, metric] : metric_by_epoch) y_min = std::min(y_min, metric), y_max = std::max(y_max, metric);
  for (const auto& [epoch, metric] : bests) y_min = std::min(y_min, metric), y_max = std::max(y_max, metric);
  if (x_max == x_min) x_max = x_min + 1;
  if (y_max == y_min) y_max = y_min + 1;
  const double pad = (y_max - y_min) * 0.08;
  y_min -= pad, y_max += pad;
  auto x = [&](double epoch) { return kLeft + (epoch - x_min) / (x_max - x_min) * (kWidth - kLeft - kRight); };
  auto y = [&](double metric) { return kHeight - kBottom - (metric - y_min) / (y_max - y_min) * (kHeight - kTop - kBottom); };

  // Axes with five ticks each.
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", kLeft, kHeight - kBottom, kWidth - kRight);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", kLeft, kTop, kHeight - kBottom);
  for (int i = 0; i <= 4; ++i) {
    double epoch = x_min + (x_max - x_min) * i / 4, metric = y_min + (y_max - y_min) * i / 4;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.0f}</text>\n", x(epoch), kHeight - kBottom + 18, epoch);
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.4g}</text>\n", kLeft - 6, y(metric) + 4, metric);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">epoch</text>\n", (kLeft + kWidth - kRight) / 2, kHeight - 18);
  svg += fmt::format("<text x=\"16\" y=\"{0}\" transform=\"rotate(-90 16 {0})\" text-anchor=\"middle\">metric</text>\n", (kTop + kHeight - kBottom) / 2);

  for (double at : interrupts) {
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>\n",
                       x(at), kTop, kHeight - kBottom);
  }
  for (double at : resumes) {
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#2ca02c\" stroke-dasharray=\"1 3\"/>\n",
                       x(at), kTop, kHeight - kBottom);
  }
  std::string points;
  for (const auto& [epoch, metric] : metric_by_epoch) points += fmt::format("{:.1f},{:.1f} ", x(static_cast<double>(epoch)), y(metric));
  svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n", points);
  for (const auto& [epoch, metric] : metric_by_epoch) {
    svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\" fill=\"#1f77b4\"/>\n", x(static_cast<double>(epoch)), y(metric));
  }
  for (const auto& [epoch, metric] : bests) {
    svg += fmt::format("<path d=\"M {0:.1f} {1:.1f} l 5 -9 l 5 9 z\" transform=\"translate(-5 3)\" fill=\"#ff7f0e\"/>\n", x(epoch), y(metric));
  }
  // Legend, bottom right: metrics usually rise, so the bottom right is usually empty.
  double lx = kWidth - kRight - 210;
  const double legend_top = kHeight - kBottom - 78;
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"205\" height=\"68\" fill=\"white\" stroke=\"#ccc\" opacity=\"0.9\"/>\n", lx, legend_top);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"{3}\" y=\"{4}\">metric of epoch checkpoints</text>\n", lx + 8, legend_top + 14, lx + 28, lx + 34, legend_top + 18);
  svg += fmt::format("<path d=\"M {} {} l 5 -9 l 5 9 z\" fill=\"#ff7f0e\"/><text x=\"{}\" y=\"{}\">new best</text>\n", lx + 13, legend_top + 34, lx + 34, legend_top + 33);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/><text x=\"{3}\" y=\"{4}\">interrupted</text>\n", lx + 8, legend_top + 44, lx + 28, lx + 34, legend_top + 48);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#2ca02c\" stroke-dasharray=\"1 3\"/><text x=\"{3}\" y=\"{4}\">resumed</text>\n", lx + 110, legend_top + 44, lx + 130, lx + 136, legend_top + 48);
  svg += "</svg>\n";
  return svg;
}

}  // namespace ckpt::cli
