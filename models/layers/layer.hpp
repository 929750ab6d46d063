#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "models/layers/parameter.hpp"
#include "runtime/tensor.hpp"

namespace troupe::models {

using runtime::shape_t;
using runtime::tensor;

/// Identifies a micro-batch within a step. Layers save activations per id so a
/// pipeline stage can hold several micro-batches in flight.
using micro_batch_id = std::int32_t;

/// What a forward pass needs besides its input.
struct forward_context {
  micro_batch_id mb = 0;
  std::int64_t step = 0;
  /// Index of this micro-batch's first sample within the step's global batch:
  /// keys per-sample randomness (dropout) so it does not depend on the split.
  std::int64_t sample_offset = 0;
  bool training = true;
  std::uint64_t seed = 0;
};

/// A layer: forward, backward, parameters. Inputs and outputs are f32 tensors
/// whose first dimension is the batch (except Embedding, which takes i32 ids).
///
/// Contract: forward(x, ctx) with ctx.training saves what backward needs under
/// ctx.mb; backward(dy, mb, ...) consumes and frees it. Several micro-batches
/// may be in flight at once; their backward calls may come in any order.
class layer {
public:
  virtual ~layer() = default;

  /// The spec type name ("dense", "relu", ...).
  virtual std::string kind() const = 0;
  /// JSON that make_layer() turns back into an equal layer (without weights).
  virtual nlohmann::json spec() const = 0;
  /// Per-sample output shape for a per-sample input shape; throws
  /// std::invalid_argument when the input does not fit.
  virtual shape_t output_shape(const shape_t& input) const = 0;

  virtual tensor forward(const tensor& x, const forward_context& ctx) = 0;
  /// Returns dL/dx, or an undefined tensor when !need_input_grad (first layer).
  /// Parameter gradients are added to parameter::grad (or overwrite it when
  /// grad_fresh), so micro-batches accumulate.
  virtual tensor backward(const tensor& dy, micro_batch_id mb, bool need_input_grad) = 0;

  /// The backward split in two for zero-bubble pipeline schedules:
  /// backward_input(dy, mb, ...) returns what backward() would (dL/dx, the
  /// pipeline's critical path) and backward_weight(mb) later adds the
  /// parameter gradients, each bitwise what backward() adds. Between the two
  /// the layer keeps what the weight gradient needs (freed by
  /// backward_weight). The default does everything in backward_input and
  /// nothing in backward_weight: right for layers without parameters, and
  /// for those whose kernel computes both gradients at once (conv2d).
  virtual tensor backward_input(const tensor& dy, micro_batch_id mb, bool need_input_grad) {
    return backward(dy, mb, need_input_grad);
  }
  virtual void backward_weight(micro_batch_id /*mb*/) {}

  virtual std::span<parameter> parameters() { return {}; }
  /// Deterministic initialisation: depends only on the seed and parameter
  /// names (PyTorch's default init distributions).
  virtual void init(std::uint64_t /*seed*/) {}
  /// Bytes of saved activations currently held (all micro-batches).
  virtual std::size_t saved_bytes() const = 0;
  /// Forward FLOPs per sample for a per-sample input shape (partitioner cost model).
  virtual double forward_flops(const shape_t& input) const = 0;
  /// Drops saved activations of every micro-batch (an aborted step).
  virtual void clear_saved() = 0;
};

} // namespace troupe::models
