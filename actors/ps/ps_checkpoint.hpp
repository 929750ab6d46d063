#pragma once

// Checkpoint access to a parameter-server shard (ps_shard.hpp): its pieces'
// values and optimizer state out, and both in before training (resume).
// Change it with the checkpoint format (named_tensors names and meta keys).

#include "actors/ps/ps_shard_state.hpp"
#include "runtime/named_tensors.hpp"

namespace troupe::actors::ps_detail {

/// Pieces by ps_piece::name(), flat; meta "shard" and "version.<stage>".
runtime::named_tensors get_params(ps_actor* self);

/// Optimizer state "<piece>.<kind>"; meta "steps.<stage>" per stage, and
/// "steps" when all its stages agree.
runtime::named_tensors get_state(ps_actor* self);

/// Replaces every piece's value; throws runtime::input_error for a missing,
/// extra or mis-sized piece.
void set_params(ps_actor* self, const runtime::named_tensors& in);

/// Loads every stage's optimizer state (validated for all stages before any
/// is loaded); throws runtime::input_error.
void set_state(ps_actor* self, const runtime::named_tensors& in);

} // namespace troupe::actors::ps_detail
