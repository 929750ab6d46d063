#pragma once

// What the supervisor reports about itself: the /status JSON and the
// /metrics Prometheus text. Change it when a reported field or metric changes.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/cluster/supervisor_state.hpp"

namespace troupe::actors {

/// /status's list of job actors: label, kind, node, pid, id.
nlohmann::json actors_json(const std::vector<job_actor>& actors);

/// The running job's actors, in the order /status lists them.
std::vector<job_actor> current_actors(const job_state& job);

/// Nodes, devices, actors and job progress (spawn_supervisor's status_atom).
nlohmann::json status_json(const supervisor_state& st);

/// Adds "busy_fraction" to each stage of the trainer's progress `next`: its
/// device time since `previous` (the growth of compute_seconds) divided by
/// the steps' wall time since then (the growth of train_seconds), in [0, 1].
/// The trainer sends progress every few steps, so both span the same steps.
/// /status and /metrics (troupe_stage_busy_ratio) both show it.
void add_busy_fractions(const nlohmann::json& previous, nlohmann::json& next);

/// Prometheus text (spawn_supervisor's metrics_atom).
std::string metrics_text(const supervisor_state& st);

} // namespace troupe::actors
