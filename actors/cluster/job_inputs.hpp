#pragma once

// What a job reads before any actor starts (its plan, data sets and
// checkpoint) and every check of the user's input that needs them: change it
// when a job gains an input file or a check.

#include <optional>
#include <vector>

#include "actors/cluster/job_request.hpp"
#include "actors/pipeline/data_loader.hpp"
#include "actors/plan/plan.hpp"
#include "actors/plan/train_options.hpp"
#include "runtime/io/checkpoint.hpp"

namespace troupe::actors {

/// A job ready to be spawned: options (degrees adopted from a saved plan),
/// its topology on the available devices, its data and what it resumes from.
struct job_inputs {
  train_options opts;
  plan topology;
  dataset train_set;
  dataset test_set;          ///< empty unless evaluated (or a language model's held-out text)
  input_transform transform; ///< the loaders' input normalisation (job_data.hpp)
  bool real_targets = false; ///< an mse loss: targets as f32 [n, K]
  std::optional<runtime::checkpoint> resume;
  /// The in-process caller's stop request (job_request::interrupt).
  std::shared_ptr<const std::atomic<bool>> interrupt;
};

/// Plans the request's options on `available` (or places its saved plan
/// there), loads its data and checkpoint and checks they fit. Throws
/// runtime::input_error naming the bad option or file.
job_inputs prepare_job(job_request request, const std::vector<device_slot>& available);

} // namespace troupe::actors
