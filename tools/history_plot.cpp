#include "history_plot.hpp"

#include <cairo-svg.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <limits>
#include <map>
#include <memory>
#include <unordered_map>

#include "ckpt/errors.hpp"
#include "format/printable.hpp"

namespace ckpt::cli {

namespace {

// ---- layout, in pixels (SVG user units) ----
constexpr double kWidth = 960;
constexpr double kPlotLeft = 86;                 // tick labels and the y axis label to the left
constexpr double kLegendWidth = 196;             // the legend column right of the panels
constexpr double kPlotRight = kWidth - kLegendWidth - 14;
constexpr double kTitleBaseline = 30;
constexpr double kStripTop = 48;
constexpr double kLaneHeight = 17;
constexpr int kLanes = 3;                        // new best, interrupted, resumed
constexpr double kStripPanelGap = 12;
constexpr double kPanelGap = 18;
constexpr double kPanelHeight = 190, kPanelHeightMany = 150;  // the latter from 5 panels on
constexpr double kLegendLine = 18;
constexpr double kBottom = 52;                   // epoch tick labels and the axis label
constexpr double kPadX = 10, kPadY = 7;          // data inside the frame, off its edges
constexpr double kTickFont = 11, kLabelFont = 12, kLegendFont = 12, kTitleFont = 16;
constexpr std::size_t kMaxNameChars = 120;       // code points of a name before measuring

// A series shares a panel only while every member spans at least this much of the
// panel's range (the header's rule).
constexpr double kShareFraction = 1.0 / 3.0;

Rgb hex(unsigned rgb) { return {((rgb >> 16) & 0xff) / 255.0, ((rgb >> 8) & 0xff) / 255.0, (rgb & 0xff) / 255.0}; }

const Rgb kInterruptColor = hex(0xd62728), kResumeColor = hex(0x2ca02c);
const Rgb kBestFill = hex(0xf5c518), kBestStroke = hex(0x6b5200);
const Rgb kFrame = hex(0x9a9a9a), kGrid = hex(0xe8e8e8), kText = hex(0x222222), kMuted = hex(0x555555);

struct Range {
  double lo = INFINITY, hi = -INFINITY;
  void add(double v) { lo = std::min(lo, v), hi = std::max(hi, v); }
  void add(const Range& r) { lo = std::min(lo, r.lo), hi = std::max(hi, r.hi); }
  bool empty() const { return lo > hi; }
  double width() const { return hi - lo; }
};

Range range_of(const PlotSeries& series) {
  Range r;
  for (const auto& point : series.points) r.add(point.second);
  return r;
}

bool is_log_scale(const Range& values) { return values.lo > 0 && values.hi >= 100 * values.lo; }

int y_tick_budget(double panel_height) { return std::clamp(static_cast<int>(panel_height / 32) + 1, 3, 9); }

// ---- text ----

enum class Align { left, center, right };

// A string as drawn, kept for the SVG's text layer.
struct TextItem {
  std::string text, cls;
  double x = 0, y = 0, size = 0, width = 0;  // left end of the baseline (before rotation)
  bool bold = false, vertical = false;
  double pivot_x = 0, pivot_y = 0;  // vertical: rotated -90 degrees about this point
};

// Draws text with cairo's toy font API (fontconfig's "sans-serif": DejaVu Sans on Debian)
// and records each string.
class Painter {
 public:
  explicit Painter(cairo_t* cr) : cr_(cr) {}

  double width_of(const std::string& text, double size, bool bold) {
    font(size, bold);
    cairo_text_extents_t extents;
    cairo_text_extents(cr_, text.c_str(), &extents);
    return extents.x_advance;
  }

  // `text` must be printable (valid UTF-8: cairo refuses anything else and stops drawing).
  // Shortened with an ellipsis to max_width when that is > 0. The baseline is at y; x is
  // where `align` puts it. Vertical text reads bottom to top, centered on (x, y) along
  // the axis when align is center.
  void text(std::string text, double x, double y, double size, Align align, const char* cls, bool bold = false,
            double max_width = 0, bool vertical = false) {
    if (max_width > 0) text = fit(text, size, bold, max_width);
    const double w = width_of(text, size, bold);
    const double dx = align == Align::left ? 0 : align == Align::center ? -w / 2 : -w;
    TextItem item{text, cls, 0, 0, size, w, bold, vertical, x, y};
    cairo_save(cr_);
    if (vertical) {
      cairo_translate(cr_, x, y);
      cairo_rotate(cr_, -M_PI / 2);
      cairo_move_to(cr_, dx, 0);
      item.x = dx, item.y = 0;
    } else {
      cairo_move_to(cr_, x + dx, y);
      item.x = x + dx, item.y = y;
    }
    cairo_show_text(cr_, text.c_str());
    cairo_restore(cr_);
    texts_.push_back(std::move(item));
  }

