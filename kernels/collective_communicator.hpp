#pragma once

// What the NCCL rank actors (actors/collectives/nccl_group.hpp) need of a communicator,
// with NCCL's semantics. kernels/cuda/nccl_communicator is the real one; a
// CPU implementation with the same semantics lets the actors' logic (wiring,
// op ordering, checks, padding, failure) run in tests on machines without a
// GPU. No CUDA here.
//
// Semantics (NCCL's): every rank of a group calls the same collectives in the
// same order with the same counts; a call returns when this rank's output is
// written; results are CPU-visible. Errors are values: "" on success, else
// what failed. After a failure the communicator is unusable (every later call
// fails): the group must be made anew.

#include <cstddef>
#include <string>

#include "runtime/dtype.hpp"

namespace troupe::kernels {

class collective_communicator {
public:
  virtual ~collective_communicator() = default;

  /// A fresh group id: rank 0 makes it, every rank passes it to init.
  [[nodiscard]] virtual std::string make_unique_id(std::string& id) = 0;
  /// Joins the group `unique_id` as `rank` of `size`; returns when all have joined.
  [[nodiscard]] virtual std::string init(int rank, int size, const std::string& unique_id) = 0;

  /// out[i] = sum over ranks of in[i]; `count` elements.
  [[nodiscard]] virtual std::string all_reduce_sum(const void* in, void* out, std::size_t count,
                                                   runtime::dtype type) = 0;
  /// out = the root's `in` (`in` read on the root only; the root may pass a
  /// null `out`); `count` elements.
  [[nodiscard]] virtual std::string broadcast(const void* in, void* out, std::size_t count,
                                              runtime::dtype type, int root) = 0;
  /// `in`: size x recv_count elements; `out`: slot `rank` of the sum.
  [[nodiscard]] virtual std::string
  reduce_scatter_sum(const void* in, void* out, std::size_t recv_count, runtime::dtype type) = 0;
  /// `in`: send_count elements; `out`: size x send_count, in rank order.
  [[nodiscard]] virtual std::string all_gather(const void* in, void* out, std::size_t send_count,
                                               runtime::dtype type) = 0;
};

} // namespace troupe::kernels
