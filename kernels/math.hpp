#pragma once

// Scalar math shared by the CPU kernels (kernels/cpu) and the CUDA kernels
// (kernels/cuda), so the CPU tests cover the formulas the GPU runs.

#include <cmath>

#if defined(__CUDACC__)
#define TROUPE_HD __host__ __device__ __forceinline__
#else
#define TROUPE_HD inline
#endif

namespace troupe::kernels::math {

TROUPE_HD float relu(float x) { return x > 0.f ? x : 0.f; }
/// d relu / dx expressed through the output (y > 0 iff x > 0).
TROUPE_HD float relu_grad_from_output(float y, float dy) { return y > 0.f ? dy : 0.f; }

/// Exact GELU, x * Phi(x) (PyTorch's default approximate='none').
TROUPE_HD float gelu(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
TROUPE_HD float gelu_grad(float x, float dy) {
  float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
  float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
  return dy * (cdf + x * pdf);
}

/// One SGD-with-momentum update (PyTorch semantics, dampening 0, no Nesterov):
/// g += wd * p; buf = first ? g : momentum * buf + g; p -= lr * buf.
TROUPE_HD void sgd_momentum(float& p, float g, float& buf, float lr, float momentum,
                            float weight_decay, bool first) {
  g += weight_decay * p;
  buf = first ? g : momentum * buf + g;
  p -= lr * (momentum != 0.f ? buf : g);
}

/// One Adam/AdamW update (PyTorch semantics). `decoupled` selects AdamW's
/// decoupled weight decay (p *= 1 - lr*wd) instead of Adam's L2 term.
/// bc1 = 1 - beta1^t, bc2 = 1 - beta2^t are computed once per step by the caller.
TROUPE_HD void adam(float& p, float g, float& m, float& v, float lr, float beta1, float beta2,
                    float eps, float weight_decay, bool decoupled, float bc1, float bc2) {
  if (decoupled)
    p *= 1.f - lr * weight_decay;
  else
    g += weight_decay * p;
  m = beta1 * m + (1.f - beta1) * g;
  v = beta2 * v + (1.f - beta2) * g * g;
  float denom = sqrtf(v) / sqrtf(bc2) + eps;
  p -= (lr / bc1) * m / denom;
}

} // namespace troupe::kernels::math
