#pragma once

// `troupe bench recovery`: what a lost node costs a job that heals itself
// (detection, re-plan + restore, steps redone, seconds lost), against an
// operator's full restart with --resume and PyTorch's torchrun elastic, and
// what snapshots and periodic checkpoints cost per step (see
// bench_recovery.cpp).

#include <CLI/CLI.hpp>

#include "apps/troupe/commands.hpp"

namespace troupe::apps {

/// Registers `recovery` under `bench`; the action runs it.
command_action add_bench_recovery_command(CLI::App& bench);

} // namespace troupe::apps
