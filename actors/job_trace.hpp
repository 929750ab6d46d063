#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/plan.hpp"
#include "runtime/trace_recorder.hpp"

namespace troupe::actors {

/// The Chrome trace of a training job (`troupe train --trace`): the trainer's
/// events on the track "trainer (pid P)" (tid 0 of its process), and stage k's
/// on "stage k (node N/device, pid P)" (tid k + 1 of the process it ran in;
/// with data parallelism "replica r stage k", tid r * depth + k + 1),
/// grouped by process ("troupe supervisor, node local (pid P)").
/// `stage_events[k]` is stage k's reply to (get_trace_atom). Metadata: `run`
/// plus per track its event and dropped counts, the capacity per track and
/// dropped_events in all. Throws runtime::input_error for malformed events.
nlohmann::json job_trace(const plan& topology, const std::vector<std::string>& stage_events,
                         const runtime::trace_recorder& trainer, nlohmann::json run);

} // namespace troupe::actors
