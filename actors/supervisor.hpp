#pragma once

#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

namespace troupe::actors {

/// The supervisor actor: takes a job (training options as JSON), plans its
/// topology, spawns and wires its actors (devices, layer shards, data loaders,
/// trainer), monitors every one of them, and answers
///
///   (run_atom, std::string options_json) -> (std::string report_json, named_tensors params)
///
/// A job actor that fails aborts the job at once: the reply is an error naming
/// the actor and its reason, and every other actor of the job is stopped. At
/// the end of a job its actors are torn down. One job runs at a time.
caf::actor spawn_supervisor(caf::actor_system& sys);

} // namespace troupe::actors