  const std::vector<TextItem>& texts() const { return texts_; }

  // The longest prefix (whole code points) that fits with "…" after it.
  std::string fit(const std::string& text, double size, bool bold, double max_width) {
    if (width_of(text, size, bold) <= max_width) return text;
    std::vector<std::size_t> cuts;  // byte offsets of code point starts
    for (std::size_t i = 1; i < text.size(); ++i) {
      if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) cuts.push_back(i);
    }
    std::size_t lo = 0, hi = cuts.size();  // cuts[lo - 1] fits (0: nothing does)
    while (lo < hi) {
      std::size_t mid = (lo + hi + 1) / 2;
      if (width_of(text.substr(0, cuts[mid - 1]) + "\u2026", size, bold) <= max_width) lo = mid;
      else hi = mid - 1;
    }
    return (lo == 0 ? std::string() : text.substr(0, cuts[lo - 1])) + "\u2026";
  }

 private:
  void font(double size, bool bold) {
    cairo_select_font_face(cr_, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr_, size);
  }

  cairo_t* cr_;
  std::vector<TextItem> texts_;
};

// Printable and not absurdly long: a name from a payload is drawn, never trusted.
std::string drawable(const std::string& raw) {
  std::string text = format::printable(raw);
  std::size_t points = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80 && ++points > kMaxNameChars) {
      return text.substr(0, i) + "\u2026";
    }
  }
  return text;
}

