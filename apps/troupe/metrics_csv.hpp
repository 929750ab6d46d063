#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace troupe::apps {

/// `troupe train --metrics-csv FILE`: the report's per-step series
/// ("step_series", docs/report.md) as CSV, one row per point: step (steps done
/// at its end), steps (how many it covers: 1 until a long run passes the
/// series' bound), epoch, loss, train_accuracy (classifiers), lr,
/// samples_per_second, busy_stage0, ...; an unknown value is an empty field.
/// Written atomically. A run without a series (an old report) gets the header.
void write_metrics_csv(const std::string& file, const nlohmann::json& report);

} // namespace troupe::apps
