#include "actors/cluster/actor_registry.hpp"

#include <stdexcept>

#include "actors/collectives/collective_group.hpp"
#include "actors/collectives/nccl_group.hpp"
#include "actors/pipeline/device_actor.hpp"
#include "actors/pipeline/layer_shard.hpp"
#include "actors/ps/ps_shard.hpp"
#include "runtime/error.hpp"
#include "runtime/net/caf_error.hpp"

namespace troupe::actors {

namespace {

caf::actor make_device(const nlohmann::json& j, const node_context& node) {
  return spawn_device(node.sys, device_config_from_json(j));
}

caf::actor make_layer_shard(const nlohmann::json& j, const node_context& node) {
  auto c = shard_config_from_json(j);
  c.courier = node.courier;
  return spawn_layer_shard(node.sys, std::move(c));
}

caf::actor make_collective(const nlohmann::json& j, const node_context& node) {
  auto c = collective_config_from_json(j);
  c.courier = node.courier;
  return spawn_collective_rank(node.sys, std::move(c));
}

caf::actor make_ps_shard(const nlohmann::json& j, const node_context& node) {
  auto c = ps_shard_config_from_json(j);
  c.courier = node.courier;
  return spawn_ps_shard(node.sys, std::move(c));
}

/// Replicas on GPUs: the collective protocol, executed by NCCL.
caf::actor make_nccl(const nlohmann::json& j, const node_context& node) {
  nccl_rank_config c;
  c.rank = j.at("rank").get<int>();
  c.size = j.at("size").get<int>();
  auto dev = runtime::parse_device(j.at("device").get<std::string>());
  if (!dev || !dev->is_cuda())
    throw runtime::input_error("nccl rank on '" + j.at("device").get<std::string>() +
                               "', not a CUDA device");
  c.device = *dev;
  auto r = spawn_nccl_rank(node.sys, std::move(c));
  if (!r)
    throw std::runtime_error(runtime::describe(node.sys, r.error()));
  return *r;
}

} // namespace

const std::map<std::string, actor_factory>& actor_factories() {
  static const std::map<std::string, actor_factory> table{
      {"device", make_device},
      {"layer_shard", make_layer_shard},
      {"collective", make_collective},
      {"ps_shard", make_ps_shard},
      {"nccl", make_nccl},
  };
  return table;
}

std::string known_actor_kinds() {
  std::string known;
  for (const auto& [name, f] : actor_factories())
    known += (known.empty() ? "" : ", ") + name;
  return known;
}

} // namespace troupe::actors
