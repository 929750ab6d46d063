#pragma once

// Small pieces every `troupe bench` subcommand prints or writes.

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::apps {

/// "1-min 5-min 15-min" from /proc/loadavg ("?" if unreadable): printed next
/// to every timing, since a busy machine changes them.
std::string load_average();

/// Writes `doc` indented to `file`, atomically (a reader never sees half).
void write_json_file(const std::string& file, const nlohmann::json& doc);

/// Median, min and max of a sample (empty: all zero): benchmarks repeat
/// their configurations and report the median with its range.
struct summary {
  double median = 0, min = 0, max = 0;
  static summary of(std::vector<double> v);
  /// (max - min) / median, in percent.
  double spread_percent() const { return median > 0 ? 100.0 * (max - min) / median : 0.0; }
  nlohmann::json to_json() const {
    return {{"median", median}, {"min", min}, {"max", max}, {"spread_percent", spread_percent()}};
  }
};

/// This executable (/proc/self/exe): benchmarks re-run it as rank processes
/// and find their peers next to it.
std::filesystem::path self_exe();

/// Splits "TOKEN a b c" into words (the rank processes' line protocol).
std::vector<std::string> words(const std::string& line);

} // namespace troupe::apps
