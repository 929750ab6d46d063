#pragma once

// Push+pull across processes: `troupe bench ps-rank` (one shard or worker
// process) and the driver's side that starts and drives S + W of them.

#include <filesystem>

#include "apps/troupe/bench/bench_ps_options.hpp"
#include "apps/troupe/bench/bench_ps_worker.hpp"

namespace troupe::apps::ps_bench {

/// `troupe bench ps-rank`: serves the line protocol (see the .cpp) on
/// stdin/stdout until end of input, then ends the process.
int run_rank(const rank_flags& f);

/// S shard processes and W worker processes, wired; one measurement (logs
/// and the cluster key in `dir`, `index` names this measurement's logs).
pushpull_run pushpull_processes(const ps_flags& f, int s, const std::filesystem::path& dir,
                                int index);

} // namespace troupe::apps::ps_bench
