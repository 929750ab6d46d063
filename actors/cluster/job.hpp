#pragma once

#include <nlohmann/json.hpp>

#include <caf/actor_system.hpp>

#include <atomic>
#include <memory>
#include <optional>

#include "actors/pipeline/dataset.hpp"
#include "actors/plan/plan.hpp"
#include "actors/plan/train_options.hpp"
#include "runtime/io/checkpoint.hpp"

namespace troupe::actors {

/// What a finished training job returns.
struct job_result {
  nlohmann::json report;             ///< the --report object
  runtime::named_tensor_list params; ///< final parameters, by global name
  /// train_options::predict: every test sample's outputs (f32 [N, ...]
  /// logits), in test-set order; params is empty then.
  runtime::tensor predictions;
};

/// Runs one training job to completion through a supervisor in `sys` (the
/// library entry point behind `troupe train`). Throws runtime::input_error
/// for bad options or input files, std::runtime_error (with the failing
/// actor's name) when the job fails.
job_result run_training(caf::actor_system& sys, const train_options& opts);

/// The same, stopping at the next step boundary once `*interrupt` is set
/// (Ctrl-C on `troupe train`): the job ends there as if it were done (its
/// final checkpoint, trace and report, whose "interrupted" is true).
job_result run_training(caf::actor_system& sys, const train_options& opts,
                        std::shared_ptr<const std::atomic<bool>> interrupt);

/// Runs the topology `p` (from make_plan, edited or built by hand) instead of
/// planning one: the supervisor gets `p` itself (no JSON) and opts.model the plan's model,
/// and the plan's degrees (stages, replicas, tp, ps, micro-batches, schedule)
/// replace opts' (adopt_plan_degrees). The rest of opts (data, optimizer,
/// batch, steps, ...) is the job's. Throws as the overload above, and
/// runtime::input_error naming what is wrong with the plan.
job_result run_training(caf::actor_system& sys, const train_options& opts, const plan& p);

/// Trains on `train` (and evaluates on `test` after each epoch, if given)
/// instead of the files opts names: a data set from anywhere (a
/// dataset_source of one's own, or memory_dataset over two tensors). opts'
/// loss and normalisation apply as to files (docs/data.md); the data set is
/// checked against the model before any step runs. Throws as above.
job_result run_training(caf::actor_system& sys, const train_options& opts, dataset train,
                        std::optional<dataset> test = std::nullopt);

} // namespace troupe::actors
