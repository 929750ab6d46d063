#include "actors/cluster/job_spec.hpp"

#include <algorithm>
#include <map>

#include "actors/collectives/collective_group.hpp"
#include "actors/pipeline/device_actor.hpp"
#include "actors/pipeline/layer_shard.hpp"
#include "actors/plan/collective_backend.hpp"
#include "actors/ps/ps_shard.hpp"

namespace troupe::actors {

namespace {

std::string where(const device_slot& d) {
  return " on " + d.node + "/" + d.name;
}

/// Where a layer shard's config keeps the step of an injected fault of `kind`.
std::int64_t& fault_step_of(shard_config& c, fault_kind kind) {
  switch (kind) {
  case fault_kind::perturb:
    return c.perturb_step;
  case fault_kind::hang:
    return c.hang_step;
  case fault_kind::exit:
    return c.exit_step;
  case fault_kind::cut:
    return c.cut_step;
  case fault_kind::fail:
  case fault_kind::probe: // the node's speed probe, not a shard (speed_probe.cpp)
    break;
  }
  return c.fault_step;
}

shard_config shard_config_of(const plan& topology, const train_options& opts, const stage_slot& s,
                             const fault_spec& fault) {
  shard_config c;
  c.stage = s.stage;
  c.stages = topology.depth();
  c.replica = s.replica;
  c.replicas = topology.replicas;
  c.tp_rank = s.tp_rank;
  c.tp = topology.tp;
  c.bucket_bytes = opts.bucket_bytes;
  c.check_replicas = opts.check_replicas;
  c.model = topology.model;
  c.chunks = s.chunks;
  c.optimizer = opts.optimizer_config();
  c.seed = opts.seed;
  c.schedule = topology.schedule;
  c.trace = !opts.trace_file.empty();
  if (fault.stage == s.stage && fault.replica == s.replica && s.tp_rank == 0)
    fault_step_of(c, fault.kind) = fault.step;
  if (opts.slow_stage == s.stage && (opts.slow_replica < 0 || opts.slow_replica == s.replica))
    c.slow_factor = opts.slow_factor;
  c.clip_norm = opts.clip_norm;
  if (!topology.ps_shards.empty()) {
    c.ps_layout = topology.ps_layout;
    c.ps = topology.ps_mode;
  }
  return c;
}

collective_config collective_config_of(const train_options& opts, int rank, int size) {
  collective_config g;
  g.rank = rank;
  g.size = size;
  g.algo = collectives::parse_allreduce_algo(opts.allreduce);
  g.tree_threshold_bytes = static_cast<std::size_t>(opts.tree_threshold_bytes);
  return g;
}

/// Rank `s.replica` of stage s's all-reduce group between replicas, in the
/// shard's process: an NCCL rank when every replica of the stage is on a GPU
/// (and this build has NCCL), a collective rank actor otherwise.
spawn_order dp_rank_of(const plan& topology, const train_options& opts, const stage_slot& s,
                       const std::string& name) {
  const auto& d = topology.devices[s.device];
  std::vector<runtime::device> group_devices;
  for (int r = 0; r < topology.replicas; ++r)
    group_devices.push_back(topology.devices[topology.slot(r, s.stage, s.tp_rank).device].where);
  const auto backend =
      choose_collective_backend(group_devices, group_devices.front().is_cuda() && nccl_available());
  auto config = to_json(collective_config_of(opts, s.replica, topology.replicas));
  if (backend == collective_backend::nccl)
    config["device"] = runtime::to_string(d.where);
  const auto index =
      static_cast<std::size_t>((s.stage * topology.tp + s.tp_rank) * topology.replicas + s.replica);
  return {spawn_role::dp_rank,
          index,
          d.node,
          backend == collective_backend::nccl ? "nccl" : "collective",
          std::move(config),
          "collective rank " + std::to_string(s.replica) + " of " + name + where(d),
          s.id()};
}

/// Per device: with `pin`, consecutive cores of its node, as many as its
/// threads (a node's CPU devices in plan order); else none.
std::vector<std::vector<int>> device_cores(const plan& topology, bool pin) {
  std::vector<std::vector<int>> cores(topology.devices.size());
  std::map<std::string, int> next; // per node
  for (std::size_t i = 0; pin && i < topology.devices.size(); ++i) {
    const auto& d = topology.devices[i];
    if (d.where.kind() != runtime::device_kind::cpu)
      continue;
    auto& k = next[d.node];
    for (int t = 0; t < d.threads; ++t)
      cores[i].push_back(k++);
  }
  return cores;
}

ps_shard_config ps_config_of(const plan& topology, const train_options& opts, const ps_slot& slot,
                             const fault_spec& fault, std::int64_t first_step) {
  ps_shard_config c;
  c.shard = slot.shard;
  c.assignment = topology.ps_layout;
  c.workers = topology.replicas;
  c.mode = topology.ps_mode;
  c.staleness = topology.staleness;
  c.first_step = first_step;
  c.optimizer = opts.optimizer_config();
  c.model = topology.model;
  c.seed = opts.seed;
  if (fault.ps == slot.shard)
    c.fault_step = fault.step;
  c.trace = !opts.trace_file.empty();
  return c;
}

} // namespace

std::vector<spawn_order> job_spawns(const plan& topology, const train_options& opts,
                                    std::int64_t ps_first_step) {
  std::vector<spawn_order> r;
  auto cores = device_cores(topology, opts.pin_cores);
  for (std::size_t i = 0; i < topology.devices.size(); ++i) {
    const auto& d = topology.devices[i];
    auto config = to_json(device_config{d.name, d.where, d.threads, opts.gemm});
    if (!cores[i].empty())
      config["cores"] = cores[i];
    r.push_back({spawn_role::device, i, d.node, "device", std::move(config),
                 "device " + d.node + "/" + d.name, std::nullopt});
  }
  const auto fault = parse_fault(opts.fault);
  const auto grid = topology.grid();
  const bool dp_ranks = topology.replicas > 1 && topology.ps_shards.empty();
  for (std::size_t j = 0; j < topology.stages.size(); ++j) {
    const auto& s = topology.stages[j];
    const auto& d = topology.devices[s.device];
    const auto name = grid.name(s.id());
    r.push_back({spawn_role::shard, j, d.node, "layer_shard",
                 to_json(shard_config_of(topology, opts, s, fault)),
                 "layer_shard " + name + where(d), s.id()});
    if (topology.tp > 1) // rank t of the stage's tensor-parallel group, in the shard's process
      r.push_back({spawn_role::tp_rank, j, d.node, "collective",
                   to_json(collective_config_of(opts, s.tp_rank, topology.tp)),
                   "tensor-parallel rank of " + name + where(d), s.id()});
    if (dp_ranks)
      r.push_back(dp_rank_of(topology, opts, s, name));
  }
  for (std::size_t i = 0; i < topology.ps_shards.size(); ++i) {
    const auto& slot = topology.ps_shards[i];
    const auto& d = topology.devices[slot.device];
    r.push_back({spawn_role::ps, i, d.node, "ps_shard",
                 to_json(ps_config_of(topology, opts, slot, fault, ps_first_step)),
                 "ps_shard " + std::to_string(slot.shard) + where(d), std::nullopt});
  }
  return r;
}

loader_config train_loader_config(const plan& topology, const train_options& opts, int replica) {
  loader_config c;
  c.sample_shape = topology.model.input_shape;
  c.input_dtype = topology.model.input_dtype;
  c.parts = topology.microbatches;
  c.seed = opts.seed;
  c.batch = opts.batch;
  c.shares = topology.batch_shares;
  c.replica = replica;
  return c;
}

loader_config test_loader_config(const plan& topology, std::int64_t test_samples) {
  loader_config c;
  c.sample_shape = topology.model.input_shape;
  c.input_dtype = topology.model.input_dtype;
  c.parts = topology.microbatches;
  c.shares = {1.0};
  c.replica = 0;
  c.shuffle = false;
  c.batch = std::max<std::int64_t>(1, std::min<std::int64_t>(1000, test_samples));
  return c;
}

std::vector<spawn_order> loader_spawns(const plan& topology, const nlohmann::json& spec,
                                       const nlohmann::json& data) {
  const auto opts = train_options_from_json(spec.at("options"));
  std::vector<spawn_order> r;
  auto order = [&](int replica, std::size_t index, const std::string& split, const loader_config& c,
                   std::string label) {
    const auto& d = topology.devices[topology.slot(replica, 0, 0).device];
    r.push_back(
        {spawn_role::loader,
         index,
         d.node,
         "data_loader",
         {{"data", spec}, {"digest", data.at("digest")}, {"split", split}, {"loader", to_json(c)}},
         std::move(label) + " on " + d.node,
         std::nullopt});
  };
  for (int k = 0; k < topology.replicas; ++k)
    order(k, static_cast<std::size_t>(k), "train", train_loader_config(topology, opts, k),
          topology.replicas == 1 ? "data_loader (train)"
                                 : "data_loader (train, replica " + std::to_string(k) + ")");
  if (data.at("evaluate").get<bool>())
    order(0, static_cast<std::size_t>(topology.replicas), "test",
          test_loader_config(topology, data.at("test_samples").get<std::int64_t>()),
          "data_loader (test)");
  return r;
}

std::size_t count_role(const std::vector<spawn_order>& orders, spawn_role role) {
  return static_cast<std::size_t>(
      std::count_if(orders.begin(), orders.end(), [&](const auto& o) { return o.role == role; }));
}

} // namespace troupe::actors
