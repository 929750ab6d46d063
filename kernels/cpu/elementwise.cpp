#include "kernels/cpu/elementwise.hpp"

#include <algorithm>
#include <vector>

#include "kernels/math.hpp"

// Plain loops over __restrict pointers: g++ -O3 -mavx2 -mfma vectorizes them.
// Functions documented as allowing dx == dy alias keep those two pointers
// unrestricted (element i is read before it is written, so aliasing is safe).

namespace troupe::kernels::cpu {

void add_bias_rows(float* y, const float* bias, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* __restrict yr = y + r * cols;
    const float* __restrict br = bias;
    for (std::int64_t c = 0; c < cols; ++c)
      yr[c] += br[c];
  }
}

void add_bias_relu_rows(float* y, const float* bias, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* __restrict yr = y + r * cols;
    const float* __restrict br = bias;
    for (std::int64_t c = 0; c < cols; ++c)
      yr[c] = math::relu(yr[c] + br[c]);
  }
}

void bias_grad_rows(const float* dy, float* db, std::int64_t rows, std::int64_t cols,
                    bool accumulate) {
  std::vector<float> sum(static_cast<std::size_t>(accumulate ? cols : 0));
  float* __restrict out = accumulate ? sum.data() : db;
  std::fill(out, out + cols, 0.f);
  // Row-wise accumulation keeps the inner loop contiguous (column sums of a
  // row-major matrix), which vectorizes; a column-wise loop would stride.
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* __restrict d = dy + r * cols;
    for (std::int64_t c = 0; c < cols; ++c)
      out[c] += d[c];
  }
  if (accumulate)
    add_inplace(db, out, cols);
}

void relu_forward(const float* x, float* y, std::int64_t n) {
  const float* __restrict in = x;
  float* __restrict out = y;
  for (std::int64_t i = 0; i < n; ++i)
    out[i] = math::relu(in[i]);
}

void relu_backward(const float* y, const float* dy, float* dx, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i)
    dx[i] = math::relu_grad_from_output(y[i], dy[i]);
}

void gelu_forward(const float* x, float* y, std::int64_t n) {
  const float* __restrict in = x;
  float* __restrict out = y;
  for (std::int64_t i = 0; i < n; ++i)
    out[i] = math::gelu(in[i]);
}

void gelu_backward(const float* x, const float* dy, float* dx, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i)
    dx[i] = math::gelu_grad(x[i], dy[i]);
}

void scale(const float* x, float* y, float s, std::int64_t n) {
  // In place (x == y) is allowed, so no __restrict here.
  for (std::int64_t i = 0; i < n; ++i)
    y[i] = x[i] * s;
}

void add_inplace(float* y, const float* x, std::int64_t n) {
  float* __restrict out = y;
  const float* __restrict in = x;
  for (std::int64_t i = 0; i < n; ++i)
    out[i] += in[i];
}

double sum_squares(const float* x, std::int64_t n) {
  // Eight independent double accumulators: without -ffast-math the compiler
  // may not reorder one serial sum, but explicit lanes vectorize (SLP) and
  // double keeps the norm of millions of parameters accurate.
  const float* __restrict in = x;
  constexpr std::int64_t lanes = 8;
  double acc[lanes] = {};
  std::int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (std::int64_t j = 0; j < lanes; ++j) {
      double v = in[i + j];
      acc[j] += v * v;
    }
  double total = 0.0;
  for (; i < n; ++i)
    total += static_cast<double>(in[i]) * in[i];
  for (std::int64_t j = 0; j < lanes; ++j)
    total += acc[j];
  return total;
}

void u8_to_f32(const std::uint8_t* x, float* y, float s, std::int64_t n) {
  const std::uint8_t* __restrict in = x;
  float* __restrict out = y;
  for (std::int64_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(in[i]) * s;
}

} // namespace troupe::kernels::cpu
