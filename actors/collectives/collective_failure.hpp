#pragma once

// How a collective rank reports failure, shared by both backends
// (collective_group.hpp, nccl_group.hpp): a rank fails with sec::runtime_error
// and context (text, int32 rank where the failure began, cause), so a rank that
// learns of a death through a peer that quit for it can still name the rank
// that died first ("peer rank 2 died (...), reported by rank 3").

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/error.hpp>

namespace troupe::actors {

/// "op <id>: <what>": how rank errors name the operation.
std::string op_text(std::int64_t op, const std::string& what);

/// The error of a failure that began at rank `rank` (`text` names the rank).
caf::error rank_failure(const std::string& text, int rank);

/// The index of `source` in `ranks`, -1 if it is none of them.
int rank_index(const std::vector<caf::actor>& ranks, const caf::actor_addr& source);

/// A peer that ended normally or by user_shutdown is tearing the group down
/// in order (an error only if operations are still pending).
bool orderly_exit(const caf::error& reason);

/// The group error for rank `label` whose peer rank `who` ended with
/// `reason`, with `pending` operations failed by it.
caf::error peer_death_error(const caf::actor_system& sys, const std::string& label, int who,
                            const caf::error& reason, std::size_t pending);

} // namespace troupe::actors
