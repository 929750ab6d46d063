#pragma once

#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster/node_data.hpp"

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

using spawn_atom = caf::atom_constant<caf::atom("spawn")>;
using teardown_atom = caf::atom_constant<caf::atom("teardown")>;
using peer_atom = caf::atom_constant<caf::atom("peer")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using read_data_atom = caf::atom_constant<caf::atom("readdata")>;

/// What a node agent runs with.
struct node_agent_config {
  std::string name = "local";
  /// This process's data plane; null for the in-process node of a
  /// single-process job (everything is local there).
  std::shared_ptr<runtime::transport::courier> courier;
  /// The supervisor it serves: when it goes away the agent stops (and with it
  /// the node process). Null for the in-process node.
  caf::actor supervisor;
  /// Where the job's data files are on this node, when not at the paths the
  /// job names (--data-path FROM=TO; node_data.hpp).
  data_path_map data_paths;
};

/// A node agent: the supervisor's hands on one process. It spawns the actors
/// the supervisor asks for on this process's devices, connects this process's
/// data plane to its peers, reports its health, and stops everything it
/// spawned when told to or when the supervisor dies. Every request uses only
/// built-in types (atoms, strings, actor handles), so even a peer of a
/// mismatched build decodes them:
///
///   (spawn_atom, job, kind, config_json) -> caf::actor
///                           kind: a factory of actor_registry.hpp ("device", "layer_shard", ...);
///                           the actor's courier stamps `job` on its transfers
///   (teardown_atom, job) -> bool   stops every actor it spawned; late transfers of `job`
///                                  are dropped from then on (courier::end_job)
///   (peer_atom, name, host, port, courier_endpoint) -> bool   once the data plane is up
///   (ping_atom) -> std::string                      JSON: pid, actors, transport counters
///   (probe_atom, request, sink) -> std::string      --balance auto: the job's layers measured
///                                                   on this node's devices, and its data plane
///                                                   to `sink` (speed_probe.hpp)
///   (read_data_atom, spec) -> std::string           --data-from nodes: reads and checks the
///                                                   job's data here (off the agent's thread),
///                                                   keeps it for the loaders, answers its
///                                                   summary (node_data.hpp)
///   (stop_atom)                                     tears down and quits normally
///
/// A bad config is answered with an error naming the node and what is wrong.
caf::actor spawn_node_agent(caf::actor_system& sys, node_agent_config cfg);

/// How a process's tensor messages left it, as /status and /metrics show it
/// for every node (in its ping reply) and for the supervisor itself:
/// {"caf": {messages, bytes}, "dataplane": {messages, bytes},
///  "dataplane_peers": {peer: {bytes_sent, bytes_received, frames_sent, frames_received}},
///  "late_transfers": transfers of ended jobs or gone actors, dropped}.
nlohmann::json transport_status(const runtime::transport::courier& c);

} // namespace troupe::actors
