#pragma once

// Stall diagnosis: a running job whose step does not complete in time is
// asked what each of its actors does (doing_atom), the wait graph goes into
// one report (log, /status, the report), and the job recovers
// (recovery.hpp). The same answers, polled every second, show in /status.
// Change it when an actor learns to say more about what it waits for.

#include "actors/cluster/supervisor_state.hpp"

namespace troupe::actors {

/// Called every supervisor tick: a step that has not completed within the
/// stall timeout is diagnosed (who waits for whom, who is silent), then the
/// job recovers.
void check_stall(supervisor_actor* self);

/// Asks the running job's trainer and layer shards what they do (doing_atom)
/// for /status; an actor that does not answer within a second shows as silent.
void poll_doing(supervisor_actor* self);

} // namespace troupe::actors
