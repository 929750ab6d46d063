// sqrtf must not set errno for the Adam loop to vectorize; the pragma precedes
// every include so the inlined math.hpp functions get the same flags (GCC will
// not inline across mismatched FP options).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-math-errno")
#endif

#include "kernels/cpu/optimizers.hpp"

#include <cmath>
#include <stdexcept>

#include "kernels/math.hpp"

namespace troupe::kernels::cpu {

void sgd_update(float* p, const float* g, float* momentum_buf, std::int64_t n, const sgd_options& o,
                bool first) {
  // Options are copied into locals: read through `o` inside the loops, every
  // store through a float* could alias them, which keeps g++ from vectorizing.
  const float lr = o.lr;
  const float momentum = o.momentum;
  const float weight_decay = o.weight_decay;
  float* __restrict pp = p;
  const float* __restrict gg = g;
  if (momentum == 0.f || momentum_buf == nullptr) {
    if (momentum != 0.f)
      throw std::invalid_argument("sgd_update: momentum needs a buffer");
    // No momentum: PyTorch keeps no buffer; the math ignores buf then.
    for (std::int64_t i = 0; i < n; ++i) {
      float unused = 0.f;
      math::sgd_momentum(pp[i], gg[i], unused, lr, 0.f, weight_decay, true);
    }
    return;
  }
  float* __restrict buf = momentum_buf;
  if (first)
    for (std::int64_t i = 0; i < n; ++i)
      math::sgd_momentum(pp[i], gg[i], buf[i], lr, momentum, weight_decay, true);
  else
    for (std::int64_t i = 0; i < n; ++i)
      math::sgd_momentum(pp[i], gg[i], buf[i], lr, momentum, weight_decay, false);
}

void adam_update(float* p, const float* g, float* m, float* v, std::int64_t n,
                 const adam_options& o, std::int64_t step) {
  if (step < 1)
    throw std::invalid_argument("adam_update: step counts from 1");
  // Bias corrections once per step, in double (beta2^t for t ~ 1e5 underflows
  // gracefully and 1 - beta^t keeps its digits).
  const auto t = static_cast<double>(step);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta1), t));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta2), t));
  // Every option in a local (see sgd_update): the loop then vectorizes, and
  // the compiler hoists the loop-invariant parts of the formula (sqrtf(bc2),
  // lr / bc1, 1 - beta) without changing a single rounding of math::adam.
  const float lr = o.lr, beta1 = o.beta1, beta2 = o.beta2, eps = o.eps;
  const float weight_decay = o.weight_decay;
  float* __restrict pp = p;
  const float* __restrict gg = g;
  float* __restrict mm = m;
  float* __restrict vv = v;
  if (o.decoupled)
    for (std::int64_t i = 0; i < n; ++i)
      math::adam(pp[i], gg[i], mm[i], vv[i], lr, beta1, beta2, eps, weight_decay, true, bc1, bc2);
  else
    for (std::int64_t i = 0; i < n; ++i)
      math::adam(pp[i], gg[i], mm[i], vv[i], lr, beta1, beta2, eps, weight_decay, false, bc1,
                 bc2);
}

} // namespace troupe::kernels::cpu
