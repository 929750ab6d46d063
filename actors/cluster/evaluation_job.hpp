#pragma once

// Evaluation and prediction from a checkpoint (`troupe evaluate` / `predict`):
// a job of the checkpoint's own options that trains nothing, run through the
// same supervisor, data loading (prepare_job) and actor pipeline as training,
// on a topology of its own. Change it when a checkpoint is evaluated with
// something new.

#include <cstdint>
#include <string>

#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster/job.hpp"
#include "actors/plan/train_options.hpp"

namespace troupe::actors {

/// What to evaluate, and where. The topology is independent of the one the
/// checkpoint was trained on (a checkpoint of --pp 2 --tp 2 evaluates on one
/// device and vice versa).
struct evaluation_request {
  std::string checkpoint; ///< the checkpoint directory
  std::string data;       ///< the data set (as `train --data`); empty: the checkpoint's
  int stages = 1;
  int tp = 1;
  int dp = 1;
  int microbatches = 1;
  nlohmann::json plan = nullptr; ///< a saved plan instead of the degrees above
  int threads = 0;
  bool progress = true;
  bool predict = false; ///< also return every test sample's outputs
};

/// The options of the job that evaluates `request`: the checkpoint's own
/// training options (its manifest's config: model, data, batch, seed) with
/// the request's data and topology, evaluate_only, no checkpoint written.
/// Throws runtime::input_error naming the checkpoint when it cannot be read,
/// holds no usable config, or holds a model the zoo does not have (that one
/// evaluates with a --plan holding its spec).
train_options evaluation_options(const evaluation_request& request);

/// Runs the evaluation (and with request.predict the predictions) in `sys`:
/// its report is a training report whose test_accuracy / test_loss /
/// bits_per_char are the checkpoint's on the test set, "steps" the
/// checkpoint's step. Throws as run_training.
job_result run_evaluation(caf::actor_system& sys, const evaluation_request& request);

} // namespace troupe::actors
