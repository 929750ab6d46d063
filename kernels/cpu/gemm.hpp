#pragma once

#include <cstdint>
#include <string>

namespace troupe::kernels::cpu {

enum class trans : bool { no = false, yes = true };

/// C[m x n] = alpha * op(A) * op(B) + beta * C, all row-major, through CBLAS
/// (OpenBLAS, OpenMP build) or oneDNN, as set for the calling thread
/// (gemm_backend.hpp). op(A) is m x k, op(B) is k x n. beta == 0 ignores
/// C's old contents (NaNs included).
void gemm(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
          std::int64_t ldc);

/// `batch` independent GEMMs with constant strides between operands (attention).
void gemm_strided_batched(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k,
                          float alpha, const float* a, std::int64_t lda, std::int64_t stride_a,
                          const float* b, std::int64_t ldb, std::int64_t stride_b, float beta,
                          float* c, std::int64_t ldc, std::int64_t stride_c, std::int64_t batch);

/// Sets how many threads BLAS calls made *from the calling thread* may use.
/// OpenBLAS's OpenMP build reads omp_get_max_threads() of the caller on every
/// call, so each device actor sets this once on its own thread and devices do
/// not oversubscribe the cores (the pthread build's count is process-wide).
void set_blas_threads_for_this_thread(int n);
int blas_threads_for_this_thread();

/// What BLAS was loaded: library file, version/config string, core type.
std::string blas_description();

/// Measures sgemm GFLOP/s for an m x n x k product on the calling thread
/// (median of `reps` timed runs after a warm-up).
double measure_gemm_gflops(std::int64_t m, std::int64_t n, std::int64_t k, int reps = 5);

} // namespace troupe::kernels::cpu
