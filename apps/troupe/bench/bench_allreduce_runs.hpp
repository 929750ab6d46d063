#pragma once

// The three ways `troupe bench allreduce` measures: troupe's rank actors in
// one process, troupe's rank processes (`bench allreduce-rank`), and the Gloo
// and OpenMPI peers. Each returns seconds per op of each repetition.

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "actors/plan/collective_algorithms.hpp"
#include "apps/troupe/bench/bench_allreduce_options.hpp"
#include "apps/troupe/bench/bench_util.hpp"

namespace troupe::apps::allreduce_bench {

/// N rank actors in one actor system (no courier); per size, the summary of
/// seconds per op (bench_allreduce_in_process.cpp).
std::vector<summary> bench_in_process(const allreduce_flags& f,
                                      const std::vector<std::size_t>& sizes,
                                      actors::collectives::allreduce_algo algo);

/// `troupe bench allreduce-rank`: serves the line protocol (see the .cpp)
/// until end of input, then ends the process (bench_allreduce_rank.cpp).
int run_rank(const rank_flags& f);

struct process_result {
  std::vector<double> per_op;     ///< seconds per op of each repetition (slowest rank)
  double bytes_sent_per_rank = 0; ///< per op, averaged over ranks
};

/// N rank processes over 127.0.0.1 (logs and key in `dir`); per size.
std::vector<process_result> bench_processes(const allreduce_flags& f,
                                            const std::vector<std::size_t>& sizes,
                                            const std::filesystem::path& dir);

/// The Gloo peer (`exe`), N processes; per size, seconds per op of each
/// repetition (bench_allreduce_peers.cpp).
std::vector<std::vector<double>> bench_gloo(const allreduce_flags& f,
                                            const std::vector<std::size_t>& sizes,
                                            const std::filesystem::path& exe,
                                            const std::filesystem::path& dir, int turn);

/// mpirun and its options (TCP on lo only) for `n` processes of `exe`.
std::vector<std::string> mpirun_command(const std::filesystem::path& mpirun,
                                        const std::filesystem::path& exe, int n);

/// The MPI peer (`exe`) under `mpirun`; per size, as bench_gloo.
std::vector<std::vector<double>> bench_mpi(const allreduce_flags& f,
                                           const std::vector<std::size_t>& sizes,
                                           const std::filesystem::path& mpirun,
                                           const std::filesystem::path& exe,
                                           const std::filesystem::path& dir);

} // namespace troupe::apps::allreduce_bench
