#include "actors/cluster/actor_registry.hpp"

#include <stdexcept>

#include "actors/cluster/node_data.hpp"
#include "actors/collectives/collective_group.hpp"
#include "actors/collectives/nccl_group.hpp"
#include "actors/pipeline/data_loader.hpp"
#include "actors/pipeline/device_actor.hpp"
#include "actors/pipeline/layer_shard.hpp"
#include "actors/ps/ps_shard.hpp"
#include "runtime/error.hpp"
#include "runtime/net/caf_error.hpp"

namespace troupe::actors {

namespace {

caf::actor make_device(const nlohmann::json& j, const node_context& node) {
  return spawn_device(node.sys, device_config_from_json(j), device_cores_from_json(j));
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

/// A replica's (or the test set's) loader over the job's data as this node
/// read it; the config's digest must match what the supervisor was told.
caf::actor make_data_loader(const nlohmann::json& j, const node_context& node) {
  if (!node.data)
    throw runtime::input_error("this node holds no data");
  auto held = node.data->get(j.at("data"));
  if (held->summary.at("digest") != j.at("digest"))
    throw runtime::input_error("node " + node.data->node() + " read other data than the job's (" +
                               held->summary.dump() + ", expected digest " + j.at("digest").dump() +
                               ")");
  auto c = loader_config_from_json(j.at("loader"));
  const bool test = j.at("split").get<std::string>() == "test";
  c.data = test ? held->data.test_set : held->data.train_set;
  c.transform = held->data.transform;
  c.real_targets = held->data.real_targets;
  c.courier = node.courier;
  return spawn_data_loader(node.sys, std::move(c));
}

} // namespace

const std::map<std::string, actor_factory>& actor_factories() {
  static const std::map<std::string, actor_factory> table{
      {"device", make_device},
      {"layer_shard", make_layer_shard},
      {"collective", make_collective},
      {"ps_shard", make_ps_shard},
      {"nccl", make_nccl},
      {"data_loader", make_data_loader},
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
