#pragma once

// Pure planning of collective operations (no CAF): how a buffer is cut into
// blocks, and which block every rank sends to whom and which it receives (and
// reduces or copies) at every step. The collective rank actors
// (collective_group.hpp) execute these plans; the tests check them by symbolic
// simulation, without actors.
//
// Determinism rule: the order in which contributions are summed is a property
// of the plan (the topology), never of message arrival. Each reducing step says
// which operand comes first, so every element of the result is computed by the
// same expression tree on every rank and in every run.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace troupe::actors::collectives {

/// A contiguous range of elements [offset, offset + count).
struct chunk {
  std::int64_t offset = 0;
  std::int64_t count = 0;
};

/// Cuts `numel` elements into `parts` contiguous chunks; the first
/// numel % parts chunks get one element more (chunks may be empty when
/// numel < parts). Throws std::invalid_argument for parts < 1 or numel < 0.
std::vector<chunk> partition(std::int64_t numel, int parts);

/// What a rank does with the block it receives at a step.
enum class on_receive : std::uint8_t {
  none,          ///< the step receives nothing
  reduce_recv_first, ///< block = received + own   (received partial sums come first)
  reduce_own_first,  ///< block = own + received
  copy,          ///< block = received (all-gather, broadcast, final results)
};

/// One step of one rank: an optional send and an optional receive. Steps are
/// aligned across ranks: what rank a sends at step s, rank b receives at its
/// step s. The send happens before the receive of the same step (a rank that
/// exchanges a block with a partner sends its old value).
struct plan_step {
  int send_to = -1;     ///< peer rank, -1: nothing to send
  int send_block = -1;
  /// The rank never reads this block again before it is overwritten by a copy
  /// (or it is not part of the rank's result): the executor may drop it after
  /// the send, so that the receiver can reduce into the storage in place.
  bool release_after_send = false;
  int recv_from = -1;   ///< peer rank, -1: nothing to receive
  int recv_block = -1;
  on_receive action = on_receive::none;
};

/// Every rank's steps (all of the same length) over `blocks` blocks.
struct collective_plan {
  int ranks = 1;
  int blocks = 1;
  std::vector<std::vector<plan_step>> steps; ///< steps[rank][step]
  std::size_t length() const { return steps.empty() ? 0 : steps.front().size(); }
};

/// Ring reduce-scatter over n blocks (n - 1 steps). At step s rank r sends
/// block (r - s - 1) mod n to rank r + 1 and receives block (r - s - 2) mod n
/// from rank r - 1, adding its own values after the received partial sum.
/// Block c therefore accumulates in rank order starting at rank c + 1:
/// ((x[c+1] + x[c+2]) + ...) + x[c], and ends fully reduced on rank c.
collective_plan ring_reduce_scatter(int n);

/// Ring all-gather over n blocks (n - 1 steps), rank r starting with block r:
/// at step s rank r sends block (r - s) mod n to r + 1 and copies block
/// (r - s - 1) mod n from r - 1.
collective_plan ring_all_gather(int n);

/// Ring all-reduce: ring_reduce_scatter followed by ring_all_gather
/// (2(n - 1) steps; each rank sends 2(n - 1)/n of the buffer).
collective_plan ring_allreduce(int n);

/// Tree all-reduce for small buffers, one block: recursive doubling among the
/// largest power of two p <= n ranks, latency log2(p) (+2) steps, each rank
/// exchanging the whole buffer with rank ^ 2^k at step k. Ranks p..n-1 first
/// fold their buffer into rank r - p (own first) and get the result back at
/// the last step. At an exchange the lower rank's partial sum is the left
/// operand on both sides, so both partners compute the same value.
collective_plan tree_allreduce(int n);

/// Binomial-tree broadcast of one block from `root` (ceil(log2 n) steps): at
/// step k the ranks with relative rank v < 2^k send to v + 2^k.
collective_plan binomial_broadcast(int n, int root);

enum class allreduce_algo : std::uint8_t {
  automatic, ///< chosen by size: choose_allreduce
  ring,
  tree,
};

std::string to_string(allreduce_algo a);
/// "auto", "ring" or "tree"; throws std::invalid_argument otherwise.
allreduce_algo parse_allreduce_algo(const std::string& s);

/// Buffers smaller than this go through the tree (latency-bound: log2 n
/// messages of the whole buffer), larger ones through the ring
/// (bandwidth-bound: 2(n - 1) messages of 1/n of the buffer). 256 KiB is
/// where, with ~0.3 ms per hop between processes and ~1 GB/s per link, the
/// ring's extra hops cost less than the tree's extra bytes for n <= 8.
inline constexpr std::size_t default_tree_threshold_bytes = std::size_t{256} << 10;

/// The algorithm for an all-reduce of `bytes` over n ranks: `forced` unless it
/// is automatic, else tree below `threshold` bytes (and for n <= 1), ring at or
/// above it. Every rank must decide alike: the inputs are the same everywhere.
allreduce_algo choose_allreduce(std::size_t bytes, int n,
                                std::size_t threshold = default_tree_threshold_bytes,
                                allreduce_algo forced = allreduce_algo::automatic);

/// Sets release_after_send on every send whose block the rank does not read
/// again before a copy overwrites it; `keep[rank][block]` marks result blocks
/// that must survive to the end. Used by the plan builders.
void mark_releases(collective_plan& p, const std::vector<std::vector<bool>>& keep);

} // namespace troupe::actors::collectives
