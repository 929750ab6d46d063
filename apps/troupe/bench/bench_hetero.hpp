#pragma once

// `troupe bench hetero` (issue 15): unlike nodes on one machine (two nodes
// pinned to a core each, one under a cgroup CPU quota set by
// scripts/throttle) and what speed-aware balancing gains on them: equal
// shares, --balance auto, the best hand-set shares and the ideal for data
// parallelism at 2:1 and 3:1, a node slowed mid-run, a pipeline's partition,
// and PyTorch DDP under the same throttling (see bench_hetero.cpp).

#include <CLI/CLI.hpp>

#include "apps/troupe/commands.hpp"

namespace troupe::apps {

/// Registers `hetero` under `bench`; the action runs it (exit 77 when this
/// machine cannot throttle a process).
command_action add_bench_hetero_command(CLI::App& bench);

} // namespace troupe::apps
