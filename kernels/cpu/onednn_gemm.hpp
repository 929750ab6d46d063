#pragma once

#include <cstdint>
#include <string>

#include "kernels/cpu/gemm.hpp"

namespace troupe::kernels::cpu {

/// gemm()'s contract (row-major, C = alpha op(A) op(B) + beta C, beta == 0
/// ignores C) through a oneDNN matmul primitive. Primitives are created once
/// per shape, strides and scalars and kept for the calling thread; they run
/// with the thread's OpenMP budget (set_blas_threads_for_this_thread).
void onednn_gemm(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                 const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                 float* c, std::int64_t ldc);

/// oneDNN's version and the CPU ISA it dispatches to, for bench headers.
std::string onednn_description();

} // namespace troupe::kernels::cpu
