#pragma once

#include <nlohmann/json.hpp>

#include <caf/actor_system.hpp>

#include "actors/train_options.hpp"
#include "runtime/checkpoint.hpp"

namespace troupe::actors {

/// What a finished training job returns.
struct job_result {
  nlohmann::json report;           ///< the --report object
  runtime::named_tensor_list params; ///< final parameters, by global name
};

/// Runs one training job to completion through a supervisor in `sys` (the
/// library entry point behind `troupe train`). Throws runtime::input_error
/// for bad options or input files, std::runtime_error (with the failing
/// actor's name) when the job fails.
job_result run_training(caf::actor_system& sys, const train_options& opts);

} // namespace troupe::actors
