#include "kernels/cpu/attention.hpp"

#include <algorithm>
#include <cmath>

namespace troupe::kernels::cpu {

void softmax_rows(float* x, std::int64_t rows, std::int64_t cols, bool causal) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* __restrict xr = x + r * cols;
    // Causal: row r of each [cols x cols] block sees columns 0..r%cols.
    const std::int64_t visible = causal ? (r % cols) + 1 : cols;
    float mx = xr[0];
    for (std::int64_t c = 1; c < visible; ++c)
      mx = std::max(mx, xr[c]);
    // Subtracting the max keeps exp() finite; the sum runs in float over
    // attention-sized rows, accurate to a few ulps.
    float sum = 0.f;
    for (std::int64_t c = 0; c < visible; ++c) {
      xr[c] = std::exp(xr[c] - mx);
      sum += xr[c];
    }
    const float inv = 1.f / sum;
    for (std::int64_t c = 0; c < visible; ++c)
      xr[c] *= inv;
    std::fill(xr + visible, xr + cols, 0.f);
  }
}

void softmax_rows_backward(const float* y, const float* dy, float* dx, std::int64_t rows,
                           std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* __restrict yr = y + r * cols;
    const float* dr = dy + r * cols;
    float* xr = dx + r * cols; // may alias dr: the dot product is taken first
    double dot = 0.0;
    for (std::int64_t c = 0; c < cols; ++c)
      dot += static_cast<double>(dr[c]) * yr[c];
    const float d = static_cast<float>(dot);
    // Masked positions have y == 0 and get exactly 0 (also for non-finite dy).
    for (std::int64_t c = 0; c < cols; ++c)
      xr[c] = yr[c] != 0.f ? yr[c] * (dr[c] - d) : 0.f;
  }
}

} // namespace troupe::kernels::cpu
