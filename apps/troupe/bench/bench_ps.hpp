#pragma once

// `troupe bench ps`: the parameter servers (actors/ps/ps_shard.hpp) measured
// three ways (see bench_ps.cpp): push+pull throughput of W workers against S
// ps shards, in process and across processes over the data plane; training
// samples/s of sync, async and ssp workers with and without a slowed worker;
// and sync parameter servers against all-reduce data parallelism.

#include <CLI/CLI.hpp>

#include "apps/troupe/commands.hpp"

namespace troupe::apps {

/// Registers `ps` and the hidden `ps-rank` (one shard or worker process of
/// `ps`, this executable re-run) under `bench`. The action runs whichever
/// was selected; exit_bad_input when neither was.
command_action add_bench_ps_command(CLI::App& bench);

} // namespace troupe::apps
