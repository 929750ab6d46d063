#pragma once

// Prometheus text exposition format (version 0.0.4) for `GET /metrics`.
// Actor, transport and device names end up in metric labels, and a stray
// quote or newline there would make the whole scrape unparseable, so every
// name and value goes through the escaping rules of the format here:
// metric and label names are sanitised to [a-zA-Z_:][a-zA-Z0-9_:]* (labels
// without ':'), label values escape \ " and newline, HELP text escapes \ and
// newline, values print as Go's ParseFloat reads them (NaN, +Inf, -Inf).

#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace troupe::runtime {

class prometheus_builder {
public:
  enum class metric_type { counter, gauge, summary, histogram, untyped };
  using label = std::pair<std::string, std::string>;

  /// The Content-Type of the text format.
  static constexpr const char* content_type = "text/plain; version=0.0.4; charset=utf-8";

  /// Starts a metric family: writes its # HELP and # TYPE lines. A family name
  /// may appear once per exposition; throws std::logic_error on a repeat.
  prometheus_builder& family(std::string_view name, metric_type type, std::string_view help);

  /// One sample of the current family, named after it plus `suffix` (e.g.
  /// "_sum", "_count", "_bucket" for summaries and histograms). Throws
  /// std::logic_error before the first family().
  prometheus_builder& sample(const std::vector<label>& labels, double value,
                             std::string_view suffix = {});

  /// The text so far (ends with a newline when not empty).
  const std::string& str() const noexcept { return out_; }
  std::string take() { return std::move(out_); }

  static std::string metric_name(std::string_view name);
  static std::string label_name(std::string_view name);
  static std::string escape_label_value(std::string_view value);
  static std::string escape_help(std::string_view text);
  static std::string format_value(double value);

private:
  std::string out_;
  std::string current_;
  std::unordered_set<std::string> families_;
};

} // namespace troupe::runtime
