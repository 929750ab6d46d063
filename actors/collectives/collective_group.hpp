#pragma once

// Collective rank actors: one per replica (data parallelism) or per tensor-
// parallel shard. The replica hands its rank actor a tensor and gets the
// collective's result as the response. The actors execute the plans of
// collective_algorithms.hpp.
//
// Protocol (request -> response), op ids chosen by the callers, equal on
// every rank for the same operation and unique among a rank's pending ones:
//   (wire_atom, std::vector<caf::actor> ranks)        -> unit (once, before any op)
//   (allreduce_atom, int64 op, tensor f32)            -> tensor: the elementwise sum,
//        same shape (the caller scales, e.g. by 1/n)
//   (broadcast_atom, int64 op, int32 root, tensor)    -> tensor: the root's tensor
//        (non-roots pass any tensor, e.g. an undefined one)
//   (reduce_scatter_atom, int64 op, tensor f32)       -> tensor: 1-D, chunk `rank` of
//        partition(numel, n) of the sum
//   (all_gather_atom, int64 op, tensor)               -> tensor: every rank's tensor
//        concatenated in rank order (along dim 0 when all share their trailing
//        dims, else flattened); inverse of reduce_scatter
//   (coll_stats_atom)                                 -> actors::collective_stats
//
// Determinism: every element's sum is evaluated in the order the plan fixes
// (ring: block c accumulates from rank c + 1 around the ring; tree: the lower
// ranks' partial sums first), whatever order messages arrive in. Messages that
// arrive early (for a step or an op not reached yet) wait keyed by
// (op, step, segment). All ranks therefore hold bitwise-identical results, and
// two runs give bitwise-identical results.
//
// Costs. Between processes a rank copies the first block it sends out of its
// input (slicing) and each block of the result into the result once, as the
// block becomes final (so the copies overlap the transfers still under way);
// received partial sums are reduced in place. In process nothing is sliced: a
// block for a rank in the same process travels as the sender's whole input
// (shared storage, copy on write) and the receiver reads its range; all-gather
// and broadcast forward received blocks without copying. A ring all-reduce
// whose ranks all live in one process runs no plan steps at all: every rank
// gets every input (shared) and rank 0's result buffer, sums its block of the
// result in one pass in the ring's order (x[c+1] + ... + x[c], the same
// expression the plan evaluates, so results are bitwise those of the ring
// between processes), and every rank answers with that one buffer once all
// blocks are written (the callers share it; copy on write protects them).
// coll_stats_atom's bytes_sent then counts the bytes of this rank that its
// peers read (its input blocks and its block of the result), which is what a
// ring would send: 2(n - 1)/n of the buffer.
//
// (shared_reduction_atom) -> shared_reduction_ref answers, for a group whose
// ranks all live in one process, the group's shared reduction
// (shared_reduction.hpp: the same sums on the callers' own threads, no
// actor in between; rank 0 owns it, the others ask rank 0), else null.
//
// Failure: every rank monitors all its peers. A dead peer fails every pending
// operation on the rank at once with an error naming the dead rank, and the
// rank quits with that error (so the failure spreads to the whole group). The
// error is sec::runtime_error with context (text, int32 dead rank, original
// reason); ranks that learn of the death through a peer that quit for it still
// name the rank that died first ("peer rank 2 died (...), reported by rank 3").
// A peer that exits normally (or by user_shutdown) while nothing is pending
// just ends the rank with the same reason (orderly teardown).
//
// Implementation: the actor (collective_group.cpp), its state
// (collective_rank_state.hpp), plan execution (collective_plan_run.hpp), block
// arithmetic (collective_pieces.hpp), the in-process all-reduce (local_allreduce.hpp).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/plan/collective_algorithms.hpp"

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

struct collective_config {
  int rank = 0;
  int size = 1;
  /// All-reduce algorithm: automatic chooses by size (tree below
  /// tree_threshold_bytes, ring at or above it).
  collectives::allreduce_algo algo = collectives::allreduce_algo::automatic;
  std::size_t tree_threshold_bytes = collectives::default_tree_threshold_bytes;
  /// Blocks of reducing collectives larger than this travel in segments of
  /// about this size, so that a neighbour reduces and forwards segment k while
  /// segment k + 1 is still on its way (pipelining). 0: never segment.
  std::size_t segment_bytes = std::size_t{1} << 20;
  /// How blocks reach ranks in other processes (large ones over the data
  /// plane); null: plain CAF messages (single process). Not part of the JSON
  /// form: the node agent that spawns the rank supplies its own.
  std::shared_ptr<runtime::transport::courier> courier;
};

/// The JSON form a supervisor sends to a node agent (everything but the courier).
nlohmann::json to_json(const collective_config& c);
/// Throws runtime::input_error for a malformed config.
collective_config collective_config_from_json(const nlohmann::json& j);

/// Spawns one rank actor (not yet wired).
caf::actor spawn_collective_rank(caf::actor_system& sys, collective_config cfg);

/// Spawns n rank actors with `base`'s options (rank and size set per actor)
/// and wires them (waits for every rank to acknowledge).
std::vector<caf::actor> spawn_collective_group(caf::actor_system& sys, int n,
                                               collective_config base = {});

} // namespace troupe::actors
