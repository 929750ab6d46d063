#pragma once

// A timed `troupe train` job as the benchmarks run it (train, pipeline, ps):
// untimed warm-up steps, timed steps, no evaluation, no progress bar, and the
// timed figures read back from its report. Change here when the report does.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "actors/plan/train_options.hpp"

namespace troupe::apps {

/// Options of a job that runs `warmup` untimed then `steps` timed steps and
/// nothing else; the caller fills in the model, data and parallelism.
actors::train_options timed_job_options(std::int64_t warmup, std::int64_t steps);

/// The timed steps and their seconds from a job's report.
struct timed_figures {
  double steps = 0;
  double seconds = 0;
};

/// Throws std::runtime_error(`none_message`) when the job timed no step.
timed_figures timed_figures_of(const nlohmann::json& report, const std::string& none_message);

} // namespace troupe::apps
