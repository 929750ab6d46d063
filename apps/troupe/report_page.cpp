#include "apps/troupe/report_page.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "runtime/error.hpp"
#include "runtime/io/file_util.hpp"

namespace troupe::apps {

namespace {

using nlohmann::json;

constexpr std::size_t max_report_bytes = std::size_t{1} << 30;

std::string esc(const std::string& s) {
  std::string r;
  r.reserve(s.size());
  for (char c : s)
    switch (c) {
    case '&':
      r += "&amp;";
      break;
    case '<':
      r += "&lt;";
      break;
    case '>':
      r += "&gt;";
      break;
    case '"':
      r += "&quot;";
      break;
    case '\'':
      r += "&#39;";
      break;
    default:
      r += c;
    }
  return r;
}

std::string num(double v, const char* format = "%.4g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

/// A JSON value as a table cell: strings bare, the rest as JSON.
std::string text_of(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

const json& at_or_null(const json& j, const char* key) {
  static const json null_value;
  return j.is_object() && j.contains(key) ? j.at(key) : null_value;
}

std::vector<double> numbers(const json& column) {
  std::vector<double> r;
  if (column.is_array())
    for (const auto& v : column)
      r.push_back(v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN());
  return r;
}

/// A restart or a rebalance, marked on every plot's step axis.
struct event_mark {
  double step = 0;
  std::string kind; ///< "restart" or "rebalance"
  std::string label;
};

std::vector<event_mark> run_events(const json& report) {
  std::vector<event_mark> r;
  for (const auto& x : at_or_null(at_or_null(report, "recovery"), "restarts")) {
    const auto& step = at_or_null(x, "failed_at_step");
    if (!step.is_number())
      continue;
    r.push_back({step.get<double>(), "restart",
                 "restart: failed at step " + text_of(step) + ", restored step " +
                     text_of(at_or_null(x, "restored_step")) + " from " +
                     text_of(at_or_null(x, "restore_source"))});
  }
  for (const auto& x : at_or_null(at_or_null(report, "balance"), "rebalances")) {
    const auto& step = at_or_null(x, "step");
    if (!step.is_number())
      continue;
    r.push_back({step.get<double>(), "rebalance",
                 "rebalance (" + text_of(at_or_null(x, "kind")) + ") at step " + text_of(step) +
                     ": " + text_of(at_or_null(x, "why"))});
  }
  std::stable_sort(r.begin(), r.end(),
                   [](const auto& a, const auto& b) { return a.step < b.step; });
  return r;
}

struct line {
  std::string name;
  std::vector<double> x, y;
  bool dots = false; ///< sparse points (evaluations) rather than a line
};

struct plot_spec {
  std::string id;
  std::string title;
  std::vector<line> lines;
  std::optional<std::pair<double, double>> y_range = std::nullopt;
};

constexpr double width = 720, height = 260, left = 64, right = 16, top = 24, bottom = 36;

struct scale {
  double lo, hi, from, to;
  double operator()(double v) const { return from + (v - lo) / (hi - lo) * (to - from); }
};

std::pair<double, double> padded(double lo, double hi) {
  if (!(lo <= hi))
    return {0, 1};
  if (lo == hi) {
    const double d = lo == 0 ? 1 : std::abs(lo) * 0.1;
    return {lo - d, hi + d};
  }
  const double pad = (hi - lo) * 0.05;
  return {lo - pad, hi + pad};
}

/// Round tick values (1, 2 or 5 times a power of ten apart) in [lo, hi].
std::vector<double> ticks(double lo, double hi) {
  const double raw = (hi - lo) / 4;
  if (!(raw > 0) || !std::isfinite(raw))
    return {lo};
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * p;
  for (double m : {1.0, 2.0, 5.0})
    if (raw <= m * p) {
      step = m * p;
      break;
    }
  std::vector<double> r;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9 && r.size() < 12; v += step)
    r.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return r;
}

std::string axes(const scale& sx, const scale& sy) {
  std::ostringstream o;
  o << "<g class=\"axes\"><rect x=\"" << left << "\" y=\"" << top << "\" width=\""
    << width - left - right << "\" height=\"" << height - top - bottom << "\"/>";
  for (double xv : ticks(sx.lo, sx.hi))
    o << "<text class=\"tick\" x=\"" << num(sx(xv), "%.1f") << "\" y=\"" << height - bottom + 16
      << "\" text-anchor=\"middle\">" << num(xv, "%.6g") << "</text>";
  for (double yv : ticks(sy.lo, sy.hi))
    o << "<text class=\"tick\" x=\"" << left - 6 << "\" y=\"" << num(sy(yv) + 4, "%.1f")
      << "\" text-anchor=\"end\">" << num(yv, "%.6g") << "</text>";
  o << "<text class=\"axis-label\" x=\"" << (left + width - right) / 2 << "\" y=\"" << height - 2
    << "\" text-anchor=\"middle\">step</text></g>";
  return o.str();
}

std::string series_svg(const line& l, std::size_t index, const scale& sx, const scale& sy) {
  std::ostringstream o;
  std::size_t n = 0;
  std::ostringstream pts;
  for (std::size_t i = 0; i < std::min(l.x.size(), l.y.size()); ++i) {
    if (!std::isfinite(l.x[i]) || !std::isfinite(l.y[i]))
      continue;
    const auto x = num(sx(l.x[i]), "%.2f"), y = num(sy(l.y[i]), "%.2f");
    if (l.dots)
      pts << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"3\"/>";
    else
      pts << (n ? " " : "") << x << ',' << y;
    ++n;
  }
  const auto cls = "series s" + std::to_string(index % 6);
  if (l.dots)
    o << "<g class=\"" << cls << " dots\" data-name=\"" << esc(l.name) << "\" data-points=\"" << n
      << "\">" << pts.str() << "</g>";
  else
    o << "<polyline class=\"" << cls << "\" data-name=\"" << esc(l.name) << "\" data-points=\"" << n
      << "\" points=\"" << pts.str() << "\"/>";
  // Above the frame, right-aligned, one slot per series.
  o << "<text class=\"legend " << cls << "\" x=\""
    << width - right - 120 * static_cast<double>(index) << "\" y=\"" << top - 8
    << "\" text-anchor=\"end\">" << esc(l.name) << "</text>";
  return o.str();
}

std::string plot_svg(const plot_spec& p, const std::vector<event_mark>& events) {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& l : p.lines) {
    for (double x : l.x)
      if (std::isfinite(x))
        x0 = std::min(x0, x), x1 = std::max(x1, x);
    for (double y : l.y)
      if (std::isfinite(y))
        y0 = std::min(y0, y), y1 = std::max(y1, y);
  }
  for (const auto& e : events)
    x0 = std::min(x0, e.step), x1 = std::max(x1, e.step);
  auto [xl, xh] = x0 < x1 ? std::pair{x0, x1} : padded(x0, x1);
  auto [yl, yh] = p.y_range ? *p.y_range : padded(y0, y1);
  const scale sx{xl, xh, left, width - right}, sy{yl, yh, height - bottom, top};
  std::ostringstream o;
  o << "<figure class=\"plot\" id=\"" << p.id << "\"><figcaption>" << esc(p.title)
    << "</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\""
    << height << "\" viewBox=\"0 0 " << width << ' ' << height << "\" role=\"img\" aria-label=\""
    << esc(p.title) << "\">" << axes(sx, sy);
  for (std::size_t i = 0; i < p.lines.size(); ++i)
    o << series_svg(p.lines[i], i, sx, sy);
  o << "<g class=\"events\">";
  for (const auto& e : events) {
    const auto x = num(sx(e.step), "%.2f");
    o << "<line class=\"marker " << e.kind << "\" data-step=\"" << num(e.step, "%.0f") << "\" x1=\""
      << x << "\" x2=\"" << x << "\" y1=\"" << top << "\" y2=\"" << height - bottom << "\"><title>"
      << esc(e.label) << "</title></line>";
  }
  o << "</g></svg></figure>\n";
  return o.str();
}

/// The evaluations' `key` over their steps, as dots.
line evaluations_line(const json& report, const char* key, std::string name) {
  line l{std::move(name), {}, {}, true};
  for (const auto& e : at_or_null(report, "evaluations")) {
    const auto &s = at_or_null(e, "step"), &v = at_or_null(e, key);
    if (s.is_number() && v.is_number()) {
      l.x.push_back(s.get<double>());
      l.y.push_back(v.get<double>());
    }
  }
  return l;
}

/// The plots the report has data for, in page order.
std::vector<plot_spec> plots_of(const json& report) {
  std::vector<plot_spec> r;
  const auto& s = at_or_null(report, "step_series");
  const auto steps = numbers(at_or_null(s, "step"));
  auto over_steps = [&](const char* key, std::string name) {
    return line{std::move(name), steps, numbers(at_or_null(s, key))};
  };
  if (!steps.empty())
    r.push_back({"plot-loss", "Training loss (mean per prediction)", {over_steps("loss", "loss")}});
  plot_spec quality{"plot-accuracy", "Accuracy", {}, std::pair{0.0, 1.0}};
  if (s.contains("train_accuracy") && !steps.empty())
    quality.lines.push_back(over_steps("train_accuracy", "training batches"));
  if (auto l = evaluations_line(report, "test_accuracy", "test set"); !l.x.empty())
    quality.lines.push_back(std::move(l));
  if (auto l = evaluations_line(report, "bits_per_char", "held-out text"); !l.x.empty())
    quality = {"plot-bits", "Bits per character", {std::move(l)}};
  else if (auto m = evaluations_line(report, "test_mse", "test set"); !m.x.empty())
    quality = {"plot-mse", "Test mean squared error", {std::move(m)}};
  if (!quality.lines.empty())
    r.push_back(std::move(quality));
  if (!steps.empty()) {
    r.push_back({"plot-lr", "Learning rate", {over_steps("lr", "lr")}});
    r.push_back(
        {"plot-samples", "Samples per second", {over_steps("samples_per_second", "samples/s")}});
    plot_spec busy{"plot-busy", "Stage busy fraction (idle = 1 - busy)", {}, std::pair{0.0, 1.0}};
    const auto& stages = at_or_null(s, "stage_busy");
    for (std::size_t k = 0; stages.is_array() && k < stages.size(); ++k)
      busy.lines.push_back({"stage " + std::to_string(k), steps, numbers(stages[k])});
    if (!busy.lines.empty())
      r.push_back(std::move(busy));
  }
  return r;
}

std::string table(const char* id, const std::vector<std::pair<std::string, std::string>>& rows) {
  std::ostringstream o;
  o << "<table id=\"" << id << "\">";
  for (const auto& [k, v] : rows)
    o << "<tr><th>" << esc(k) << "</th><td>" << esc(v) << "</td></tr>";
  o << "</table>\n";
  return o.str();
}

/// Scalar fields of `j` (objects and arrays are left to the JSON view).
std::vector<std::pair<std::string, std::string>> scalar_rows(const json& j) {
  std::vector<std::pair<std::string, std::string>> r;
  if (j.is_object())
    for (const auto& [k, v] : j.items())
      if (!v.is_structured())
        r.emplace_back(k, text_of(v));
  return r;
}

/// The final figures, for the summary and the page's first table.
std::vector<std::pair<std::string, std::string>> final_figures(const json& report) {
  std::vector<std::pair<std::string, std::string>> r;
  auto add = [&](const char* key, const char* name, const char* format) {
    const auto& v = at_or_null(report, key);
    if (v.is_number())
      r.emplace_back(name, num(v.get<double>(), format));
  };
  add("steps", "steps", "%.0f");
  add("epochs", "epochs", "%.0f");
  add("batch", "batch", "%.0f");
  add("final_loss", "final loss (last epoch's mean)", "%.4f");
  add("test_accuracy", "test accuracy", "%.4f");
  add("bits_per_char", "bits per char", "%.4f");
  add("test_mse", "test mse", "%.4g");
  add("samples_per_second", "samples/s", "%.1f");
  add("train_seconds", "training seconds", "%.2f");
  add("wall_seconds", "wall seconds", "%.2f");
  const auto events = run_events(report);
  auto count = [&](const char* kind) {
    return std::to_string(
        std::count_if(events.begin(), events.end(), [&](const auto& e) { return e.kind == kind; }));
  };
  r.emplace_back("restarts", count("restart"));
  r.emplace_back("rebalances", count("rebalance"));
  return r;
}

constexpr const char* style =
    R"(body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:.9em}th{background:#f3f3f3}
figure{margin:12px 0}figcaption{font-weight:bold;margin-bottom:4px}
.axes rect{fill:#fff;stroke:#888}.tick,.axis-label,.legend{font-size:11px;fill:#444}
polyline.series{fill:none;stroke-width:1.5}.dots circle{stroke:none}
.s0{stroke:#1f77b4;fill:#1f77b4}.s1{stroke:#d62728;fill:#d62728}.s2{stroke:#2ca02c;fill:#2ca02c}
.s3{stroke:#9467bd;fill:#9467bd}.s4{stroke:#8c564b;fill:#8c564b}.s5{stroke:#e377c2;fill:#e377c2}
polyline.series{fill:none}text.legend{stroke:none}
.marker{stroke-width:1.5;stroke-dasharray:4 3}.marker.restart{stroke:#d62728}.marker.rebalance{stroke:#ff7f0e}
.restart-item{color:#d62728}.rebalance-item{color:#b35900}pre{background:#f6f6f6;padding:8px;overflow:auto}
)";

} // namespace

json load_run_report(const std::filesystem::path& file) {
  const auto name = file.string();
  const auto bytes = runtime::read_file(file, max_report_bytes);
  json r = json::parse(reinterpret_cast<const char*>(bytes.data()),
                       reinterpret_cast<const char*>(bytes.data()) + bytes.size(), nullptr, false);
  if (r.is_discarded())
    throw runtime::input_error(name + ": not JSON (a troupe report is the JSON file "
                                      "`troupe train --report FILE` writes)");
  for (const char* key : {"model", "strategy", "steps", "config"})
    if (!r.is_object() || !r.contains(key))
      throw runtime::input_error(name + ": not a troupe training report (no \"" + key +
                                 "\" field; `troupe train --report FILE` writes one)");
  return r;
}

std::string report_summary(const json& report) {
  std::ostringstream o;
  o << "run: model " << text_of(report.at("model")) << ", " << text_of(report.at("strategy"));
  const auto& plan = at_or_null(report, "plan");
  for (const auto& [key, name] : {std::pair{"depth", "stage(s)"},
                                  {"replicas", "replica(s)"},
                                  {"tp", "tensor-parallel rank(s)"},
                                  {"schedule", "schedule"}})
    if (plan.contains(key))
      o << ", " << text_of(plan.at(key)) << ' ' << name;
  o << '\n';
  for (const auto& [k, v] : final_figures(report))
    o << "  " << k << ": " << v << '\n';
  for (const auto& e : run_events(report))
    o << "  " << e.label << '\n';
  const auto& s = at_or_null(report, "step_series");
  if (s.is_object())
    o << "  per-step series: " << at_or_null(s, "step").size() << " point(s) of "
      << text_of(at_or_null(s, "every")) << " step(s)\n";
  return o.str();
}

std::string report_html(const json& report, const std::string& source) {
  const auto title =
      "troupe run: " + text_of(report.at("model")) + ", " + text_of(report.at("strategy"));
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "style-src 'unsafe-inline'\">\n<title>"
    << esc(title) << "</title>\n<style>" << style << "</style></head><body>\n<h1>" << esc(title)
    << "</h1>\n<p class=\"source\">" << esc(source) << " &middot; commit "
    << esc(text_of(at_or_null(report, "git_commit"))) << " &middot; "
    << esc(text_of(at_or_null(report, "build"))) << "</p>\n<h2>Final figures</h2>\n"
    << table("figures", final_figures(report)) << "<h2>Over steps</h2>\n<div id=\"plots\">\n";
  const auto events = run_events(report);
  const auto plots = plots_of(report);
  if (!at_or_null(report, "step_series").is_object())
    o << "<p id=\"no-series\">This report has no per-step series (\"step_series\"): it was "
         "written by a troupe before they were added.</p>\n";
  for (const auto& p : plots)
    o << plot_svg(p, events);
  o << "</div>\n<h2>Restarts and rebalances</h2>\n<ol id=\"events\">";
  for (const auto& e : events)
    o << "<li class=\"" << e.kind << "-item\">" << esc(e.label) << "</li>";
  o << "</ol>" << (events.empty() ? "<p>none</p>" : "") << "\n<h2>Configuration</h2>\n";
  auto config = scalar_rows(at_or_null(report, "config"));
  std::erase_if(config, [](const auto& row) { return row.first == "model"; });
  config.insert(config.begin(), {{"model", text_of(report.at("model"))},
                                 {"strategy", text_of(report.at("strategy"))}});
  o << table("config", config) << "<h2>Plan</h2>\n"
    << table("plan", scalar_rows(at_or_null(report, "plan")))
    << "<details><summary>the plan as JSON</summary><pre>"
    << esc(at_or_null(report, "plan").dump(2)) << "</pre></details>\n</body></html>\n";
  return o.str();
}

} // namespace troupe::apps
