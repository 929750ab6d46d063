#pragma once

// `troupe bench pipeline`: throughput, bubble (measured from the trace and
// predicted), peak activation memory and runtime overhead of each pipeline
// schedule, in process or across processes (see bench_pipeline.cpp).

#include <CLI/CLI.hpp>

#include "apps/troupe/commands.hpp"

namespace troupe::apps {

/// Registers `pipeline` under `bench`; the action runs it.
command_action add_bench_pipeline_command(CLI::App& bench);

} // namespace troupe::apps
