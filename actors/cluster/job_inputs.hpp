#pragma once

// What a job reads before any actor starts (its plan, data sets and
// checkpoint) and every check of the user's input that needs them: change it
// when a job gains an input file or a check.

#include <optional>
#include <vector>

#include "actors/cluster/job_data.hpp"
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
  /// Where its loaders read the data: the nodes only for a cluster job of
  /// data files (--data-from nodes, the default there).
  data_source data_from = data_source::supervisor;
  /// The data, when read here (data_from supervisor); on the nodes, each
  /// loader's node reads its own (node_data.hpp).
  job_datasets data;
  /// What is known of the data wherever it was read (summarize): sizes,
  /// resolved loss, normalisation; null until the nodes have read it.
  nlohmann::json data_summary;
  std::optional<runtime::checkpoint> resume;

  std::int64_t train_samples() const { return data_summary.value("train_samples", 0); }
  std::int64_t test_samples() const { return data_summary.value("test_samples", 0); }
  /// The in-process caller's stop request (job_request::interrupt).
  std::shared_ptr<const std::atomic<bool>> interrupt;
};

/// Plans the request's options on `available` (or places its saved plan
/// there), reads its checkpoint and, unless `data_on_nodes`, its data, and
/// checks everything that needs them. Throws runtime::input_error naming the
/// bad option or file.
job_inputs prepare_job(job_request request, const std::vector<device_slot>& available,
                       bool data_on_nodes = false);

/// Takes the summary of the job's data (read on the nodes): the loss and
/// evaluation it resolves, then the checks that need the data's size.
/// Throws runtime::input_error as prepare_job does.
void use_data_summary(job_inputs& job, nlohmann::json summary);

/// A job's data options for the nodes to read it by (node_data.hpp): the
/// options and the model spec.
nlohmann::json data_spec(const job_inputs& job);

} // namespace troupe::actors
