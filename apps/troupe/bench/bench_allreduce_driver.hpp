#pragma once

// The actor that runs timed all-reduces back to back over a set of rank
// actors, and the measurement built on it (warm-up, barrier, repetitions).

#include <chrono>
#include <cstdint>
#include <vector>

#include <caf/all.hpp>

#include "runtime/tensor.hpp"

namespace troupe::apps::allreduce_bench {

using clock_type = std::chrono::steady_clock;

using bench_run_atom = caf::atom_constant<caf::atom("benchrun")>;

/// Runs all-reduces over `ranks` (rank r reduces inputs[r]) back to back: the
/// next op starts when every rank has answered the previous one. Each result
/// is spot-checked against `expect` (every input is constant). Answers
/// (bench_run_atom, iters) with the seconds the ops took.
struct driver_state {
  std::vector<caf::actor> ranks;
  std::vector<runtime::tensor> inputs;
  float expect = 0;
  std::int64_t next_op = 0;
  int left = 0;
  std::size_t pending = 0;
  bool failed = false;
  clock_type::time_point t0;
  caf::response_promise rp;
  static inline const char* name = "allreduce_bench_driver";
};
using driver_actor = caf::stateful_actor<driver_state>;

/// A driver (spawn with sys.spawn(driver, ...)): all-reduces over `ranks`
/// (rank r reduces inputs[r]), op ids from `first_op`; each result is
/// spot-checked against `expect`.
caf::behavior driver(driver_actor* self, std::vector<caf::actor> ranks,
                     std::vector<runtime::tensor> inputs, float expect, std::int64_t first_op);

/// Constant inputs (rank r holds r + 1), so the sum n(n + 1)/2 is exact.
std::vector<runtime::tensor> constant_inputs(const std::vector<int>& ranks, std::int64_t numel);

/// n(n + 1)/2: the sum constant_inputs gives over n ranks.
float expected_sum(int n);

/// Seconds of `iters` ops of driver `d`; throws with the error.
double run_driver(caf::actor_system& sys, const caf::actor& d, int iters);

// Op ids: the timed ops count up from 1, the barriers from here (equal on
// every rank because every rank runs the same commands).
constexpr std::int64_t barrier_ops = std::int64_t{1} << 40;

/// One size: warm-up, then per repetition a barrier and `iters` timed ops.

/// One size: warm-up, then per repetition a barrier and `iters` timed ops.
/// Returns seconds per op of each repetition.
std::vector<double> measure(caf::actor_system& sys, const caf::actor& timed,
                            const caf::actor& barrier, int warmup, int reps, int iters);

} // namespace troupe::apps::allreduce_bench
