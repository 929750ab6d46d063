#pragma once

// The data of a job that trains on labeled samples (every model but a
// language model): read from the files the options name (docs/data.md) or
// given by a library caller, normalised as asked, its loss chosen, and checked
// against the model before any step runs.

#include <optional>

#include "actors/cluster/job_inputs.hpp"

namespace troupe::actors {

/// Fills job.train_set, job.test_set, job.transform and job.real_targets,
/// and resolves job.opts.loss (automatic: cross_entropy for integer labels,
/// mse for real targets) and job.opts.evaluate (off when there is no test
/// set). `train` / `test`: run_training's data sets; without `train` the
/// files of job.opts (--data, --test-data, --holdout) are read. Throws
/// runtime::input_error naming the file (or data set), the array and what
/// does not fit the model.
void load_labeled_data(job_inputs& job, std::optional<dataset> train, std::optional<dataset> test);

} // namespace troupe::actors
