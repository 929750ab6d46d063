#pragma once

// Where an operation's blocks live and the arithmetic on them: taking a piece
// to send, reducing a received piece into this rank's, writing final pieces
// into the result and assembling the result. Change it when the layout of
// blocks and segments (op_state) or the reduction changes.

#include <cstdint>
#include <vector>

#include <caf/actor.hpp>

#include "actors/collectives/collective_rank_state.hpp"

namespace troupe::actors::collective_detail {

/// Elements [c.offset, c.offset + c.count) of `t` as a 1-D view (no copy).
tensor range_of(const tensor& t, coll::chunk c);

/// The piece (b, k) to send to `dest` and what the message carries: moved
/// out when the plan releases it after the send (so that the receiver owns
/// the storage alone and reduces into it in place). A piece that still lives
/// in the input goes to a rank in this process as the whole input
/// (collective_payload::whole_input), to others as a view of its range
/// (serialised as the range's bytes only).
std::pair<tensor, actors::collective_payload>
take_piece(rank_actor* self, op_state& op, int b, int k, bool release, const caf::actor& dest);

/// Payload bytes the piece (b, k) stands for when sent as `sent`.
std::int64_t piece_bytes(const op_state& op, int b, int k, const tensor& sent,
                         actors::collective_payload payload);

/// piece(b, k) = received + own or own + received, as the plan says, in
/// place into whichever operand this rank owns alone, else a new tensor.
/// `whole`: `received` is the sender's whole input, read at the piece's range.
/// `into_result`: the block is final here; the sum is written into its range
/// of op.result (counted as placed) and the piece becomes a view of it. The
/// summation order is the same either way.
void reduce_piece(op_state& op, int b, int k, tensor received, bool whole, coll::on_receive order,
                  bool into_result);

/// Where chunk `c` goes in op.result (logic_error when outside it). Writes
/// through this pointer bypass copy on write: each range of the result is
/// written once, before any view of it is handed out.
char* result_range(const op_state& op, coll::chunk c);

/// Copies piece (b, k) into the result at its place.
void place(op_state& op, int b, int k);

/// out = ((src[0] + src[1]) + src[2]) + ... elementwise: the expression the
/// ring's reduce-scatter evaluates, in one pass over memory.
void fold(float* out, const std::vector<const float*>& src, std::int64_t n);

/// The op's result once every segment ran its steps.
tensor result_of(rank_actor* self, op_state& op);

} // namespace troupe::actors::collective_detail
