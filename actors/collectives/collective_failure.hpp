#pragma once

// How a collective rank turns a peer's death into the group's error. Both
// backends (collective_group.hpp, nccl_group.hpp) fail a rank with
// sec::runtime_error and context (text, int32 rank where the failure began,
// cause), so a rank that learns of a death through a peer that quit for it can
// still name the rank that died first ("peer rank 2 died (...), reported by
// rank 3").

#include <cstddef>
#include <cstdint>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/error.hpp>

namespace troupe::actors {

/// The group error for rank `label` whose peer rank `who` ended with
/// `reason`, with `pending` operations failed by it.
caf::error peer_death_error(const caf::actor_system& sys, const std::string& label, int who,
                            const caf::error& reason, std::size_t pending);

} // namespace troupe::actors