std::string xml_escape(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    // U+FFFE and U+FFFF are valid UTF-8 but not XML characters.
    if (c == '\xef' && i + 2 < text.size() && text[i + 1] == '\xbf' && (text[i + 2] == '\xbe' || text[i + 2] == '\xbf')) {
      out += '?', i += 2;
    } else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

// ---- shapes ----

void set_color(cairo_t* cr, Rgb c, double alpha = 1) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

void series_dash(cairo_t* cr, std::size_t i) {
  static const double kDashes[][4] = {{0, 0, 0, 0}, {7, 3, 0, 0}, {2, 2, 0, 0}, {8, 3, 2, 3}};
  const auto& dash = kDashes[(i / 8) % 4];
  const int n = dash[0] == 0 ? 0 : dash[2] == 0 ? 2 : 4;
  cairo_set_dash(cr, dash, n, 0);
}

void star(cairo_t* cr, double cx, double cy, double r) {
  for (int i = 0; i < 10; ++i) {
    const double a = -M_PI / 2 + i * M_PI / 5, radius = i % 2 ? r * 0.45 : r;
    if (i == 0) cairo_move_to(cr, cx + radius * std::cos(a), cy + radius * std::sin(a));
    else cairo_line_to(cr, cx + radius * std::cos(a), cy + radius * std::sin(a));
  }
  cairo_close_path(cr);
}

void draw_star(cairo_t* cr, double cx, double cy, double r) {
  star(cr, cx, cy, r);
  set_color(cr, kBestFill);
  cairo_fill_preserve(cr);
  set_color(cr, kBestStroke);
  cairo_set_line_width(cr, 1);
  cairo_set_dash(cr, nullptr, 0, 0);
  cairo_stroke(cr);
}

void draw_down_triangle(cairo_t* cr, double cx, double cy, double r) {
  cairo_move_to(cr, cx - r, cy - r * 0.8);
  cairo_line_to(cr, cx + r, cy - r * 0.8);
  cairo_line_to(cr, cx, cy + r * 0.9);
  cairo_close_path(cr);
  set_color(cr, kInterruptColor);
  cairo_fill(cr);
}

void draw_right_triangle(cairo_t* cr, double cx, double cy, double r) {
  cairo_move_to(cr, cx - r * 0.8, cy - r);
  cairo_line_to(cr, cx + r * 0.9, cy);
  cairo_line_to(cr, cx - r * 0.8, cy + r);
  cairo_close_path(cr);
  set_color(cr, kResumeColor);
  cairo_fill(cr);
}

void mark_line_style(cairo_t* cr, bool interrupt) {
  static const double kInterruptDash[] = {5, 3}, kResumeDash[] = {1.5, 2.5};
  set_color(cr, interrupt ? kInterruptColor : kResumeColor, 0.9);
  cairo_set_line_width(cr, 1.5);
  cairo_set_dash(cr, interrupt ? kInterruptDash : kResumeDash, 2, 0);
}

// ---- the drawing ----

// Where v is between a and b (0 at a, 1 at b), for any finite doubles: halved first, so
// that b - a cannot overflow.
double fraction(double v, double a, double b) { return (v / 2 - a / 2) / (b / 2 - a / 2); }

struct XAxis {
  Ticks ticks;
  double left = 0, right = 0;
  double at(double epoch) const {
    return left + kPadX + fraction(epoch, ticks.values.front(), ticks.values.back()) * (right - left - 2 * kPadX);
  }
};

XAxis x_axis(const HistoryModel& model) {
  Range epochs;
  for (const auto& series : model.series) {
    for (const auto& point : series.points) epochs.add(static_cast<double>(point.first));
  }
  for (const auto* marks : {&model.new_bests, &model.interrupts, &model.resumes}) {
    for (const auto& mark : *marks) epochs.add(static_cast<double>(mark.epoch));
  }
  if (epochs.empty()) epochs.add(0);
  XAxis axis;
  axis.left = kPlotLeft, axis.right = kPlotRight;
  axis.ticks = nice_ticks(epochs.lo, epochs.hi, std::max(3, static_cast<int>((kPlotRight - kPlotLeft) / 52)), true);
  return axis;
}

// The x of each interrupt and resume mark: side by side where one of each shares an epoch.
double mark_x(const XAxis& axis, const HistoryModel& model, const PlotMark& mark, bool interrupt) {
  const auto& others = interrupt ? model.resumes : model.interrupts;
  const bool shared = std::any_of(others.begin(), others.end(), [&](const PlotMark& m) { return m.epoch == mark.epoch; });
  return axis.at(static_cast<double>(mark.epoch)) + (shared ? (interrupt ? -2.5 : 2.5) : 0);
}

void draw_event_strip(cairo_t* cr, Painter& painter, const HistoryModel& model, const PlotLayout& layout,
                      const XAxis& axis) {
  const PlotRect& strip = layout.events;
  set_color(cr, hex(0xf6f6f6));
  cairo_rectangle(cr, strip.x, strip.y, strip.width, strip.height);
  cairo_fill(cr);
  cairo_set_line_width(cr, 1);
  cairo_set_dash(cr, nullptr, 0, 0);
  set_color(cr, kGrid);
  for (double tick : axis.ticks.values) {
    const double x = std::round(axis.at(tick)) + 0.5;
    cairo_move_to(cr, x, strip.y);
    cairo_line_to(cr, x, strip.y + strip.height);
  }
  for (int lane = 1; lane < kLanes; ++lane) {
    cairo_move_to(cr, strip.x, std::round(strip.y + lane * kLaneHeight) + 0.5);
    cairo_line_to(cr, strip.x + strip.width, std::round(strip.y + lane * kLaneHeight) + 0.5);
  }
  cairo_stroke(cr);
  set_color(cr, kFrame);
  cairo_rectangle(cr, strip.x + 0.5, strip.y + 0.5, strip.width - 1, strip.height - 1);
  cairo_stroke(cr);

  const char* names[kLanes] = {"new best", "interrupted", "resumed"};
  for (int lane = 0; lane < kLanes; ++lane) {
    const double cy = strip.y + (lane + 0.5) * kLaneHeight;
    set_color(cr, kText);
    painter.text(names[lane], kPlotLeft - 8, cy + kTickFont * 0.36, kTickFont, Align::right, "lane");
  }
  for (const auto& mark : model.new_bests) draw_star(cr, axis.at(static_cast<double>(mark.epoch)), strip.y + 0.5 * kLaneHeight, 6);
  // Interrupt and resume markers: in draw(), over their lines.
}

void draw_panel(cairo_t* cr, Painter& painter, const HistoryModel& model, const std::vector<std::size_t>& members,
                const PlotRect& area, const XAxis& axis, bool top, bool bottom) {
  Range values;
  for (std::size_t i : members) values.add(range_of(model.series[i]));
  const bool log = is_log_scale(values);
  const Ticks ticks = log ? log_ticks(values.lo, values.hi, y_tick_budget(area.height))
                          : nice_ticks(values.lo, values.hi, y_tick_budget(area.height));
  auto scaled = [&](double v) { return log ? std::log10(v) : v; };
  const double t0 = scaled(ticks.values.front()), t1 = scaled(ticks.values.back());
  auto y_at = [&](double v) {
    return area.y + area.height - kPadY - fraction(scaled(v), t0, t1) * (area.height - 2 * kPadY);
  };

  // Grid.
  cairo_set_line_width(cr, 1);
  cairo_set_dash(cr, nullptr, 0, 0);
  set_color(cr, kGrid);
  for (double tick : ticks.values) {
    const double y = std::round(y_at(tick)) + 0.5;
    cairo_move_to(cr, area.x, y);
    cairo_line_to(cr, area.x + area.width, y);
  }
  for (double tick : axis.ticks.values) {
    const double x = std::round(axis.at(tick)) + 0.5;
    cairo_move_to(cr, x, area.y);
    cairo_line_to(cr, x, area.y + area.height);
  }
  cairo_stroke(cr);

  // Interrupt and resume lines, behind the data, through the panel and the gap above it
  // (the first panel's: draw()).
  for (bool interrupt : {true, false}) {
    for (const auto& mark : interrupt ? model.interrupts : model.resumes) {
      const double x = mark_x(axis, model, mark, interrupt);
      mark_line_style(cr, interrupt);
      cairo_move_to(cr, x, top ? area.y : area.y - kPanelGap);
      cairo_line_to(cr, x, area.y + area.height);
      cairo_stroke(cr);
    }
  }

  // The series, clipped to the frame.
  cairo_save(cr);
  cairo_rectangle(cr, area.x, area.y, area.width, area.height);
  cairo_clip(cr);
  const double pixels_per_epoch = axis.at(1) - axis.at(0);
  for (std::size_t n = 0; n < members.size(); ++n) {
    const auto& series = model.series[members[n]];
    set_color(cr, series_color(n));
    cairo_set_line_width(cr, 2);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    series_dash(cr, n);
    for (std::size_t k = 0; k < series.points.size(); ++k) {
      const double x = axis.at(static_cast<double>(series.points[k].first)), y = y_at(series.points[k].second);
      if (k == 0) cairo_move_to(cr, x, y);
      else cairo_line_to(cr, x, y);
    }
    cairo_stroke(cr);
    if (pixels_per_epoch >= 7 || series.points.size() == 1) {
      for (const auto& [epoch, value] : series.points) {
        cairo_arc(cr, axis.at(static_cast<double>(epoch)), y_at(value), 3, 0, 2 * M_PI);
        cairo_fill(cr);
      }
    }
  }
  for (const auto& mark : model.new_bests) {
    if (mark.series && std::find(members.begin(), members.end(), *mark.series) != members.end()) {
      draw_star(cr, axis.at(static_cast<double>(mark.epoch)), y_at(mark.value), 6);
    }
  }
  cairo_restore(cr);

  // Frame, ticks, labels.
  cairo_set_dash(cr, nullptr, 0, 0);
  cairo_set_line_width(cr, 1);
  set_color(cr, kFrame);
  cairo_rectangle(cr, area.x + 0.5, area.y + 0.5, area.width - 1, area.height - 1);
  for (double tick : ticks.values) {
    const double y = std::round(y_at(tick)) + 0.5;
    cairo_move_to(cr, area.x - 4, y);
    cairo_line_to(cr, area.x, y);
  }
  if (bottom) {
    for (double tick : axis.ticks.values) {
      const double x = std::round(axis.at(tick)) + 0.5;
      cairo_move_to(cr, x, area.y + area.height);
      cairo_line_to(cr, x, area.y + area.height + 4);
    }
  }
  cairo_stroke(cr);
  set_color(cr, kText);
  for (double tick : ticks.values) {
    painter.text(log ? log_tick_label(tick, ticks) : tick_label(tick, ticks), area.x - 7, y_at(tick) + kTickFont * 0.36,
                 kTickFont, Align::right, "tick");
  }
  if (bottom) {
    for (double tick : axis.ticks.values) {
      painter.text(tick_label(tick, axis.ticks), axis.at(tick), area.y + area.height + 17, kTickFont, Align::center, "tick");
    }
    painter.text("epoch", (area.x + area.x + area.width) / 2, area.y + area.height + 38, kLabelFont, Align::center,
                 "axis-label", true);
  }
  // The names, shortened to the panel's height, and what the scale is, never shortened.
  std::string label;
  for (std::size_t i : members) label += (label.empty() ? "" : ", ") + model.series[i].name;
  const std::string scale = log ? " (log scale)" : "";
  label = painter.fit(label, kLabelFont, true, area.height - 4 - painter.width_of(scale, kLabelFont, true)) + scale;
  painter.text(label, 20, area.y + area.height / 2, kLabelFont, Align::center, "axis-label", true, 0, true);

  // Legend, right of the frame: one line per series, with its stroke and marker.
  double y = area.y + 12;
  const double lx = area.x + area.width + 14;
  for (std::size_t n = 0; n < members.size(); ++n) {
    const std::size_t i = members[n];
    set_color(cr, series_color(n));
    cairo_set_line_width(cr, 2);
    series_dash(cr, n);
    cairo_move_to(cr, lx, y);
    cairo_line_to(cr, lx + 24, y);
    cairo_stroke(cr);
    cairo_arc(cr, lx + 12, y, 3, 0, 2 * M_PI);
    cairo_fill(cr);
    set_color(cr, kText);
    painter.text(model.series[i].name, lx + 31, y + kLegendFont * 0.36, kLegendFont, Align::left, "legend", false,
                 kWidth - lx - 31 - 6);
    y += kLegendLine;
  }
}

void draw(cairo_t* cr, Painter& painter, const HistoryModel& model, const PlotLayout& layout, const std::string& title) {
  set_color(cr, hex(0xffffff));
  cairo_paint(cr);
  set_color(cr, kText);
  // The title shortened to the width, what was left out never.
  const std::string note = model.series_left_out == 0 ? ""
                           : fmt::format(" ({} more metric{} not drawn)", model.series_left_out,
                                         model.series_left_out == 1 ? "" : "s");
  const double room = kWidth - kPlotLeft - 14 - painter.width_of(note, kTitleFont, true);
  painter.text(painter.fit(drawable(title), kTitleFont, true, room) + note, kPlotLeft, kTitleBaseline, kTitleFont,
               Align::left, "title", true);
  if (model.series.empty()) {
    set_color(cr, kMuted);
    painter.text("no epoch checkpoint with a metric yet", kWidth / 2, layout.height / 2.0, 14, Align::center, "note");
    return;
  }
  const XAxis axis = x_axis(model);
  draw_event_strip(cr, painter, model, layout, axis);
  for (std::size_t p = 0; p < model.panels.size(); ++p) {
    draw_panel(cr, painter, model, model.panels[p], layout.panels[p], axis, p == 0, p + 1 == model.panels.size());
  }
  // The interrupt and resume lines from their lanes down to the first panel, and their
  // markers on top.
  for (bool interrupt : {true, false}) {
    for (const auto& mark : interrupt ? model.interrupts : model.resumes) {
      const double x = mark_x(axis, model, mark, interrupt);
      const double lane_y = layout.events.y + (interrupt ? 1.5 : 2.5) * kLaneHeight;
      mark_line_style(cr, interrupt);
      cairo_move_to(cr, x, lane_y);
      cairo_line_to(cr, x, layout.panels.front().y);
      cairo_stroke(cr);
      if (interrupt) draw_down_triangle(cr, x, lane_y, 5.5);
      else draw_right_triangle(cr, x, lane_y, 5.5);
    }
  }
}

// The SVG cairo wrote, with a <title> and the transparent text layer (see the header).
std::string with_text_layer(std::string svg, const std::vector<TextItem>& texts, const std::string& title) {
  std::string layer = "<g id=\"text\" fill=\"#000\" fill-opacity=\"0\" font-family=\"DejaVu Sans, sans-serif\">\n";
  for (const auto& t : texts) {
    const std::string common = fmt::format(
        "class=\"{}\" font-size=\"{}\"{} textLength=\"{:.1f}\" lengthAdjust=\"spacingAndGlyphs\"", t.cls, t.size,
        t.bold ? " font-weight=\"bold\"" : "", t.width);
    if (t.vertical) {
      layer += fmt::format("<text {} x=\"{:.1f}\" y=\"0\" transform=\"translate({:.1f} {:.1f}) rotate(-90)\">{}</text>\n",
                           common, t.x, t.pivot_x, t.pivot_y, xml_escape(t.text));
    } else {
      layer += fmt::format("<text {} x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", common, t.x, t.y, xml_escape(t.text));
    }
  }
  layer += "</g>\n";
  const std::size_t end = svg.rfind("</svg>");
  if (end != std::string::npos) svg.insert(end, layer);
  const std::size_t open = svg.find("<svg");
  const std::size_t open_end = open == std::string::npos ? open : svg.find('>', open);
  if (open_end != std::string::npos) svg.insert(open_end + 1, "\n<title>" + xml_escape(drawable(title)) + "</title>");
  return svg;
}

cairo_status_t append_to_string(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
using Surface = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using Context = std::unique_ptr<cairo_t, ContextDeleter>;

void check(cairo_status_t status, const std::filesystem::path& out) {
  if (status != CAIRO_STATUS_SUCCESS) {
    throw IoError(ErrorCode::io, fmt::format("{}: cannot draw the plot: {}", out.string(), cairo_status_to_string(status)), out);
  }
}

void write_file(const std::filesystem::path& out, const std::string& bytes) {
  std::FILE* file = std::fopen(out.c_str(), "wb");
  int error = file ? 0 : errno;
  if (file) {
    if (std::fwrite(bytes.data(), 1, bytes.size(), file) != bytes.size()) error = errno ? errno : EIO;
    if (std::fclose(file) != 0 && error == 0) error = errno;
  }
  if (error != 0) {
    const ErrorCode code = error == ENOSPC ? ErrorCode::disk_full
                           : error == EACCES || error == EPERM || error == EROFS ? ErrorCode::permission_denied
                                                                                  : ErrorCode::io;
    throw IoError(code, fmt::format("{}: cannot write the plot: {}", out.string(), std::strerror(error)), out, error);
  }
}

// cairo and fontconfig keep process-wide font caches, parts of which LeakSanitizer reports
// at exit (the ASan preset fails a run on any report). The tool draws one plot per
// process, so they are released when a plot is done: the header's REQUIRES. Constructed
// before any cairo object, so that it runs after they are all destroyed.
struct ReleaseFontCaches {
  ~ReleaseFontCaches() {
    cairo_debug_reset_static_data();
    FcFini();
  }
};

std::string lowercase_extension(const std::filesystem::path& out) {
  std::string ext = out.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

}  // namespace

// ---- ticks ----

Ticks nice_ticks(double lo, double hi, int max_ticks, bool integer) {
  max_ticks = std::max(max_ticks, 2);
  if (!(lo < hi)) {
    double half = lo == 0 ? 1 : std::abs(lo) * 0.05;
    if (integer) half = std::max(1.0, std::round(half));
    if (!(lo - half < lo + half)) half = 1;  // a subnormal value
    lo -= half, hi += half;
  }
  const Ticks ends{hi / 2 - lo / 2, {lo, hi}};  // near the limits of double: no round ticks
  const double span = hi - lo;
  if (!std::isfinite(span)) return ends;
  int k = static_cast<int>(std::floor(std::log10(span / (max_ticks - 1)))) - 1;
  if (integer) k = std::max(k, 0);
  for (; k <= 308; ++k) {
    for (int m : {1, 2, 5}) {
      // step = m * 10^k; a negative k as a division, so that ticks are as exact as can be
      // (below 1e-300 the divisor would overflow: then a multiplication).
      const double scale = std::pow(10.0, std::abs(k));
      const bool divide = k < 0 && k >= -300;
      const double step = k >= 0 ? m * scale : divide ? m / scale : m * std::pow(10.0, k);
      if (!(step > 0) || !std::isfinite(step)) continue;
      const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
      if (last - first + 1 > max_ticks) continue;
      Ticks ticks;
      ticks.step = step;
      for (double i = first; i <= last; ++i) ticks.values.push_back(divide ? i * m / scale : i * step);
      if (ticks.values.size() < 2) ticks.values.push_back(ticks.values.back() + step);
      if (!std::isfinite(ticks.values.front()) || !std::isfinite(ticks.values.back())) return ends;
      return ticks;
    }
  }
  return ends;
}

std::string tick_label(double value, const Ticks& ticks) {
  const double step = ticks.step;
  if (std::abs(value) < step * 1e-6) value = 0;
  if (value == 0) return "0";
  double magnitude = 0;
  for (double v : ticks.values) magnitude = std::max(magnitude, std::abs(v));
  // Decimal exponents, clamped: a step or magnitude near double's limits stays an int.
  auto exponent = [](double v) { return static_cast<int>(std::clamp(std::floor(std::log10(v) + 1e-9), -400.0, 400.0)); };
  const int k = exponent(step);
  if (magnitude < 1e-3 || magnitude >= 1e6) return fmt::format("{:.{}e}", value, std::clamp(exponent(magnitude) - k, 0, 16));
  return fmt::format("{:.{}f}", value, std::clamp(-k, 0, 16));
}

Ticks log_ticks(double lo, double hi, int max_ticks) {
  // Decades double can hold: 1e-323 (subnormal) to 1e308.
  const double first = std::max(std::floor(std::log10(lo) + 1e-9), -323.0);
  const double last = std::min(std::ceil(std::log10(hi) - 1e-9), 308.0);
  const Ticks decades = nice_ticks(first, std::max(first, last), max_ticks, true);
  Ticks ticks;
  ticks.step = decades.step;
  for (double e : decades.values) {
    const double value = std::pow(10.0, std::clamp(e, -323.0, 308.0));
    if (ticks.values.empty() || value > ticks.values.back()) ticks.values.push_back(value);
  }
  if (ticks.values.size() < 2) ticks.values = {lo, hi};
  return ticks;
}

std::string log_tick_label(double value, const Ticks& ticks) {
  const bool plain = ticks.values.front() >= 1e-3 * (1 - 1e-9) && ticks.values.back() <= 1e4 * (1 + 1e-9);
  const int e = static_cast<int>(std::lround(std::log10(value)));
  if (!plain) return fmt::format("1e{}", e);
  return e >= 0 ? fmt::format("{:.0f}", value) : fmt::format("{:.{}f}", value, -e);
}

// ---- the model ----

std::vector<std::vector<std::size_t>> group_by_scale(const std::vector<PlotSeries>& series) {
  struct Panel {
    std::vector<std::size_t> members;
    std::vector<Range> spans;  // of the members that vary
    Range all;                 // of every member
  };
  std::vector<Panel> panels;
  std::vector<Range> ranges;
  for (const auto& s : series) ranges.push_back(range_of(s));
  // Series that vary first, so that a series with one value finds their panels.
  for (std::size_t i = 0; i < series.size(); ++i) {
    const Range& r = ranges[i];
    if (r.empty() || !(r.width() > 0)) continue;
    Panel* home = nullptr;
    for (auto& panel : panels) {
      if (panel.spans.empty()) continue;
      Range joined = panel.all;
      joined.add(r);
      const double need = joined.width() * kShareFraction;
      if (r.width() >= need && std::all_of(panel.spans.begin(), panel.spans.end(), [&](const Range& m) { return m.width() >= need; })) {
        home = &panel;
        break;
      }
    }
    if (!home) home = &panels.emplace_back();
    home->members.push_back(i);
    home->spans.push_back(r);
    home->all.add(r);
  }
  for (std::size_t i = 0; i < series.size(); ++i) {
    const Range& r = ranges[i];
    if (r.empty() || r.width() > 0) continue;
    Panel* home = nullptr;
    for (auto& panel : panels) {
      const Ticks axis = nice_ticks(panel.all.lo, panel.all.hi, y_tick_budget(kPanelHeight));
      if (axis.values.front() <= r.lo && r.lo <= axis.values.back()) {
        home = &panel;
        break;
      }
    }
    if (!home) home = &panels.emplace_back();
    home->members.push_back(i);
    home->all.add(r);
  }
  std::vector<std::vector<std::size_t>> out;
  for (auto& panel : panels) {
    std::sort(panel.members.begin(), panel.members.end());
    out.push_back(std::move(panel.members));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.front() < b.front(); });
  return out;
}

HistoryModel history_model(const HistoryPlotData& data) {
  HistoryModel model;
  std::unordered_map<std::int64_t, const CheckpointRecord*> by_id;
  std::map<std::int64_t, const CheckpointRecord*> by_epoch;  // the most recently committed row of each epoch
  for (const auto& row : data.rows) {
    by_id[row.id] = &row;
    if (row.kind != CheckpointKind::epoch || !row.epoch || row.commit_seq <= 0) continue;
    const CheckpointRecord*& winner = by_epoch[*row.epoch];
    if (!winner || row.commit_seq > winner->commit_seq) winner = &row;
  }
  std::unordered_map<std::int64_t, std::vector<const NamedMetric*>> metrics_of;
  for (const auto& metric : data.metrics) metrics_of[metric.checkpoint_id].push_back(&metric);

  // Series in the order their names first appear, epoch by epoch.
  std::unordered_map<std::string, std::size_t> series_of;
  auto add_point = [&](const std::string& raw_name, std::int64_t epoch, double value) {
    if (!std::isfinite(value)) return;
    auto [it, inserted] = series_of.try_emplace(raw_name, model.series.size());
    if (inserted) {
      if (model.series.size() >= kMaxSeries) {
        it->second = SIZE_MAX;
        ++model.series_left_out;
        return;
      }
      model.series.push_back({drawable(raw_name), {}});
    }
    if (it->second == SIZE_MAX) return;
    auto& points = model.series[it->second].points;
    if (points.empty() || points.back().first != epoch) points.emplace_back(epoch, value);  // first of a name wins
  };
  for (const auto& [epoch, row] : by_epoch) {
    bool named = false;
    if (auto found = metrics_of.find(row->id); found != metrics_of.end()) {
      for (const NamedMetric* metric : found->second) {
        if (metric->name == "epoch") continue;  // the x axis itself
        named = true;
        add_point(metric->name, epoch, metric->value);
      }
    }
    if (!named && row->metric) add_point("metric", epoch, *row->metric);
  }
  model.panels = group_by_scale(model.series);

  // Marks, each at the epoch its state is of; else the last epoch saved before it.
  std::optional<std::int64_t> last_saved;
  std::map<std::int64_t, PlotMark> bests, interrupts, resumes;
  auto value_at = [&](std::size_t series, std::int64_t epoch) -> std::optional<double> {
    const auto& points = model.series[series].points;
    auto it = std::lower_bound(points.begin(), points.end(), std::make_pair(epoch, -std::numeric_limits<double>::infinity()));
    if (it == points.end() || it->first != epoch) return std::nullopt;
    return it->second;
  };
  for (const auto& event : data.events) {
    auto found = event.checkpoint_id ? by_id.find(*event.checkpoint_id) : by_id.end();
    const CheckpointRecord* row = found == by_id.end() ? nullptr : found->second;
    if (event.event == "saved" && row && row->kind == CheckpointKind::epoch && row->epoch) last_saved = row->epoch;
    std::optional<std::int64_t> at;
    if (event.event == "new_best") {
      at = row && row->state_epoch ? row->state_epoch : last_saved;
      if (!at || !row || !row->metric) continue;
      PlotMark mark{*at, std::nullopt, *row->metric};
      // Star the series the metric came from ("val_acc in the state"), else one whose
      // value at that epoch is the best's.
      for (std::size_t s = 0; s < model.series.size() && !mark.series; ++s) {
        const std::string& name = model.series[s].name;
        if (row->metric_source.compare(0, name.size() + 1, name + " ") == 0 && value_at(s, *at)) mark.series = s;
      }
      for (std::size_t s = 0; s < model.series.size() && !mark.series; ++s) {
        auto v = value_at(s, *at);
        if (v && std::abs(*v - mark.value) <= 1e-9 * std::max(1.0, std::abs(mark.value))) mark.series = s;
      }
      if (mark.series) mark.value = *value_at(*mark.series, *at);
      bests[*at] = mark;
    } else if (event.event == "interrupted") {
      at = row && row->state_epoch ? row->state_epoch : row && row->epoch ? row->epoch : last_saved;
      if (at) interrupts[*at] = PlotMark{*at, std::nullopt, 0};
    } else if (event.event == "resumed_from") {
      if (row && row->kind == CheckpointKind::epoch && row->epoch) at = row->epoch;
      else if (row && row->state_epoch) at = row->state_epoch;
      else at = last_saved;
      if (at) resumes[*at] = PlotMark{*at, std::nullopt, 0};
    }
  }
  for (auto& [epoch, mark] : bests) model.new_bests.push_back(mark);
  for (auto& [epoch, mark] : interrupts) model.interrupts.push_back(mark);
  for (auto& [epoch, mark] : resumes) model.resumes.push_back(mark);
  return model;
}

Rgb series_color(std::size_t i) {
  // Tableau's palette without its red and green, which mark interrupts and resumes.
  static const unsigned kPalette[] = {0x1f77b4, 0xff7f0e, 0x9467bd, 0x8c564b, 0xe377c2, 0x17becf, 0xbcbd22, 0x7f7f7f};
  return hex(kPalette[i % 8]);
}

PlotLayout history_layout(const HistoryModel& model) {
  PlotLayout layout;
  layout.width = static_cast<int>(kWidth);
  const double width = kPlotRight - kPlotLeft;
  layout.events = {kPlotLeft, kStripTop, width, kLanes * kLaneHeight};
  if (model.series.empty()) {
    layout.height = 300;
    return layout;
  }
  const double base = model.panels.size() > 4 ? kPanelHeightMany : kPanelHeight;
  double y = kStripTop + kLanes * kLaneHeight + kStripPanelGap;
  for (const auto& members : model.panels) {
    const double height = std::max(base, members.size() * kLegendLine + 16);
    layout.panels.push_back({kPlotLeft, y, width, height});
    y += height + kPanelGap;
  }
  layout.height = static_cast<int>(std::ceil(y - kPanelGap + kBottom));
  return layout;
}

void write_history_plot(const HistoryPlotData& data, const std::filesystem::path& out) {
  const std::string ext = lowercase_extension(out);
  if (ext != ".svg" && ext != ".png") {
    throw InvalidArgument(fmt::format("{}: the plot's format follows the file's extension: .svg or .png", out.string()), out);
  }
  const HistoryModel model = history_model(data);
  const PlotLayout layout = history_layout(model);
  std::string bytes;
  ReleaseFontCaches release_font_caches;
  if (ext == ".svg") {
    Surface surface(cairo_svg_surface_create_for_stream(append_to_string, &bytes, layout.width, layout.height));
    cairo_svg_surface_set_document_unit(surface.get(), CAIRO_SVG_UNIT_PX);
    std::vector<TextItem> texts;
    {
      Context cr(cairo_create(surface.get()));
      Painter painter(cr.get());
      draw(cr.get(), painter, model, layout, data.title);
      check(cairo_status(cr.get()), out);
      texts = painter.texts();
    }
    cairo_surface_finish(surface.get());
    check(cairo_surface_status(surface.get()), out);
    bytes = with_text_layer(std::move(bytes), texts, data.title);
  } else {
    Surface surface(cairo_image_surface_create(CAIRO_FORMAT_ARGB32, layout.width, layout.height));
    check(cairo_surface_status(surface.get()), out);
    {
      Context cr(cairo_create(surface.get()));
      Painter painter(cr.get());
      draw(cr.get(), painter, model, layout, data.title);
      check(cairo_status(cr.get()), out);
    }
    check(cairo_surface_write_to_png_stream(surface.get(), append_to_string, &bytes), out);
  }
  write_file(out, bytes);
}

}  // namespace ckpt::cli
