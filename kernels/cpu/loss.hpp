#pragma once

#include <cstdint>

namespace troupe::kernels::cpu {

struct xent_result {
  double loss_sum = 0; ///< sum over rows of -log softmax(logits)[label]
  std::int64_t correct = 0; ///< rows whose argmax equals the label
};

/// Fused softmax cross-entropy forward and backward over `rows` rows of
/// `classes` logits. Writes dlogits = (softmax - onehot) * grad_scale (pass
/// 1/global_batch so micro-batches and replicas sum to the global mean);
/// dlogits may be null for evaluation. Labels outside [0, classes) throw
/// std::invalid_argument.
xent_result softmax_cross_entropy(const float* logits, const std::int32_t* labels,
                                  std::int64_t rows, std::int64_t classes, float grad_scale,
                                  float* dlogits);

} // namespace troupe::kernels::cpu
