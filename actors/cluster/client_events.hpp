#pragma once

// The supervisor's side of a client's event stream (job_event.hpp): what it
// tells the client that submitted the running job, and how often.

#include <nlohmann/json.hpp>

#include "actors/cluster/job_event.hpp"
#include "actors/cluster/supervisor_state.hpp"

namespace troupe::actors {

/// Sends the running job's client an event of `kind`, if it asked for events
/// ((run_atom, job_event_atom, options)); nothing otherwise.
void tell_client(supervisor_actor* self, job_event_kind kind, nlohmann::json fields);

/// While the job waits for nodes: how many are ready of how many.
void tell_waiting(supervisor_actor* self);

/// The trainer's progress message `p` as a progress event, at most every
/// 0.25 s (a terminal's bar needs no more) but always an epoch's last step.
/// Its epoch_result message becomes an epoch event and counts as a sign of
/// life (stall detection); true for it: it is no step's progress.
bool forward_progress(supervisor_actor* self, const nlohmann::json& p);

} // namespace troupe::actors
