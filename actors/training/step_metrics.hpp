#pragma once

// Per-step figures of a run for the report's "step_metrics" (and from there
// `troupe train --metrics-csv`): taken from what the trainer already has at a
// step's end (the step's loss and time, the rate, the stages' reported
// compute), not measured again.

#include <cstdint>

#include <nlohmann/json.hpp>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// At most this many rows are kept: past it every other row is dropped and
/// only every 2nd, 4th, ... step is recorded from then on (the report of a
/// long run stays bounded; which steps are kept does not depend on timing).
inline constexpr std::size_t max_step_metrics_rows = 20000;

/// Appends the step just completed (st.step already counts it): its
/// `samples`, its duration `step_seconds`, and the stages' compute seconds
/// in st.current. Synchronous steps only (async workers have none).
void record_step_metrics(trainer_state& st, double step_seconds, std::int64_t samples);

} // namespace troupe::actors::training
