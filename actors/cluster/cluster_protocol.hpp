#pragma once

// How a node joins a supervisor (docs/architecture.md, "How a node joins").
// Every message of the handshake uses only CAF's built-in types (atoms,
// integers, strings, actor handles), so a node of a mismatched build still
// decodes them and gets a clear refusal instead of empty messages.
//
//   node -> supervisor  (hello_atom, protocol_version, message_types_hash, name)
//                       -> challenge JSON {nonce, supervisor}
//   node -> supervisor  (join_atom, join JSON {name, pid, host, cores, devices,
//                        certificate, signature of nonce|name|supervisor})
//                       -> welcome JSON {key, data: {name, host, port}}
//   node: starts its data plane with the cluster key and its node agent
//   node -> supervisor  (ready_atom, name, agent, data host, data port, courier)
//                       -> true once every peer's data plane is connected to it
//
// The nonce is single-use, so a recorded join cannot be replayed; the
// certificate must chain to the cluster CA and name the node, and the
// signature proves the node holds its key (caf_openssl alone accepts any
// certificate of the CA for any name).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <nlohmann/json.hpp>

#include "actors/pipeline/device_actor.hpp"
#include "runtime/net/security/tls_config.hpp"
#include "runtime/net/transport/auth.hpp"

namespace troupe::actors {

using hello_atom = caf::atom_constant<caf::atom("hello")>;
using join_atom = caf::atom_constant<caf::atom("join")>;
using ready_atom = caf::atom_constant<caf::atom("ready")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using metrics_atom = caf::atom_constant<caf::atom("metrics")>;

/// The devices of a node: `--devices cpu:2` is two CPU devices of one BLAS
/// thread each, `cpu:2x4` two of four threads; items are comma-separated.
/// Throws runtime::input_error naming the bad item.
std::vector<device_config> parse_device_list(const std::string& text);

/// What a node tells the supervisor about itself at join.
struct node_description {
  std::string name;
  std::string host; ///< host name (informational)
  long pid = 0;
  unsigned cores = 0;
  std::uint64_t memory_bytes = 0;
  std::vector<device_config> devices;
  std::vector<double> gflops; ///< measured sgemm GFLOP/s per device (0: not measured)
};

nlohmann::json to_json(const node_description& d);
/// Throws runtime::input_error for a malformed description.
node_description node_description_from_json(const nlohmann::json& j);

/// What the supervisor hands a node that proved its identity.
struct welcome {
  runtime::transport::cluster_key key{}; ///< the data plane's HMAC key
  std::string data_name;                 ///< the supervisor process's data-plane peer
  std::string data_host;
  std::uint16_t data_port = 0;
};

/// The node side of hello + join (blocking). `tls` null: a plain loopback
/// cluster, no identity proof. Throws runtime::input_error with the
/// supervisor's reason when it refuses, std::runtime_error when it does not
/// answer within `timeout`.
welcome join_cluster(caf::actor_system& sys, const caf::actor& supervisor,
                     const node_description& self, const runtime::tls_files* tls,
                     std::chrono::milliseconds timeout);

/// The node side of ready (blocking): returns once the supervisor has wired
/// this node's data plane to every peer.
void announce_ready(caf::actor_system& sys, const caf::actor& supervisor, const std::string& name,
                    const caf::actor& agent, const std::string& data_host, std::uint16_t data_port,
                    const caf::actor& courier_endpoint, std::chrono::milliseconds timeout);

} // namespace troupe::actors
