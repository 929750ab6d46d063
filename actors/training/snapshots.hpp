#pragma once

// Recovery's restore points, taken by the trainer at step boundaries without
// stopping training: snapshots of the model and optimizer state sent to the
// supervisor's process, periodic checkpoints written in the background, the
// salvage of a failed step's state from the replicas still alive, and the
// trainer's part of a stall report. Change it when the model is held
// somewhere new or a restore point gains a field.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/typed_response_promise.hpp>
#include <nlohmann/json.hpp>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// Sets the snapshot interval from the options (auto: 50 steps; none when
/// the job does not recover).
void init_snapshots(trainer_state& st);

/// At a step boundary (st.step steps done): starts a snapshot and a periodic
/// checkpoint when due, both in the background. Returns true when the
/// trainer must stop here: a re-plan asked for a snapshot (pause_for_snapshot)
/// and gets it.
bool at_step_boundary(trainer_actor* self);

/// (snapshot_atom) from the supervisor: answers a snapshot at the next step
/// boundary, where the trainer stops.
void pause_for_snapshot(trainer_actor* self, caf::typed_response_promise<job_snapshot> rp);

/// (salvage_atom, lost): the model from the live replicas' layer shards, or
/// with parameter servers from the ps shards (`lost`: the state owners that
/// are gone), mid-step, with the trainer's position at the step they hold.
/// An error when a stage has no live replica, a ps shard is lost, or the
/// parts disagree on their step (sync modes).
void salvage(trainer_actor* self, std::vector<caf::actor> lost,
             caf::typed_response_promise<job_snapshot> rp);

/// Writes the checkpoint of `snap` into opts.checkpoint_dir on a thread of
/// its own; (checkpointed_atom, step, error) comes back when it is done.
void write_in_background(trainer_actor* self, job_snapshot snap);

/// (checkpointed_atom, step, error) from the background writer.
void on_checkpointed(trainer_actor* self, std::int64_t step, const std::string& error);

/// The trainer's part of a stall report: the step in flight and the shards
/// whose report of it is missing.
nlohmann::json trainer_doing(const trainer_state& st);

} // namespace troupe::actors::training
