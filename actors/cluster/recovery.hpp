#pragma once

// How the supervisor heals a job: a lost actor or node, or a stall, ends the
// job's generation; its state is restored from the cheapest source (the live
// data-parallel replicas, the last snapshot, the last checkpoint, else the
// initial parameters); the job is re-planned on the devices left plus any
// spare node (data parallelism, then pipeline depth, then tensor parallelism
// shrinking until a plan fits) and continues as a new generation. When nodes
// join a shrunk job, a planned re-plan grows it back at a step boundary.
// Change it when a failure is handled differently or a restore source is
// added.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "actors/cluster/recovery_state.hpp"
#include "actors/cluster/supervisor_state.hpp"

namespace troupe::actors {

/// A running job's actor or node was lost, or it stalled. With restarts left
/// the job recovers; otherwise it fails naming every failure it saw.
/// During a recovery further failures are only recorded.
void job_failed(supervisor_actor* self, failure f);

/// The trainer's restore points: a snapshot, a checkpoint complete on disk.
void on_snapshot(supervisor_actor* self, job_snapshot s);
void on_checkpointed(supervisor_actor* self, std::int64_t step);

/// A sign of life from the trainer: its progress message (stall detection).
void on_progress(supervisor_actor* self);
/// The trainer finished a step of `seconds`, `step` steps done (stall
/// detection, its timeout, the failed step and seconds lost of a restart).
void on_step_done(supervisor_actor* self, std::int64_t step, double seconds);

/// A new generation's trainer runs.
void generation_running(supervisor_actor* self);

/// A node became ready: a recovery waiting for devices tries again, and a
/// job running on fewer devices than asked for grows back.
void on_node_ready(supervisor_actor* self);

/// A planned re-plan that loses nothing (a rebalance moving layers between
/// stages): the trainer stops at a step boundary with a snapshot, and the
/// next generation runs `next` from it. Ignored unless the job is running.
void replan_with(supervisor_actor* self, plan next, const std::string& why);

/// (replan_atom, wire): a recovery's delayed re-plan (back-off, waiting for nodes).
using replan_atom = caf::atom_constant<caf::atom("replan")>;
void on_replan(supervisor_actor* self, std::uint64_t wire);

/// The recovery history for /status and the report: restarts, failures,
/// degrees per step range, the last stall report.
nlohmann::json recovery_json(const job_state& job);

/// The restart figures printed with the plan: max restarts, snapshot interval.
std::string recovery_summary(const train_options& opts);

} // namespace troupe::actors
