#pragma once

// `troupe bench allreduce`'s flags (the driver's and a rank process's) and the
// figures every part computes alike. Change here when the bench gains a flag.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <string>

#include "actors/collectives/collective_group.hpp"

namespace troupe::apps::allreduce_bench {

using namespace std::chrono_literals;

/// An op that takes longer means a rank is stuck: give up.
constexpr auto op_timeout = 120s;

struct allreduce_flags {
  int ranks = 4;
  std::string sizes = "4K,64K,1M,4M,64M";
  bool processes_only = false;
  bool in_process_only = false;
  bool no_peers = false;
  std::string algo = "auto";
  int reps = 10;
  int turns = 1;
  int warmup = 3;
  int threads = 0; ///< CAF scheduler threads per actor system (0: cores, 1 in rank processes)
  std::size_t segment_bytes = actors::collective_config{}.segment_bytes;
  std::string json;
};

struct rank_flags {
  int rank = 0;
  int ranks = 1;
  std::string key_file;
  std::string algo = "auto";
  int threads = 1;
  std::size_t segment_bytes = actors::collective_config{}.segment_bytes;
};

/// Ops per timed repetition: 16 MiB of buffers, 1 to 50 ops.
inline int iterations_for(std::size_t bytes) {
  return static_cast<int>(std::clamp<std::size_t>((std::size_t{16} << 20) / bytes, 1, 50));
}

/// busbw / algbw for `n` ranks (nccl-tests): 2(n-1)/n.
inline double bus_factor(int n) {
  return n > 1 ? 2.0 * (n - 1) / n : 0.0;
}

} // namespace troupe::apps::allreduce_bench
