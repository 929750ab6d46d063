#pragma once

// CUDA kernels mirroring kernels/cpu (elementwise, optimizers, GEMM). Pointers
// are device pointers; every call is asynchronous on `stream` (0 = the legacy
// default stream) and throws std::runtime_error when the launch fails. The
// per-element math is kernels/math.hpp, shared with the CPU kernels.

#include <cstddef>
#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "kernels/cpu/gemm.hpp"       // trans
#include "kernels/cpu/optimizers.hpp" // sgd_options, adam_options

namespace troupe::kernels::cuda {

using cpu::adam_options;
using cpu::sgd_options;
using cpu::trans;

/// Throws std::runtime_error("cuda: <what>: <message> (error N)") unless ok.
void check(cudaError_t err, const char* what);

// --- memory helpers (synchronous; for tests and simple callers) -------------
float* alloc_floats(std::int64_t n);
void free_device(void* p) noexcept;
void copy_to_device(float* dst, const float* host_src, std::int64_t n);
void copy_to_host(float* host_dst, const float* src, std::int64_t n);
void synchronize();

// --- elementwise (same semantics as kernels::cpu) ---------------------------
/// y[r, c] += bias[c] for a rows x cols row-major matrix.
void add_bias_rows(float* y, const float* bias, std::int64_t rows, std::int64_t cols,
                   cudaStream_t stream = nullptr);
/// y = max(y + bias, 0), in place.
void add_bias_relu_rows(float* y, const float* bias, std::int64_t rows, std::int64_t cols,
                        cudaStream_t stream = nullptr);
void relu_forward(const float* x, float* y, std::int64_t n, cudaStream_t stream = nullptr);
/// dx = dy * (y > 0); dx may alias dy.
void relu_backward(const float* y, const float* dy, float* dx, std::int64_t n,
                   cudaStream_t stream = nullptr);
void gelu_forward(const float* x, float* y, std::int64_t n, cudaStream_t stream = nullptr);
/// dx = dy * gelu'(x); dx may alias dy.
void gelu_backward(const float* x, const float* dy, float* dx, std::int64_t n,
                   cudaStream_t stream = nullptr);

// --- optimizers (PyTorch semantics, as kernels::cpu) ------------------------
void sgd_update(float* p, const float* g, float* momentum_buf, std::int64_t n,
                const sgd_options& o, bool first, cudaStream_t stream = nullptr);
/// `step` counts from 1.
void adam_update(float* p, const float* g, float* m, float* v, std::int64_t n,
                 const adam_options& o, std::int64_t step, cudaStream_t stream = nullptr);

// --- GEMM (cuBLAS) ----------------------------------------------------------
/// C[m x n] = alpha * op(A) * op(B) + beta * C, all row-major, exactly as
/// kernels::cpu::gemm. Uses a cuBLAS handle owned by the calling thread (one
/// per thread and current device), bound to `stream`.
void gemm(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
          std::int64_t ldc, cudaStream_t stream = nullptr);

} // namespace troupe::kernels::cuda
