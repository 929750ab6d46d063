#pragma once

// --checkpoint DIR onto a directory that already holds a checkpoint: refused
// unless --overwrite (or --resume of that same checkpoint), so that a run never
// silently replaces the progress of another.

#include "actors/plan/plan.hpp"
#include "actors/plan/train_options.hpp"

namespace troupe::actors {

/// Throws runtime::input_error when opts.checkpoint_dir holds a checkpoint
/// and neither opts.overwrite nor opts.resume_dir (the same directory) says
/// to use it: naming the model or topology that differs from `topology`'s, or,
/// for the same ones, "pass --resume DIR to continue or --overwrite".
void check_checkpoint_target(const train_options& opts, const plan& topology);

} // namespace troupe::actors
