#pragma once

// The last two phases of a job's start, once its nodes spawned every actor:
// wiring them to each other, then the data loaders and the trainer. Change it
// when actors of a job gain a connection or the trainer a new input.

#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

#include <caf/actor.hpp>

#include "actors/cluster/job_spec.hpp"
#include "actors/cluster/supervisor_state.hpp"
#include "actors/pipeline/data_loader.hpp"
#include "runtime/io/checkpoint.hpp"

namespace troupe::actors {

/// The actors a job's nodes spawned for it, by role, each list indexed as
/// spawn_order::index says.
struct job_actors {
  std::vector<caf::actor> devices, shards, dp_ranks, tp_ranks, ps;
  /// --data-from nodes: each replica's loader, then the test set's if any.
  std::vector<caf::actor> loaders;
  std::size_t left = 0; ///< spawn replies still missing

  explicit job_actors(const std::vector<spawn_order>& orders);
  /// Where the actor spawned for `o` goes.
  caf::actor& at(const spawn_order& o);
};

/// Connects the running job's actors: pipeline neighbours, the all-reduce
/// groups between replicas, the tensor-parallel groups and the parameter
/// servers. Runs `wired` once every actor confirmed; a failure aborts the job.
void wire_job(supervisor_actor* self, const job_actors& spawned, std::function<void()> wired);

/// Starts the trainer of a wired job, which then runs: with the loaders the
/// nodes spawned (--data-from nodes), or with loaders spawned here over `in`'s
/// data sets, which send the inputs to the nodes.
void start_trainer(supervisor_actor* self, const job_actors& spawned, const job_inputs& in,
                   std::optional<runtime::checkpoint> resume);

} // namespace troupe::actors
