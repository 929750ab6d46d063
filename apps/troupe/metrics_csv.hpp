#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace troupe::apps {

/// `troupe train --metrics-csv FILE`: the report's per-step "step_metrics"
/// as CSV (step, epoch, loss, lr, step_seconds, samples_per_second,
/// busy_stage0, ...; an unknown value is an empty field), written atomically.
/// A run without per-step figures (async parameter servers) gets the header.
void write_metrics_csv(const std::string& file, const nlohmann::json& report);

} // namespace troupe::apps
