#pragma once

// The push+pull worker actor of `bench ps` and the requests that drive it and
// read the shards' counters. Change here when a round changes.

#include <chrono>
#include <memory>
#include <vector>

#include <caf/all.hpp>

#include "actors/plan/ps_assignment.hpp"
#include "actors/ps/ps_client.hpp"
#include "models/layers/parameter.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::apps::ps_bench {

using clock_type = std::chrono::steady_clock;

/// (psb_run_atom, int32 rounds) -> double seconds the rounds took.
using psb_run_atom = caf::atom_constant<caf::atom("psbrun")>;
/// (psb_get_atom) -> (string courier name, actor main, actor courier endpoint)
using psb_get_atom = caf::atom_constant<caf::atom("psbget")>;
/// (psb_hello_atom, string courier name, int32 data port, actor endpoint) -> bool
using psb_hello_atom = caf::atom_constant<caf::atom("psbhello")>;

/// A worker of the push+pull benchmark: per round it pushes its gradients of
/// step s through its ps_client, pulls the parameters for s + 1 and applies
/// them. Answers (psb_run_atom, rounds) once it has done them.
struct worker_state {
  actors::ps_client client;
  std::vector<models::parameter> params;
  std::vector<models::parameter*> ptrs;
  std::int64_t next_step = 0; ///< the step it pushes next
  std::int32_t left = 0;
  float lr = 0;
  float scale = 1;
  clock_type::time_point t0;
  caf::response_promise rp;
  bool failed = false;
  static inline const char* name = "ps_bench_worker";
};
using worker_actor = caf::stateful_actor<worker_state>;

/// A worker (spawn with sys.spawn(worker, ...)) of shards `shards`; with a
/// courier, its pushes and pulls go over the data plane.
caf::behavior worker(worker_actor* self, int index, actors::ps_assignment a,
                     std::vector<caf::actor> shards,
                     std::shared_ptr<runtime::transport::courier> courier,
                     std::vector<models::parameter> params, float lr);

/// Runs `rounds` rounds on every worker at once; the slowest one's seconds.
double run_workers(caf::actor_system& sys, const std::vector<caf::actor>& workers, int rounds);

/// The shards' counters summed: bytes in and out, update seconds.
struct shard_totals {
  double bytes_in = 0, bytes_out = 0, apply_seconds = 0;
  shard_totals operator-(const shard_totals& o) const {
    return {bytes_in - o.bytes_in, bytes_out - o.bytes_out, apply_seconds - o.apply_seconds};
  }
};

shard_totals shard_stats(caf::actor_system& sys, const std::vector<caf::actor>& shards);

/// One measurement: seconds per round of the timed rounds and the shards'
/// counters over them.
struct pushpull_run {
  double round_seconds = 0;
  shard_totals shards;
};

} // namespace troupe::apps::ps_bench
