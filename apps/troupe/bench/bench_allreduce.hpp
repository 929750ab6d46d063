#pragma once

// `troupe bench allreduce`: time per f32 all-reduce, algbw and busbw
// (nccl-tests definitions) of troupe's collective rank actors in process and
// across processes over 127.0.0.1, next to Gloo's ring all-reduce and
// OpenMPI's MPI_Allreduce over TCP on the same sizes (see bench_allreduce.cpp).

#include <cstddef>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "apps/troupe/commands.hpp"

namespace troupe::apps {

/// Registers `allreduce` and the hidden `allreduce-rank` (one rank process of
/// `allreduce`, this executable re-run) under `bench`. The action runs
/// whichever was selected; exit_bad_input when neither was.
command_action add_bench_allreduce_command(CLI::App& bench);

/// Byte sizes from a list like "4K,64K,1M,4M,64M" (K, M, G are powers of
/// 1024; a plain number is bytes). Each must be a positive multiple of 4
/// (f32 elements) up to 1 GiB. Throws runtime::input_error naming the bad item.
std::vector<std::size_t> parse_byte_sizes(const std::string& list);

} // namespace troupe::apps
