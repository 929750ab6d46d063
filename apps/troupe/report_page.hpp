#pragma once

// `troupe report`: a run's --report JSON as a short plain summary and as one
// self-contained HTML page (inline SVG plots over steps, no script and no
// request: its Content-Security-Policy allows nothing but inline styles).
// Change it when the report gains a figure worth showing.

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace troupe::apps {

/// Reads and checks a training report; throws runtime::input_error naming
/// the file and what is wrong (missing, not JSON, not a troupe report).
nlohmann::json load_run_report(const std::filesystem::path& file);

/// A few lines: configuration, plan, final figures, restarts and rebalances.
std::string report_summary(const nlohmann::json& report);

/// The whole page. `source` names the report file in the page's heading.
std::string report_html(const nlohmann::json& report, const std::string& source);

} // namespace troupe::apps
