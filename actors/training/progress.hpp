#pragma once

// How the job's progress is told while it runs: the progress message to
// report_to (every progress_interval and at each epoch's last step), the bar
// and the epoch summaries on stderr. Change it for what progress shows.

#include <chrono>
#include <cstdint>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// How often steps' progress goes to report_to. Its readers (the supervisor's
/// stall detection, /status, /metrics and client events, which it thins to
/// 4 a second) need no more, and a JSON message per step cost about 80 us of
/// CPU between two steps (its dump here and its parse in the supervisor's
/// process), 1.5% of a single-device MLP step.
inline constexpr std::chrono::milliseconds progress_interval{50};

/// Whether a finished step's progress goes out at `now`: the run's first, an
/// epoch's or the run's last (`last`), or progress_interval after the one
/// sent `last_sent`.
bool progress_due(clock_type::time_point last_sent, clock_type::time_point now, bool last);

/// Tells report_to (the supervisor) that a step of `step_seconds` over
/// `samples` samples is done (step_done_atom), and how the job is going
/// (progress_atom: /status, /metrics) when progress_due; with
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
