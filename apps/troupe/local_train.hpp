#pragma once

#include <optional>

#include <nlohmann/json.hpp>

#include "actors/cluster/job.hpp"
#include "actors/plan/train_options.hpp"

namespace troupe::apps {

/// Exit status of an interrupted run (128 + SIGINT, as a shell reports it).
inline constexpr int exit_interrupted = 130;

/// Runs the job `o` in this process. The first SIGINT/SIGTERM stops it at the
/// next step boundary (its final checkpoint, trace and report: "interrupted"
/// in the report); a second one exits at once with exit_interrupted.
actors::job_result run_local(const actors::train_options& o);

/// The one line a run that ended without training to its end prints instead
/// of the summary, and its exit status: an interrupted run ("interrupted at
/// step 37: checkpoint written to DIR", 130) or a --resume with nothing left
/// to do (0). Nullopt: a normal run.
std::optional<int> report_early_end(const actors::train_options& o, const nlohmann::json& report);

} // namespace troupe::apps
