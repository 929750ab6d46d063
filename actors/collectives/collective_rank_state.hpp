#pragma once

// The state of one collective rank actor (collective_group.hpp) and of each
// operation it runs, shared by the files that implement the rank: the actor
// (collective_group.cpp), plan execution (collective_plan_run.cpp), block
// arithmetic (collective_pieces.cpp) and the in-process all-reduce
// (local_allreduce.cpp). Change it when an operation needs new bookkeeping.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/collectives/collective_failure.hpp"
#include "actors/collectives/collective_group.hpp"
#include "actors/collectives/local_allreduce_msg.hpp"
#include "actors/collectives/shared_reduction.hpp"
#include "actors/plan/collective_algorithms.hpp"
#include "actors/protocol/messages.hpp"
#include "runtime/tensor.hpp"

namespace troupe::actors::collective_detail {

using actors::collective_kind;
using actors::collective_msg;
using runtime::tensor;
namespace coll = collectives;

/// Whether `k` sums its inputs (f32 only; buffers are split into segments).
inline bool is_reducing(collective_kind k) {
  return k == collective_kind::allreduce_ring || k == collective_kind::allreduce_tree ||
         k == collective_kind::reduce_scatter;
}

/// Progress of an all-reduce whose ranks all live in this process
/// (local_allreduce.hpp): every rank sees every input (shared, not copied)
/// and sums its block of one result buffer in one pass, in the ring's order.
struct local_progress {
  bool active = false;
  std::vector<tensor> inputs; ///< every rank's input
  int inputs_have = 0;
  bool computed = false;       ///< this rank's block of the result is written
  std::vector<bool> peer_done; ///< rank j's block is written
  int peers_done = 0;
};

/// One pending operation of a rank.
struct op_state {
  collective_kind kind = collective_kind::none;
  std::int32_t root = 0;
  caf::response_promise rp;
  const coll::collective_plan* plan = nullptr;
  std::size_t steps = 0; ///< plan steps this op runs (local all-reduce: none)
  tensor input;
  std::int64_t total = -1; ///< elements of the buffer (reducing kinds), else -1
  /// The input as a whole is piece (whole_block, 0) (no slicing needed), or -1.
  int whole_block = -1;
  int segs = 1;
  /// Absolute element ranges of piece [block][segment] in the buffer
  /// (reducing kinds only).
  std::vector<std::vector<coll::chunk>> layout;
  std::vector<std::vector<tensor>> pieces;
  /// Piece still lives in the input (read through it, slice to send).
  std::vector<std::vector<bool>> from_input;
  std::vector<std::size_t> cursor;     ///< next plan step per segment
  std::vector<std::vector<bool>> sent; ///< [segment][step]: that step's send is done
  std::vector<bool> seg_done;          ///< segment k ran all its steps
  int done_segs = 0;
  /// Per block of the result: the last step at which this rank receives it
  /// (its value is final afterwards), -1 if never or not part of the result.
  std::vector<int> final_step;
  /// The result, filled as blocks become final (overlapping the copies with
  /// the transfers still under way) instead of concatenated at the end;
  /// undefined when the result is a piece itself or is built at the end.
  tensor result;
  char* result_bytes = nullptr;
  std::int64_t result_offset = 0; ///< element offset of result[0] in the buffer
  std::int64_t placed = 0;        ///< elements written into result
  local_progress local;
};

/// Plan messages that arrived before the op or step that takes them.
using stash_key = std::tuple<std::int64_t, std::int32_t, std::int32_t>; // op, step, segment
/// Local all-reduce messages that arrived before the op started.
using local_stash_key = std::tuple<std::int64_t, local_part, std::int32_t>; // op, part, from

struct rank_state {
  collective_config cfg;
  std::vector<caf::actor> ranks;
  /// Every rank lives in this process: blocks are shared, not copied.
  bool all_local = false;
  std::map<std::int64_t, op_state> ops;
  std::map<stash_key, collective_msg> stash;
  std::map<local_stash_key, local_allreduce_msg> local_stash;
  std::map<std::pair<collective_kind, std::int32_t>, coll::collective_plan> plans; // (kind, root)
  /// Rank 0 of an all-local group: the group's shared reduction, made when
  /// a member first asks (shared_reduction_atom; the other ranks ask rank 0).
  std::shared_ptr<shared_reduction> shared;
  actors::collective_stats stats;
  static inline const char* name = "collective_rank";

  rank_state() = default;
  rank_state(const rank_state&) = delete;
  rank_state& operator=(const rank_state&) = delete;
  /// However the rank ends (a kill by the job's teardown included), the
  /// operations still pending fail: nobody waits for a result that will
  /// never come (a device thread blocked in a tensor-parallel all-reduce).
  /// CAF destroys an actor's state in its on_exit, while the promises can
  /// still be delivered. The group's shared reduction is aborted too: its
  /// members' device threads may wait in it.
  ~rank_state();
};

using rank_actor = caf::stateful_actor<rank_state>;
using op_iterator = std::map<std::int64_t, op_state>::iterator;

/// Whether `rank` brings an input to `op` (every rank but a broadcast's non-roots).
inline bool holds_input(const op_state& op, int rank) {
  return op.kind != collective_kind::broadcast || op.root == rank;
}

/// "collective rank r/n".
std::string label(rank_actor* self);

bool same_process(rank_actor* self, const caf::actor& a);

/// Fails every pending operation with `err`, forgets the messages that came
/// early and quits with `err`.
void fail_all(rank_actor* self, const caf::error& err);

/// Any failed collective leaves the group inconsistent (peers would wait for
/// this rank forever): fails every pending operation with the error and
/// quits with it, so that the peers fail at once too.
caf::error fail_rank(rank_actor* self, const std::string& what);

/// Delivers the op's result once everything it waits for is done.
void finish_if_done(rank_actor* self, op_iterator it);

} // namespace troupe::actors::collective_detail
