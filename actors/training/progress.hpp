#pragma once

// How the job's progress is told while it runs: the progress message to
// report_to after every step, the bar and the epoch summaries on stderr.
// Change it for what progress shows.

#include <cstdint>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// Tells report_to (the supervisor: /status, /metrics) how the job is going
/// after a step of `step_seconds` over `samples` samples, and with
/// opts.progress updates the bar (`epoch_end`: ends its line).
void show_step_progress(trainer_actor* self, double step_seconds, std::int64_t samples,
                        bool epoch_end);

/// Tells report_to the finished epoch's entry of the report's epoch log, as
/// a progress message {"epoch_result": {...}, "step"} (a client shows it).
void tell_epoch_result(trainer_actor* self);

/// With opts.progress, the epoch's summary line: its train loss and the
/// evaluation's result.
void print_epoch_summary(const trainer_state& st);

} // namespace troupe::actors::training
