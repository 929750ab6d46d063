#pragma once

// `troupe bench transport`: one tensor at a time between two processes over
// loopback through the data plane, through CAF alone and through a plain TCP
// socket, in the same run (see bench_transport.cpp).

#include <CLI/CLI.hpp>

#include "apps/troupe/commands.hpp"

namespace troupe::apps {

/// Registers `transport` and the hidden `transport-peer` (the receiver
/// process it re-executes this binary as) under `bench`. The action runs
/// whichever of the two was selected; exit_bad_input when neither was.
command_action add_bench_transport_command(CLI::App& bench);

} // namespace troupe::apps
