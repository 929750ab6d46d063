#pragma once

#include "runtime/tensor.hpp"

namespace troupe::models {

/// The tensor-parallel group a shard's layers talk to: blocking collectives
/// called on the device thread, in the same order with the same shapes on
/// every rank. Results must be bitwise identical on all ranks: the layers
/// after an all-reduce compute on replicated activations, and replicated
/// parameters only stay identical (never drift) when every rank feeds them the
/// same bits.
class tp_group {
public:
  virtual ~tp_group() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// The elementwise sum of `t` (f32) over all ranks. Throws
  /// std::runtime_error on failure (dead peer...).
  virtual runtime::tensor all_reduce_sum(const runtime::tensor& t) = 0;
};

} // namespace troupe::models
