#pragma once

// The supervisor's side of --balance auto once a job runs: the trainer's
// rebalances are logged and kept for /status and the report, and a new
// pipeline split is carried out as a re-plan that loses nothing
// (recovery.hpp, replan_with). The measurements before the first generation
// are speed_probe.hpp's.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/cluster/supervisor_state.hpp"

namespace troupe::actors {

/// (rebalance_atom, JSON) from the current generation's trainer.
void on_rebalance(supervisor_actor* self, const std::string& entry);

/// The job's split moves within the rebalancer's settle_seconds (wall
/// clock): a new generation's trainer undoes none (split_rebalancer).
std::vector<split_move> recent_split_moves(const job_state& job);

/// The report's and /status's "balance": mode, what the probe measured
/// (samples/s per device), the current shares and split, the predicted step
/// time, and every rebalance of the job so far.
nlohmann::json balance_json(const job_state& job);

} // namespace troupe::actors
