#pragma once

// The flags `troupe evaluate` and `troupe predict` share: the checkpoint, the
// data and the topology to evaluate on (as `train`'s --pp, --tp, --dp, --plan).

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster/evaluation_job.hpp"

namespace troupe::apps {

struct evaluation_flags {
  actors::evaluation_request request;
  std::string plan_file; ///< --plan FILE: read into request.plan
  bool no_progress = false;
};

void add_evaluation_flags(CLI::App* cmd, evaluation_flags& f);

/// Runs the evaluation in this process (a supervisor of its own, as `train`
/// without --supervisor). Throws runtime::input_error for bad flags or files.
actors::job_result run_evaluation_flags(evaluation_flags& f, bool predict);

/// The --report of an evaluation (the job report `r` of `req`): the training
/// report's fields that describe the test set's figures and where they were
/// computed, under the same names.
nlohmann::json evaluation_report(const nlohmann::json& r, const actors::evaluation_request& req);

/// Prints the evaluation's line: accuracy and loss, or held-out bits per char.
void print_evaluation(const nlohmann::json& r);

} // namespace troupe::apps
