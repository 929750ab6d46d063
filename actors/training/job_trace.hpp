#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/plan/plan.hpp"
#include "runtime/telemetry/trace_recorder.hpp"

namespace troupe::actors {

/// The Chrome trace of a training job (`troupe train --trace`): the trainer's
/// events on the track "trainer (pid P)" (tid 0 of its process), and stage k's
/// on "stage k (node N/device, pid P)" (the slot's slot_grid::name: with data
/// parallelism "replica r stage k", with tensor parallelism "... tp rank t";
/// tid = the slot's index in plan::stages + 1, in the process it ran in),
/// and ps shard i's on "ps shard i (node N/device, pid P)" (tid ps_trace_tid(i)),
/// grouped by process ("troupe supervisor, node local (pid P)").
/// `stage_events[k]` is slot k's reply to (get_trace_atom), `ps_events[i]` ps
/// shard i's. Metadata: `run`
/// plus per track its event and dropped counts, the capacity per track and
/// dropped_events in all. Throws runtime::input_error for malformed events.
nlohmann::json job_trace(const plan& topology, const std::vector<std::string>& stage_events,
                         const std::vector<std::string>& ps_events,
                         const runtime::trace_recorder& trainer, nlohmann::json run);

} // namespace troupe::actors
