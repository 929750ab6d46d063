// Elementwise and optimizer kernels. Each kernel is a grid-stride loop whose
// per-element body is a kernels/math.hpp function, the same one the CPU
// kernels call, so the CPU unit tests cover the formulas run here.

#include <algorithm>
#include <cmath>

#include "kernels/cuda/kernels.hpp"
#include "kernels/math.hpp"

namespace troupe::kernels::cuda {
namespace {

constexpr int threads_per_block = 256;

int blocks_for(std::int64_t n) {
  // Enough blocks to fill any current GPU; the grid-stride loop covers the rest.
  return static_cast<int>(std::clamp<std::int64_t>((n + threads_per_block - 1) / threads_per_block,
                                                   1, 8192));
}

__device__ std::int64_t first_index() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ std::int64_t grid_stride() {
  return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

__global__ void add_bias_kernel(float* y, const float* bias, std::int64_t total, std::int64_t cols,
                                bool relu) {
  for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
    float v = y[i] + bias[i % cols];
    y[i] = relu ? math::relu(v) : v;
  }
}

__global__ void relu_forward_kernel(const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = math::relu(x[i]);
}

__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride())
    dx[i] = math::relu_grad_from_output(y[i], dy[i]);
}

__global__ void gelu_forward_kernel(const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = math::gelu(x[i]);
}

__global__ void gelu_backward_kernel(const float* x, const float* dy, float* dx, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride())
    dx[i] = math::gelu_grad(x[i], dy[i]);
}

__global__ void sgd_kernel(float* p, const float* g, float* buf, std::int64_t n, float lr,
                           float momentum, float weight_decay, bool first) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    float unused = 0.f;
    float& b = buf ? buf[i] : unused;
    math::sgd_momentum(p[i], g[i], b, lr, momentum, weight_decay, first);
  }
}

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, std::int64_t n,
                            float lr, float beta1, float beta2, float eps, float weight_decay,
                            bool decoupled, float bc1, float bc2) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride())
    math::adam(p[i], g[i], m[i], v[i], lr, beta1, beta2, eps, weight_decay, decoupled, bc1, bc2);
}

void check_launch(const char* what) { check(cudaGetLastError(), what); }

} // namespace

void add_bias_rows(float* y, const float* bias, std::int64_t rows, std::int64_t cols,
                   cudaStream_t stream) {
  if (rows * cols == 0) return;
  add_bias_kernel<<<blocks_for(rows * cols), threads_per_block, 0, stream>>>(y, bias, rows * cols,
                                                                             cols, false);
  check_launch("add_bias_rows");
}

void add_bias_relu_rows(float* y, const float* bias, std::int64_t rows, std::int64_t cols,
                        cudaStream_t stream) {
  if (rows * cols == 0) return;
  add_bias_kernel<<<blocks_for(rows * cols), threads_per_block, 0, stream>>>(y, bias, rows * cols,
                                                                             cols, true);
  check_launch("add_bias_relu_rows");
}

void relu_forward(const float* x, float* y, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  relu_forward_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(x, y, n);
  check_launch("relu_forward");
}

void relu_backward(const float* y, const float* dy, float* dx, std::int64_t n,
                   cudaStream_t stream) {
  if (n == 0) return;
  relu_backward_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(y, dy, dx, n);
  check_launch("relu_backward");
}

void gelu_forward(const float* x, float* y, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  gelu_forward_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(x, y, n);
  check_launch("gelu_forward");
}

void gelu_backward(const float* x, const float* dy, float* dx, std::int64_t n,
                   cudaStream_t stream) {
  if (n == 0) return;
  gelu_backward_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(x, dy, dx, n);
  check_launch("gelu_backward");
}

void sgd_update(float* p, const float* g, float* momentum_buf, std::int64_t n,
                const sgd_options& o, bool first, cudaStream_t stream) {
  if (n == 0) return;
  sgd_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(p, g, momentum_buf, n, o.lr,
                                                              o.momentum, o.weight_decay, first);
  check_launch("sgd_update");
}

void adam_update(float* p, const float* g, float* m, float* v, std::int64_t n,
                 const adam_options& o, std::int64_t step, cudaStream_t stream) {
  if (n == 0) return;
  // Bias corrections once per step on the host, in double (as the CPU kernel).
  const auto bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta1), step));
  const auto bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta2), step));
  adam_kernel<<<blocks_for(n), threads_per_block, 0, stream>>>(
      p, g, m, v, n, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.decoupled, bc1, bc2);
  check_launch("adam_update");
}

} // namespace troupe::kernels::cuda
