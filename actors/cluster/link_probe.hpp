#pragma once

// --balance auto's link measurement: how fast a node's data plane moves a
// tensor to the supervisor's process, under whatever limits the node runs
// with (a CPU quota slows its transport as much as its kernels). The node
// sends activation-sized tensors through its courier to a sink actor in the
// supervisor's process and waits for each to arrive (a small CAF request the
// sink answers once it holds that tensor), over several quota periods. The
// planner charges every byte a replica or stage sends or receives per step
// at its node's rate (actors/plan/balance.hpp).

#include <cstdint>
#include <memory>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

/// (link_sync_atom, seq) -> bool: answered by the sink once tensor `seq` arrived.
using link_sync_atom = caf::atom_constant<caf::atom("linksync")>;

/// The supervisor's sink for one node's link probe (sequence numbers are
/// the node's own): takes activation_msg (its step is the sequence number)
/// and answers link_sync_atom.
caf::actor spawn_link_sink(caf::actor_system& sys);

/// Node side, blocking (the probe's own thread): sends tensors of `bytes`
/// to `sink` one after another until `min_seconds` passed (at least four);
/// returns bytes per second, 0 when a transfer did not arrive in time.
double measure_link(caf::actor_system& sys, runtime::transport::courier& courier,
                    const caf::actor& sink, std::int64_t bytes, double min_seconds);

} // namespace troupe::actors
