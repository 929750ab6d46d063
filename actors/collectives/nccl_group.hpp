#pragma once

// NCCL rank actors: the collective protocol of collective_group.hpp for
// replicas on CUDA devices, executed by NCCL (collective_backend.hpp says when
// a group uses them). Same requests, same responses, same op-id semantics:
//   (wire_atom, std::vector<caf::actor> ranks)        -> unit (once, before any op)
//   (allreduce_atom, int64 op, tensor f32)            -> tensor: the sum, same shape
//   (broadcast_atom, int64 op, int32 root, tensor)    -> tensor: the root's tensor
//   (reduce_scatter_atom, int64 op, tensor f32)       -> tensor: 1-D, chunk `rank` of
//        collectives::partition(numel, n) of the sum
//   (all_gather_atom, int64 op, tensor)               -> tensor: concatenation in rank order
//   (coll_stats_atom)                                 -> actors::collective_stats
// Results are CPU tensors: runtime::storage holds CPU memory only, so the
// rank stages every tensor through its device (host -> device, NCCL, device
// -> host). Sums follow NCCL's order: they match the actor backend within
// rounding, not bitwise (all ranks of one NCCL group do agree bitwise).
//
// How a rank works. Each rank is two actors: this event-based front, which
// speaks the protocol, and a detached worker (its own thread, like a CUDA
// stream) that owns the communicator and blocks in its calls. The
// communicator is a kernels::collective_communicator: NCCL's
// (kernels/cuda/nccl_communicator.hpp), or in tests a CPU one with NCCL's
// semantics, so that everything below runs in CI without a GPU.
// - Wiring: the wire reply comes at once (as with the actor backend, so a
//   caller may wire ranks one by one). Rank 0's worker makes the ncclUniqueId;
//   rank 0 sends its bytes to every peer as (nccl_id_atom, std::string) (built-
//   in types only: works across processes), and every rank's worker then
//   joins the communicator (ncclCommInitRankConfig on its device). Operations
//   requested meanwhile wait.
// - Order: NCCL needs every rank to issue the same collectives in the same
//   order, while callers may issue concurrent ops in different orders per
//   rank. Rank 0 therefore fixes the order: it runs ops in the order its
//   callers request them and announces each as (nccl_order_atom, int64 seq,
//   int64 op) to the other ranks, which run their requests in that order.
//   (As with the actor backend, an op that some rank is never asked for
//   stalls the ops after it until a rank fails.)
// - Checks: each op starts with a small NCCL all-gather of every rank's
//   header (nccl_op_header.hpp), so all ranks check kind, root, dtype and size
//   alike and fail together with the actor backend's messages instead of
//   corrupting memory or hanging.
// - Padding: reduce-scatter and all-gather pad to NCCL's equal counts
//   (nccl_padding.hpp) and strip the padding from the result.
// - Stats: bytes_sent counts the payload bytes a rank hands to NCCL (its
//   input, the padded input for reduce-scatter and all-gather, the root's
//   tensor for broadcast), messages_sent the NCCL collectives it issued
//   (header exchanges included).
//
// Failure. Every rank monitors its peers. A dead peer fails every pending
// operation at once with an error naming it (sec::runtime_error, context
// (text, int32 dead rank, cause), as the actor backend), sets the worker's
// abort flag so that a NCCL call waiting for the dead peer aborts the
// communicator instead of hanging, and the rank quits with the error. NCCL's
// own asynchronous errors (ncclCommGetAsyncError: a peer process gone, a
// broken connection), CUDA errors and the timeout fail the operation and the
// rank the same way, with NCCL's message. A rank never recovers: make a new
// group.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>

#include "kernels/collective_communicator.hpp"
#include "runtime/device.hpp"

namespace troupe::actors {

/// Rank 0 -> each peer: (nccl_id_atom, std::string) the ncclUniqueId's bytes.
using nccl_id_atom = caf::atom_constant<caf::atom("ncclid")>;
/// Rank 0 -> each peer: (nccl_order_atom, int64 seq, int64 op) run op next.
using nccl_order_atom = caf::atom_constant<caf::atom("ncclorder")>;

/// Makes a rank's communicator on its worker thread: (device index, abort
/// flag the rank sets when it fails, timeout) -> communicator.
using communicator_factory = std::function<std::unique_ptr<kernels::collective_communicator>(
    int device, std::shared_ptr<const std::atomic<bool>> abort, std::chrono::milliseconds timeout)>;

struct nccl_rank_config {
  int rank = 0;
  int size = 1;
  /// The rank's GPU; one rank per GPU per process (NCCL refuses duplicates).
  runtime::device device = runtime::device::cuda(0);
  /// A NCCL call (communicator creation included) that has not finished after
  /// this long aborts the communicator and fails the rank; zero: never. A dead
  /// peer is noticed without it (monitor, NCCL's async errors); the timeout
  /// catches a peer that is alive but never issues the operation.
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
  /// Empty: NCCL (kernels/cuda/nccl_communicator) on `device`. Set: this
  /// communicator instead, and `device` is not checked: the tests run the
  /// ranks' logic on a CPU communicator with NCCL's semantics.
  communicator_factory communicator;
};

/// Spawns one NCCL rank (not yet wired). Fails with a clear error (and spawns
/// nothing) when the config is bad or, without cfg.communicator, when the
/// backend is not compiled in ("NCCL backend not compiled in") or the device
/// is not a usable CUDA device of this process ("no CUDA device: ...").
caf::expected<caf::actor> spawn_nccl_rank(caf::actor_system& sys, nccl_rank_config cfg);

/// Spawns one rank per device (rank r on devices[r], the rest of `base` as
/// given) and wires them (waits for every acknowledgement). On an error, the
/// ranks already spawned are stopped.
caf::expected<std::vector<caf::actor>> spawn_nccl_group(caf::actor_system& sys,
                                                        const std::vector<runtime::device>& devices,
                                                        nccl_rank_config base = {});

} // namespace troupe::actors
