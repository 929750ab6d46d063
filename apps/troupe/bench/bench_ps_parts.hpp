#pragma once

// The parts of `troupe bench ps`: each runs its configurations interleaved
// over the repeats, prints its table and returns its figures as JSON.

#include <filesystem>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "apps/troupe/bench/bench_ps_options.hpp"

namespace troupe::apps::ps_bench {

/// Part 1: push+pull GB/s against the shard count, in process and across
/// processes (bench_ps_pushpull.cpp).
nlohmann::json bench_pushpull(const ps_flags& f, caf::actor_system& sys,
                              const std::filesystem::path& dir, double memcpy_bw);

/// Parts 2 and 3 ("modes", "allreduce", as `parts` names them): training
/// samples/s (bench_ps_training.cpp).
nlohmann::json bench_training(const ps_flags& f, caf::actor_system& sys,
                              const std::vector<std::string>& parts);

} // namespace troupe::apps::ps_bench
