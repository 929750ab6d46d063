#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "runtime/net/transport/auth.hpp"

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

/// How a supervisor runs.
struct supervisor_config {
  std::string name = "supervisor";
  /// Single-process mode: one in-process node ("local") whose devices each
  /// job defines from its own options. Otherwise a cluster supervisor: nodes
  /// join over the network (actors/cluster/cluster_protocol.hpp).
  bool local_node = true;
  /// Cluster: a job waits (up to join_wait) until this many nodes are ready.
  int expect_nodes = 1;
  /// Cluster: if not empty, only these node names may join (a cluster spec).
  std::vector<std::string> allowed_names;
  std::chrono::milliseconds join_wait{120000};
  /// Cluster CA: joining nodes must prove they hold a certificate of it for
  /// the name they claim. Empty: no identity check (plain loopback clusters).
  std::filesystem::path ca;
  /// This process's data plane (cluster mode): the trainer sends inputs to
  /// the first stage through it.
  std::shared_ptr<runtime::transport::courier> courier;
  /// Where nodes reach that data plane.
  std::string data_host = "127.0.0.1";
  /// Handed to each node at join: its data plane authenticates with it.
  runtime::transport::cluster_key key{};
  /// Own liveness check on top of CAF's heartbeats: a node that does not
  /// answer a ping within ping_timeout is declared dead. `troupe supervisor`
  /// sets them from --heartbeat-ms and --timeout-ms (interval + deadline =
  /// the timeout); these defaults serve in-process clusters.
  std::chrono::milliseconds ping_interval{400};
  std::chrono::milliseconds ping_timeout{1200};
  /// Stop (and stop every node) after this many jobs; 0: run until stopped.
  int max_jobs = 0;
};

/// The supervisor actor: takes a job (training options as JSON), plans its
/// topology on the devices of its nodes, has the node agents spawn the
/// layer shards and devices, wires them, runs the data loaders and the
/// trainer itself, monitors every actor and node, and answers
///
///   (run_atom, std::string options_json) -> (std::string report_json, named_tensors params)
///   (run_atom, job_request) -> the same, from a client in the same process
///                   (run_training): options and plan as they are, no JSON
///
/// A job actor or node that fails aborts the job at once: the reply is an
/// error naming the actor or node and its reason, and every other actor of
/// the job is stopped. At the end of a job its actors are torn down. One job
/// runs at a time. It also answers the join protocol (cluster_protocol.hpp),
///   (status_atom) -> std::string   JSON: nodes, devices, actors, job progress
///   (metrics_atom) -> std::string  Prometheus text
///   (stop_atom)                    fails a running job, stops every node, quits
/// Failure handling is kept in one place (abort_job), so automatic recovery
/// (re-placing a failed node's actors and resuming from the last checkpoint)
/// can be added there.
caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_config cfg = {});

} // namespace troupe::actors
