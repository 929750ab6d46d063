#include "runtime/telemetry/prometheus.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace troupe::runtime {

namespace {

bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

std::string sanitise(std::string_view name, bool allow_colon) {
  std::string r;
  r.reserve(name.size() + 1);
  for (char c : name)
    r.push_back(is_alpha(c) || is_digit(c) || (allow_colon && c == ':') ? c : '_');
  if (r.empty() || is_digit(r.front()))
    r.insert(r.begin(), '_');
  return r;
}

const char* type_name(prometheus_builder::metric_type t) noexcept {
  switch (t) {
  case prometheus_builder::metric_type::counter:
    return "counter";
  case prometheus_builder::metric_type::gauge:
    return "gauge";
  case prometheus_builder::metric_type::summary:
    return "summary";
  case prometheus_builder::metric_type::histogram:
    return "histogram";
  case prometheus_builder::metric_type::untyped:
    return "untyped";
  }
  return "untyped";
}

/// Backslash and newline are escaped everywhere; a double quote only inside
/// label values (HELP text is not quoted).
std::string escape(std::string_view text, bool quote) {
  std::string r;
  r.reserve(text.size());
  for (char c : text) {
    if (c == '\\')
      r += "\\\\";
    else if (c == '\n')
      r += "\\n";
    else if (c == '"' && quote)
      r += "\\\"";
    else
      r.push_back(c);
  }
  return r;
}

} // namespace

std::string prometheus_builder::metric_name(std::string_view name) {
  return sanitise(name, true);
}

std::string prometheus_builder::label_name(std::string_view name) {
  return sanitise(name, false);
}

std::string prometheus_builder::escape_label_value(std::string_view value) {
  return escape(value, true);
}

std::string prometheus_builder::escape_help(std::string_view text) {
  return escape(text, false);
}

std::string prometheus_builder::format_value(double value) {
  if (std::isnan(value))
    return "NaN";
  if (std::isinf(value))
    return value > 0 ? "+Inf" : "-Inf";
  // Shortest text that reads back as the same double.
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc{})
    return "NaN";
  return std::string(buf, end);
}

prometheus_builder& prometheus_builder::family(std::string_view name, metric_type type,
                                               std::string_view help) {
  auto n = metric_name(name);
  if (!families_.insert(n).second)
    throw std::logic_error("prometheus: metric family '" + n + "' written twice");
  current_ = n;
  out_ += "# HELP ";
  out_ += n;
  out_ += ' ';
  out_ += escape_help(help);
  out_ += "\n# TYPE ";
  out_ += n;
  out_ += ' ';
  out_ += type_name(type);
  out_ += '\n';
  return *this;
}

prometheus_builder& prometheus_builder::sample(const std::vector<label>& labels, double value,
                                               std::string_view suffix) {
  if (current_.empty())
    throw std::logic_error("prometheus: sample before any metric family");
  out_ += current_;
  if (!suffix.empty())
    out_ += metric_name(suffix).substr(is_digit(suffix.front()) ? 1 : 0);
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first)
        out_ += ',';
      first = false;
      out_ += label_name(k);
      out_ += "=\"";
      out_ += escape_label_value(v);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += format_value(value);
  out_ += '\n';
  return *this;
}

} // namespace troupe::runtime
