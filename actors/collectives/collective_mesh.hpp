#pragma once

// One process's part of a collective group whose ranks live in separate
// processes that meet without a supervisor: a launcher (mpirun, a test, `troupe
// bench allreduce --processes`) hands every process the others' addresses, as
// torch.distributed's rendezvous does. Each process holds one collective_mesh:
// its courier (so blocks > 4 KiB travel over the data plane), its rank
// actor(s), and a small published directory actor through which the other
// processes fetch handles to them.
//
// connect() builds a full mesh with ONE CAF connection per pair of processes
// (the higher rank dials the lower one and introduces itself: two processes
// dialling each other at once may end up with two BASP connections, or none)
// and a data-plane connection per pair, then wires the ranks. A rank actor
// monitors its peers through these connections, so a killed process fails
// the others' pending collectives (collective_group.hpp).
//
// Several groups over the same processes (e.g. one forcing the ring and one
// the tree) share the courier and the connections: one rank actor per config,
// all with this process's rank and the mesh's size.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "actors/collectives/collective_group.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

/// Where one process of the mesh can be reached.
struct mesh_address {
  std::string host = "127.0.0.1";
  std::uint16_t caf_port = 0;  ///< the published directory actor
  std::uint16_t data_port = 0; ///< the courier's data plane
};

class collective_mesh {
public:
  /// Starts the courier (opts.name must be unique in the mesh), spawns one
  /// rank actor per entry of `groups` (rank, size and courier are set here),
  /// and publishes the directory, all listening on `host` with ephemeral
  /// ports. `sys` must have the middleman loaded. Throws std::runtime_error
  /// (std::invalid_argument for a bad rank or size).
  collective_mesh(caf::actor_system& sys, int rank, int size, std::vector<collective_config> groups,
                  runtime::transport::courier_options opts, const std::string& host);
  ~collective_mesh();
  collective_mesh(const collective_mesh&) = delete;
  collective_mesh& operator=(const collective_mesh&) = delete;

  mesh_address address() const;

  /// Connects to every other process (`all` indexed by rank, this one
  /// included) and wires every group. Returns once this process's ranks are
  /// wired and its data plane is up to every peer. Throws std::runtime_error
  /// naming the rank that could not be reached within `timeout`.
  void connect(const std::vector<mesh_address>& all, std::chrono::milliseconds timeout);

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// The rank actor of group `g` (in the order of the constructor's configs).
  const caf::actor& rank_actor(std::size_t g = 0) const { return ranks_.at(g); }
  const std::shared_ptr<runtime::transport::courier>& courier() const { return courier_; }

  /// Ends the rank actors and the directory and stops the courier; must run
  /// before the actor system is destroyed. Idempotent (the destructor calls it).
  void stop();

  struct directory_state;

private:
  caf::actor_system& sys_;
  int rank_;
  int size_;
  std::string host_;
  std::shared_ptr<runtime::transport::courier> courier_;
  std::vector<caf::actor> ranks_;
  caf::actor directory_;
  std::uint16_t caf_port_ = 0;
  std::shared_ptr<directory_state> peers_;
  bool stopped_ = false;
};

} // namespace troupe::actors
