#pragma once

#include <cstdint>

namespace troupe::kernels::cpu {

/// LayerNorm over the last dimension: y = (x - mean) * rstd * gamma + beta for
/// each of `rows` rows of `cols`. Saves mean and rstd (rows each) for backward.
void layernorm_forward(const float* x, const float* gamma, const float* beta, std::int64_t rows,
                       std::int64_t cols, float eps, float* y, float* mean, float* rstd);
/// dx (overwritten), dgamma and dbeta (accumulate or overwrite; the call's
/// sums are added whole, see add_inplace).
void layernorm_backward(const float* x, const float* gamma, const float* dy, const float* mean,
                        const float* rstd, std::int64_t rows, std::int64_t cols, float* dx,
                        float* dgamma, float* dbeta, bool accumulate);

} // namespace troupe::kernels::cpu
