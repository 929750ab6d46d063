#pragma once

// The run's outputs at its end: the --report JSON, the per-shard totals it
// is built from, the parameter servers' counters and the --trace file.
// Change it when the report or the trace shows something new.

#include <functional>

#include <nlohmann/json.hpp>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// Adds a training step's report of shard `index` to the run's totals.
void add_to_totals(trainer_state& st, std::size_t index, const actors::stage_report& r);

/// The --report JSON of the run so far.
nlohmann::json make_report(const trainer_state& st);

/// Parameter servers: gathers their counters into st.totals.ps_stats, then `then`.
void gather_ps_stats(trainer_actor* self, std::function<void()> then);

/// --trace: gathers every stage's events, adds the trainer's own and writes
/// the file (atomically: a reader never sees half a trace), then `then`.
void write_trace(trainer_actor* self, std::function<void()> then);

} // namespace troupe::actors::training
