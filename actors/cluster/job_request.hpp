#pragma once

// A job as submitted to the supervisor: change it when a job gains an input
// that is not a training option.

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include <caf/allowed_unsafe_message_type.hpp>

#include "actors/pipeline/dataset.hpp"
#include "actors/plan/plan.hpp"
#include "actors/plan/train_options.hpp"

namespace troupe::actors {

/// Validated options and, when the caller brought one, the topology to run
/// (a saved or hand-built plan) instead of planning one. In one process
/// (run_training) it reaches the supervisor as it is; a client in another
/// process sends the options' JSON (with the plan in its "plan" field), which
/// job_request_from_json reads once.
struct job_request {
  train_options opts;
  std::optional<plan> saved_plan;
  /// run_training's data sets, in place of the files opts names (in-process only).
  std::optional<dataset> train_data;
  std::optional<dataset> test_data;
  /// In-process only: set (by a signal handler) to stop the job at the next
  /// step boundary, with its final checkpoint and report (an interrupted run).
  std::shared_ptr<const std::atomic<bool>> interrupt;
};

/// The request for `opts`, whose saved plan, if any, is still JSON
/// (opts.plan: a client's, or --plan FILE's): reads and validates it once
/// into saved_plan. Throws runtime::input_error naming the bad field.
job_request job_request_from_options(train_options opts);

/// Parses and validates a client's JSON (train_options JSON). Throws
/// runtime::input_error naming the bad field, nlohmann::json::exception for
/// text that is not JSON.
job_request job_request_from_json(const std::string& text);

} // namespace troupe::actors

// In-process only (run_training and its supervisor): it never crosses a
// process, so it has no wire form; a remote client sends job options JSON.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::job_request)
