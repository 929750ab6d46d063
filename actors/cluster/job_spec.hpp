#pragma once

// A job's plan and options turned into what its nodes must spawn, as plain
// data (no actors): change it when an actor kind or one of its configs changes.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/pipeline/data_loader.hpp"
#include "actors/plan/plan.hpp"
#include "actors/plan/slot.hpp"
#include "actors/plan/train_options.hpp"

namespace troupe::actors {

/// What a spawned actor is to the job, hence where its handle goes.
enum class spawn_role : std::uint8_t {
  device,  ///< one per plan::devices entry
  shard,   ///< a layer shard, one per plan::stages entry
  tp_rank, ///< a stage's tensor-parallel collective rank, one per shard
  dp_rank, ///< a stage's all-reduce rank between replicas, one per shard
  ps,      ///< a parameter server shard, one per plan::ps_shards entry
  loader,  ///< a data loader on a node: one per replica, then the test set's
};

/// One actor to spawn: where, of which kind, with which config.
struct spawn_order {
  spawn_role role = spawn_role::device;
  /// Its place among the actors of its role: plan order for devices, shards,
  /// tp ranks and ps shards; dp ranks by group, (stage * tp + tp rank) *
  /// replicas + replica, so each all-reduce group is contiguous.
  std::size_t index = 0;
  std::string node;
  std::string kind; ///< the node agent's factory (actor_registry.hpp)
  nlohmann::json config;
  std::string label;           ///< what /status shows and a failure names
  std::optional<slot_id> slot; ///< the layer shard slot it serves, if any
};

/// Every actor of a job on `topology` with `opts`, devices first. `ps_first_step`
/// is the step a resumed job's parameter servers expect first (0: a new job).
std::vector<spawn_order> job_spawns(const plan& topology, const train_options& opts,
                                    std::int64_t ps_first_step = 0);

/// Replica `replica`'s training loader (its data, transform and courier
/// left for where it runs to fill in).
loader_config train_loader_config(const plan& topology, const train_options& opts, int replica);
/// The test set's loader: replica 0, in order, batches of up to 1000.
loader_config test_loader_config(const plan& topology, std::int64_t test_samples);

/// --data-from nodes: each replica's loader on the node of its first stage
/// (tensor-parallel rank 0), the test set's on replica 0's when `data`
/// evaluates. `spec` is the job's data spec (job_inputs.hpp's data_spec),
/// `data` the summary the nodes agreed on (its digest is checked again where
/// each loader is spawned).
std::vector<spawn_order> loader_spawns(const plan& topology, const nlohmann::json& spec,
                                       const nlohmann::json& data);

/// How many actors of `role` `orders` holds.
std::size_t count_role(const std::vector<spawn_order>& orders, spawn_role role);

} // namespace troupe::actors
