#pragma once

// The ring all-reduce of a group whose ranks all live in one process: no plan
// steps run. Every rank gets every input (shared) and rank 0's result buffer,
// sums its block of the result in one pass in the ring's order (x[c+1] + ... +
// x[c], the expression the plan evaluates, so results are bitwise those of
// the ring between processes), and every rank answers with that one buffer
// once all blocks are written. Change it with local_allreduce_msg.hpp.

#include <cstdint>

#include "actors/collectives/collective_rank_state.hpp"

namespace troupe::actors::collective_detail {

/// Whether op `op` (laid out) runs as a local all-reduce on this rank.
bool runs_locally(rank_actor* self, const op_state& op);

/// Turns `op` into a local all-reduce: hands the peers this rank's input
/// (and, on rank 0, the result buffer).
void begin_local(rank_actor* self, std::int64_t id, op_state& op);

/// Takes the messages that came before op `it` started, computes this
/// rank's block once it can and answers when all blocks are written.
void resume_local(rank_actor* self, op_iterator it);

/// A message of a local all-reduce from a peer.
void on_local_message(rank_actor* self, local_allreduce_msg& m);

} // namespace troupe::actors::collective_detail
