#pragma once

// What a node can spawn: a table from actor kind ("device", "layer_shard",
// ...) to the factory that builds one from its JSON config. Change it when a
// node learns a new kind of actor (OneFlow's actor registry is the model).

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

class node_data;

/// What a factory gets from the node besides the actor's config.
struct node_context {
  caf::actor_system& sys;
  /// The node's data plane, as a view that stamps the job on its transfers;
  /// null for the in-process node.
  std::shared_ptr<runtime::transport::courier> courier;
  /// The job's data as this node reads it (data loaders).
  std::shared_ptr<node_data> data;
};

/// Builds one actor from its config; throws (runtime::input_error for a bad
/// config) when it cannot.
using actor_factory =
    std::function<caf::actor(const nlohmann::json& config, const node_context& node)>;

/// Every kind a node can spawn, by name.
const std::map<std::string, actor_factory>& actor_factories();

/// The kinds of actor_factories(), comma-separated: for the error naming an
/// unknown kind.
std::string known_actor_kinds();

} // namespace troupe::actors
