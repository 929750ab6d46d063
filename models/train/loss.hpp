#pragma once

#include <cstdint>

#include "runtime/tensor.hpp"

namespace troupe::models {

struct loss_output {
  double loss_sum = 0;      ///< sum over rows of -log softmax(logits)[label]
  std::int64_t correct = 0; ///< rows whose argmax equals the label
  runtime::tensor dlogits;  ///< [B, C] gradient, undefined unless requested
  /// Regression (mean_squared_error): sum over rows of the mean |y - t|.
  double abs_error_sum = 0;
};

/// Softmax cross-entropy of logits [B, C] f32 against labels [B] i32.
/// dlogits = (softmax - onehot) * grad_scale: pass 1/global_batch so the
/// gradients of micro-batches and replicas add up to the global mean's.
/// Throws std::invalid_argument on a wrong shape or dtype or a label outside
/// [0, C).
loss_output softmax_cross_entropy(const runtime::tensor& logits, const runtime::tensor& labels,
                                  float grad_scale, bool want_grad);

} // namespace troupe::models
