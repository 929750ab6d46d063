#pragma once

#include <cstdint>

namespace troupe::kernels::cpu {

struct sgd_options {
  float lr = 0.01f;
  float momentum = 0.f;
  float weight_decay = 0.f;
};

struct adam_options {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.f;
  bool decoupled = false; ///< AdamW
};

/// Fused SGD(momentum) update of one parameter tensor (PyTorch semantics).
/// `first` marks the first step (momentum buffer initialised from the gradient).
/// momentum_buf may be null when momentum == 0 (PyTorch keeps no buffer then).
void sgd_update(float* p, const float* g, float* momentum_buf, std::int64_t n,
                const sgd_options& o, bool first);
/// Fused Adam/AdamW update of one parameter tensor; `step` counts from 1.
void adam_update(float* p, const float* g, float* m, float* v, std::int64_t n,
                 const adam_options& o, std::int64_t step);

} // namespace troupe::kernels::cpu
