#include "kernels/cpu/norm.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/elementwise.hpp"

namespace troupe::kernels::cpu {

// gamma / beta may be null (no affine transform); dgamma / dbeta may be null
// (not requested). Statistics use two passes in float with double sums, which
// stays accurate for rows with a large mean.

void layernorm_forward(const float* x, const float* gamma, const float* beta, std::int64_t rows,
                       std::int64_t cols, float eps, float* y, float* mean, float* rstd) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * cols;
    float* __restrict yr = y + r * cols;
    double s = 0.0;
    for (std::int64_t c = 0; c < cols; ++c)
      s += xr[c];
    const float mu = static_cast<float>(s / static_cast<double>(cols));
    double ss = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) {
      const double d = xr[c] - mu;
      ss += d * d;
    }
    // Biased variance, as PyTorch's LayerNorm.
    const float rs = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(cols) + eps));
    if (mean != nullptr)
      mean[r] = mu;
    if (rstd != nullptr)
      rstd[r] = rs;
    if (gamma != nullptr && beta != nullptr) {
      const float* __restrict ga = gamma;
      const float* __restrict be = beta;
      for (std::int64_t c = 0; c < cols; ++c)
        yr[c] = (xr[c] - mu) * rs * ga[c] + be[c];
    } else {
      for (std::int64_t c = 0; c < cols; ++c)
        yr[c] = (xr[c] - mu) * rs * (gamma != nullptr ? gamma[c] : 1.f) +
                (beta != nullptr ? beta[c] : 0.f);
    }
  }
}

void layernorm_backward(const float* x, const float* gamma, const float* dy, const float* mean,
                        const float* rstd, std::int64_t rows, std::int64_t cols, float* dx,
                        float* dgamma, float* dbeta, bool accumulate) {
  // This call's sums are formed whole, then added (add_inplace).
  std::vector<float> sums(static_cast<std::size_t>(accumulate ? 2 * cols : 0));
  float* const final_gamma = dgamma;
  float* const final_beta = dbeta;
  if (accumulate) {
    dgamma = dgamma != nullptr ? sums.data() : nullptr;
    dbeta = dbeta != nullptr ? sums.data() + cols : nullptr;
  }
  if (dgamma != nullptr)
    std::fill(dgamma, dgamma + cols, 0.f);
  if (dbeta != nullptr)
    std::fill(dbeta, dbeta + cols, 0.f);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* __restrict xr = x + r * cols;
    const float* __restrict dr = dy + r * cols;
    const float mu = mean[r], rs = rstd[r];
    if (dgamma != nullptr) {
      float* __restrict dg = dgamma;
      for (std::int64_t c = 0; c < cols; ++c)
        dg[c] += dr[c] * (xr[c] - mu) * rs;
    }
    if (dbeta != nullptr) {
      float* __restrict db = dbeta;
      for (std::int64_t c = 0; c < cols; ++c)
        db[c] += dr[c];
    }
    if (dx == nullptr)
      continue;
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.
    double sg = 0.0, sgx = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) {
      const float g = dr[c] * (gamma != nullptr ? gamma[c] : 1.f);
      sg += g;
      sgx += static_cast<double>(g) * ((xr[c] - mu) * rs);
    }
    const float mg = static_cast<float>(sg / static_cast<double>(cols));
    const float mgx = static_cast<float>(sgx / static_cast<double>(cols));
    float* __restrict out = dx + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) {
      const float g = dr[c] * (gamma != nullptr ? gamma[c] : 1.f);
      const float xhat = (xr[c] - mu) * rs;
      out[c] = rs * (g - mg - xhat * mgx);
    }
  }
  if (accumulate) {
    if (final_gamma != nullptr)
      add_inplace(final_gamma, dgamma, cols);
    if (final_beta != nullptr)
      add_inplace(final_beta, dbeta, cols);
  }
}

} // namespace troupe::kernels::cpu
